// `cascade serve`: the composition root. Wires the store, the registry's
// HTTP API, the build and deployment controllers, the router and the CLI's
// API on one listener, and runs until SIGTERM/SIGINT.
#pragma once

#include <filesystem>
#include <string>

namespace cascade::cli {

struct ServeOptions {
    std::filesystem::path root = "/var/lib/cascade";
    std::string listen = "127.0.0.1:5000";
};

// Runs the daemon in the foreground; returns the process exit code.
int serve(const ServeOptions& options);

}  // namespace cascade::cli
