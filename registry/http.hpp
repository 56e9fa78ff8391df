// The Distribution Spec HTTP API (/v2/…) over a Store, registered on an
// httplib::Server that the daemon owns (the registry, the API and, later, the
// console share one listener).
#pragma once

#include <memory>

namespace httplib {
class Server;
}

namespace cascade::registry {

class Store;

// Registers the /v2/ routes. Errors are the spec's codes in the spec's JSON
// body ({"errors":[{"code","message","detail"}]}).
void register_distribution_routes(httplib::Server& server, Store& store);

}  // namespace cascade::registry
