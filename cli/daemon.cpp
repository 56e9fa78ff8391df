#include "cli/daemon.hpp"

#include <httplib.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <iostream>
#include <mutex>
#include <thread>

#include "cli/api.hpp"
#include "cli/config.hpp"
#include "engine/build_controller.hpp"
#include "engine/builder.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "registry/blob_store.hpp"
#include "registry/database.hpp"
#include "registry/http.hpp"
#include "registry/store.hpp"
#include "runtime/container.hpp"
#include "runtime/deployment.hpp"
#include "runtime/rootfs.hpp"
#include "runtime/router.hpp"
#include "runtime/runc.hpp"

namespace cascade::cli {

namespace {

std::mutex log_mu;

void log_line(const std::string& kind, const std::string& message) {
    std::time_t t = std::time(nullptr);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%H:%M:%S", std::localtime(&t));
    std::lock_guard lock(log_mu);
    std::cerr << stamp << " " << kind << " " << message << std::endl;
}

std::pair<std::string, int> split_listen(const std::string& listen) {
    auto colon = listen.rfind(':');
    if (colon == std::string::npos) throw Error("--listen " + listen + ": expected HOST:PORT");
    std::string host = listen.substr(0, colon);
    int port = 0;
    try {
        port = std::stoi(listen.substr(colon + 1));
    } catch (...) {
        throw Error("--listen " + listen + ": the port is not a number");
    }
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    return {host, port};
}

// One daemon per state root: an exclusive lock on <root>/daemon.lock.
fs::Fd lock_root(const std::filesystem::path& root) {
    fs::Fd fd = fs::open_or_throw(root / "daemon.lock", O_RDWR | O_CREAT, 0600);
    if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
        throw Error("another cascade daemon already uses the state root " + root.string() +
                    " (stop it, or pass --root DIR)");
    return fd;
}

}  // namespace

int serve(const ServeOptions& options) {
    ServerConfig config;
    if (!options.config.empty()) config = load_server_config(options.config);
    if (options.insecure) config.insecure = true;
    std::string listen =
        !options.listen.empty() ? options.listen : config.listen.value_or(kDefaultListen);
    std::filesystem::path root_dir =
        !options.root.empty() ? options.root : config.root.value_or(kDefaultRoot);
    auto [host, port] = split_listen(listen);
    fs::make_dirs(root_dir);
    auto root = std::filesystem::canonical(root_dir);
    auto lock = lock_root(root);

    // Block the stop signals in every thread; one thread waits for them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    registry::Database db(root / "state.db");
    registry::BlobStore blobs(root / "blobs");
    blobs.cleanup_ingest(24 * 3600);
    registry::Store store(blobs, db);

    runtime::LayerCache layers(root / "layers", blobs);
    runtime::Runc runc(root / "runc");
    runtime::ContainerHost containers(root / "containers", layers, runc);
    runtime::Router router;

    engine::Builder builder(store, layers, runc, root / "builds" / "work");
    engine::BuildController builds(store, db, builder, root / "builds" / "logs");
    runtime::DeploymentController deployments(store, db, containers, router);
    builds.set_event_sink(log_line);
    deployments.set_event_sink(log_line);
    deployments.recover();

    int sub = store.subscribe([&](const registry::TagEvent& e) {
        log_line("TagMoved", e.repository + ":" + e.tag + " generation " +
                                 std::to_string(e.generation) + " " +
                                 (e.old_digest ? e.old_digest->short_hex() : std::string("(new)")) +
                                 " → " + e.new_digest.short_hex() + " (" + e.cause + ")");
        builds.on_tag_moved(e);
        deployments.on_tag_moved(e);
    });

    httplib::Server server;
    server.new_task_queue = [] { return new httplib::ThreadPool(64); };
    server.set_payload_max_length(std::numeric_limits<size_t>::max());
    registry::register_distribution_routes(server, store);
    ApiContext ctx{store, db, builder, builds, deployments, host + ":" + std::to_string(port)};
    register_api_routes(server, ctx);

    if (!server.bind_to_port(host, port)) {
        store.unsubscribe(sub);
        throw Error("cannot listen on " + listen +
                    ": the address is in use or not local (pass --listen HOST:PORT)");
    }
    std::thread signal_waiter([&] {
        int sig = 0;
        sigwait(&stop_signals, &sig);
        log_line("Stopping", std::string("on ") + strsignal(sig));
        server.stop();
    });
    log_line("Serving",
             "registry and API on http://" + listen + " (state root " + root.string() + ")");
    server.listen_after_bind();

    // Shut down in order: no new events, controllers stop, replicas stop.
    store.unsubscribe(sub);
    for (int i = 0; ctx.adhoc_builds > 0 && i < 6000; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    deployments.stop_all();
    if (signal_waiter.joinable()) {
        pthread_kill(signal_waiter.native_handle(), SIGTERM);
        signal_waiter.join();
    }
    log_line("Stopped", "");
    return 0;
}

}  // namespace cascade::cli
