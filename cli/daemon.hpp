// `cascade serve`: the composition root. Wires the store, the registry's
// HTTP API, the build and deployment controllers, the router and the CLI's
// API on one listener, and runs until SIGTERM/SIGINT.
#pragma once

#include <filesystem>
#include <string>

namespace cascade::cli {

struct ServeOptions {
    // Empty: the configuration file's value, else the default.
    std::filesystem::path root;
    std::string listen;
    std::string router_listen;     // `--router-listen HOST:PORT|off`
    std::filesystem::path config;  // `--config FILE` (cli/config.hpp)
    bool insecure = false;
};

constexpr const char* kDefaultRoot = "/var/lib/cascade";
constexpr const char* kDefaultListen = "127.0.0.1:5000";
// The router's shared HTTP port (routes by Host header); when this default is
// taken the daemon warns and runs without it.
constexpr const char* kDefaultRouterListen = "127.0.0.1:8080";

// Runs the daemon in the foreground; returns the process exit code.
int serve(const ServeOptions& options);

}  // namespace cascade::cli
