// HEALTHCHECK: the instruction's flags and command as the image config's
// Healthcheck (BuildKit's parseHealthcheck), and its history line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engine/dockerfile.hpp"
#include "oci/image.hpp"

namespace cascade::engine {

// HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D]
// [--start-interval=D] [--retries=N] CMD command | NONE. Test is
// ["CMD-SHELL", "command"] (shell form), ["CMD", args...] (exec form) or
// ["NONE"]; durations are Go durations ("30s", "1m30s", "1.5h"), 0 or at
// least 1ms, stored in nanoseconds. Throws cascade::Error naming `where`.
oci::HealthConfig parse_healthcheck(const Instruction& ins, const std::string& where);

// BuildKit's history text: HEALTHCHECK %q of the config, e.g.
// HEALTHCHECK &{["CMD-SHELL" "curl -f http://localhost/"] "5m0s" "3s" "0s" "0s" '\x03'}
std::string healthcheck_history(const oci::HealthConfig& health);

// Go's time.ParseDuration in nanoseconds; throws cascade::Error on bad text.
int64_t parse_go_duration(std::string_view text);
// Go's time.Duration.String(): "0s", "1.5s", "5m0s", "1h0m0s", "300ms".
std::string go_duration(int64_t ns);
// Go's %q of a string (strconv.Quote) and of an int (a quoted rune).
std::string go_quote(std::string_view s);
std::string go_quote_rune(int64_t value);

}  // namespace cascade::engine
