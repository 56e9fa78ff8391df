#include "cli/daemon.hpp"

#include <arpa/inet.h>
#include <httplib.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>

#include "cli/api.hpp"
#include "cli/config.hpp"
#include "cli/event_hooks.hpp"
#include "engine/build_cache.hpp"
#include "engine/build_controller.hpp"
#include "engine/builder.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "registry/auth.hpp"
#include "registry/blob_store.hpp"
#include "registry/database.hpp"
#include "registry/events.hpp"
#include "registry/gc.hpp"
#include "registry/http.hpp"
#include "registry/importer.hpp"
#include "registry/store.hpp"
#include "registry/tls.hpp"
#include "registry/webhooks.hpp"
#include "runtime/container.hpp"
#include "runtime/deployment.hpp"
#include "runtime/rootfs.hpp"
#include "runtime/router.hpp"
#include "runtime/runc.hpp"

namespace cascade::cli {

namespace {

std::mutex log_mu;

void log_line(const std::string& kind, const std::string& message) {
    // HH:MM:SS.mmm, local time; one write per line so concurrent lines never interleave.
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    std::tm tm{};
    localtime_r(&now.tv_sec, &tm);
    char stamp[32];
    size_t n = std::strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
    std::snprintf(stamp + n, sizeof stamp - n, ".%03ld", now.tv_nsec / 1000000);
    std::string line = std::string(stamp) + " " + kind + " " + message + "\n";
    std::lock_guard lock(log_mu);
    std::cerr << line << std::flush;
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

// 127.0.0.0/8, ::1 (and ::ffff:127.x) or localhost.
bool is_loopback(const std::string& host) {
    if (host == "localhost") return true;
    in_addr v4{};
    if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    in6_addr v6{};
    if (inet_pton(AF_INET6, host.c_str(), &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
    return false;  // "", 0.0.0.0, ::, a host name: reachable from elsewhere
}

// Anyone who reaches a non-loopback listener could push images and apply
// objects, so it needs both a login and TLS (or an explicit --insecure).
void check_exposure(const std::string& listen, const std::string& host,
                    const ServerConfig& config) {
    if (is_loopback(host)) return;
    if (config.auth() && config.tls()) return;
    if (config.insecure) {
        log_line("Warning", "listening on " + listen + " without " +
                                std::string(config.auth() ? "TLS" : "authentication") +
                                (config.auth() || config.tls() ? "" : " and TLS") +
                                " (--insecure): anyone who reaches it can push and apply");
        return;
    }
    std::string missing = !config.auth() && !config.tls() ? "authentication and TLS"
                          : !config.auth()                ? "authentication"
                                                          : "TLS";
    throw Error("refusing to listen on " + listen + " (not a loopback address) without " + missing +
                ": set auth.htpasswd and tls.certificate/tls.key in the --config file, listen "
                "on 127.0.0.1, or pass --insecure (insecure: true) to serve it unprotected");
}

std::unique_ptr<httplib::Server> make_server(const ServerConfig& config) {
    if (!config.tls()) return std::make_unique<httplib::Server>();
    registry::check_tls_files(config.tls_certificate, config.tls_key);
    auto server = std::make_unique<httplib::SSLServer>(config.tls_certificate.c_str(),
                                                       config.tls_key.c_str());
    if (!server->is_valid())
        throw Error("TLS: cannot use the certificate " + config.tls_certificate.string() +
                    " with the key " + config.tls_key.string() + " (OpenSSL refused them)");
    return server;
}

// The router's shared HTTP port (routes by Host header): --router-listen,
// else router.listen of the config file, else the default. A port given
// explicitly must be free; the default may be taken (e.g. by another daemon):
// then the daemon warns and runs without it (routes keep their own ports).
void listen_router(runtime::Router& router, const ServeOptions& options,
                   const ServerConfig& config) {
    std::string listen =
        !options.router_listen.empty() ? options.router_listen : config.router_listen.value_or("");
    bool chosen = !listen.empty();
    if (!chosen) listen = kDefaultRouterListen;
    if (listen == "off") {
        log_line("Router", "no shared HTTP port (router listen: off); routes use their own ports");
        return;
    }
    std::string host;
    int port = 0;
    try {
        std::tie(host, port) = split_listen(listen);
    } catch (const Error&) {
        port = -1;
    }
    if (port < 0 || port > 65535)
        throw Error("--router-listen " + listen + ": expected HOST:PORT or off");
    try {
        router.listen_http(host, static_cast<uint16_t>(port));
    } catch (const std::exception& e) {
        if (chosen)
            throw Error("cannot listen for routes on " + listen + ": " + e.what() +
                        " (pass --router-listen HOST:PORT with a free port, or off)");
        log_line("Warning", "the router's default shared HTTP port " + listen + " is taken (" +
                                e.what() +
                                "); routes are served on their own ports only (pass "
                                "--router-listen HOST:PORT)");
        return;
    }
    log_line("Router", "routes by Host header on http://" + listen +
                           "/ (http://<route>.localhost:" + std::to_string(router.http_port()) +
                           "/)");
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
    check_exposure(listen, host, config);
    std::unique_ptr<registry::Authorizer> authorizer;
    if (config.auth()) {
        std::vector<registry::AccessRule> rules;
        for (const auto& r : config.access)
            rules.push_back({r.repository, r.pull, r.push});
        authorizer = std::make_unique<registry::Authorizer>(
            registry::AuthSettings{config.htpasswd, config.realm, config.admins, std::move(rules)});
        authorizer->htpasswd().set_event_sink(log_line);
    }
    auto server_ptr = make_server(config);
    httplib::Server& server = *server_ptr;
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
    blobs.cleanup_ingest(config.upload_expire_seconds);
    registry::Store store(blobs, db);

    runtime::LayerCache layers(root / "layers", blobs);
    runtime::Runc runc(root / "runc");
    runtime::ContainerHost containers(root / "containers", layers, runc,
                                      {config.log_max_bytes, config.log_max_files});
    runtime::Router router;
    listen_router(router, options, config);

    engine::BuildCache build_cache(db, blobs, config.build_cache_max_bytes);
    engine::Builder builder(store, layers, runc, root / "builds" / "work");
    builder.set_cache(&build_cache);
    // Tag-move, build and rollout events (watch stream, webhooks); before the
    // controllers, which record into it until they stop.
    registry::EventLog events(store);
    engine::BuildController builds(store, db, builder, root / "builds" / "logs");
    runtime::DeploymentController deployments(store, db, containers, router);
    builds.set_event_sink(log_line);
    deployments.set_event_sink(log_line);
    install_event_hooks(events, builds, deployments);
    deployments.recover();

    // Webhooks and garbage collection.
    std::vector<registry::WebhookEndpoint> endpoints;
    for (const auto& w : config.notifications)
        endpoints.push_back({w.name, w.url, w.headers, w.timeout_seconds, w.max_attempts});
    registry::WebhookDispatcher webhooks(db, events, std::move(endpoints));
    webhooks.set_log([](const std::string& line) { log_line("Webhook", line); });
    webhooks.start();
    registry::GarbageCollector gc(store, {config.gc_keep_generations, config.gc_grace_seconds});
    gc.add_root_source("deployments", [&deployments] {
        std::vector<oci::Digest> running;  // every replica's image and each latest revision
        for (const auto& d : deployments.list()) {
            if (d.image) running.push_back(*d.image);
            for (const auto& r : d.replicas)
                running.push_back(r.image_digest);
        }
        return running;
    });
    // Layers the build cache may reuse stay while their entries are kept.
    gc.add_root_source("build-cache", [&build_cache] { return build_cache.gc_roots(); });

    // Image stream tags that follow images in other registries; credentials
    // come from a containers auth file (podman's and skopeo's format).
    const char* auth_file = std::getenv("REGISTRY_AUTH_FILE");
    registry::Importer importer(
        store, auth_file && *auth_file ? std::filesystem::path(auth_file) : root / "auth.json");
    importer.set_event_sink(log_line);
    // Bases of builds in other registries are pulled through the same importer.
    engine::BuilderOptions builder_options;
    builder_options.importer = &importer;
    builder_options.auth_file =
        auth_file && *auth_file ? std::filesystem::path(auth_file) : root / "auth.json";
    builder_options.mirrors = config.registry_mirrors;
    builder_options.insecure_registries = config.insecure_registries;
    builder_options.local_domains = {listen, host + ":" + std::to_string(port)};
    builder.set_options(std::move(builder_options));

    int sub = store.subscribe([&](const registry::TagEvent& e) {
        log_line("TagMoved", e.repository + ":" + e.tag + " generation " +
                                 std::to_string(e.generation) + " " +
                                 (e.old_digest ? e.old_digest->short_hex() : std::string("(new)")) +
                                 " → " + e.new_digest.short_hex() + " (" + e.cause + ")");
        builds.on_tag_moved(e);
        deployments.on_tag_moved(e);
        follow_image_stream_aliases(store, db, e);  // ImageStreamTag aliases move along
    });

    server.new_task_queue = [] { return new httplib::ThreadPool(64); };
    server.set_payload_max_length(std::numeric_limits<size_t>::max());
    // httplib closes a keep-alive connection after 5 requests by default;
    // clients pulling many manifests and blobs reuse theirs much longer.
    server.set_keep_alive_max_count(10000);
    // Headers and body go out in separate writes; without TCP_NODELAY the
    // body waits for the client's delayed ACK (40 ms) on every response.
    server.set_tcp_nodelay(true);
    registry::DistributionOptions distribution_options;
    distribution_options.upload_expire_seconds = config.upload_expire_seconds;
    distribution_options.log = [](const std::string& m) { log_line("Uploads", m); };
    registry::Distribution distribution(store, distribution_options);
    distribution.register_routes(server);
    distribution.start_upload_sweeper();  // stopped when `distribution` goes
    ApiContext ctx{store, db, builder, builds, deployments, host + ":" + std::to_string(port)};
    ctx.importer = &importer;
    ctx.events = &events;
    ctx.gc = &gc;
    ctx.router = &router;
    register_api_routes(server, ctx);
    if (authorizer) {
        authorizer->set_repository_lister([&store] { return store.repositories(); });
        authorizer->install(server);
    }

    if (!server.bind_to_port(host, port)) {
        store.unsubscribe(sub);
        throw Error("cannot listen on " + listen +
                    ": the address is in use or not local (pass --listen HOST:PORT)");
    }
    std::thread signal_waiter([&] {
        int sig = 0;
        sigwait(&stop_signals, &sig);
        log_line("Stopping", std::string("on ") + strsignal(sig));
        events.close();  // ends the watch streams, which would keep the server's threads
        server.stop();
    });
    importer.start_schedule([&db] { return image_stream_imports(db); },
                            std::chrono::seconds(config.import_interval_seconds));
    log_line("Serving", std::string("registry and API on ") +
                            (config.tls() ? "https://" : "http://") + listen + " (state root " +
                            root.string() + ")");
    server.listen_after_bind();

    // Shut down in order: no new events, controllers stop, replicas stop.
    importer.stop();
    store.unsubscribe(sub);
    webhooks.stop();
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
