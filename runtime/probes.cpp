#include "runtime/probes.hpp"

#include <curl/curl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "runtime/netns.hpp"
#include "runtime/runc.hpp"

namespace cascade::runtime {

namespace {

using std::chrono::milliseconds;

constexpr size_t kMaxMessage = 300;

std::string one_line(std::string s) {
    std::replace(s.begin(), s.end(), '\n', ' ');
    std::replace(s.begin(), s.end(), '\r', ' ');
    auto first = s.find_first_not_of(" \t");
    if (first == std::string::npos) return {};
    s = s.substr(first, s.find_last_not_of(" \t") - first + 1);
    if (s.size() > kMaxMessage) s = s.substr(0, kMaxMessage) + "…";
    return s;
}

milliseconds timeout_of(const ProbeSpec& spec) {
    return spec.timeout.count() > 0 ? spec.timeout : milliseconds(1000);
}

ProbeOutcome tcp_probe(const ProbeSpec& spec, const ProbeTarget& target) {
    auto where = "tcp 127.0.0.1:" + std::to_string(spec.port);
    try {
        if (connect_in_netns(target.netns_fd, spec.port, timeout_of(spec)))
            return {true, where + ": connected"};
        return {false, where + ": connection refused or timed out after " +
                           std::to_string(timeout_of(spec).count()) + " ms"};
    } catch (const std::exception& e) {
        return {false, where + ": " + e.what()};
    }
}

struct HttpContext {
    int netns_fd = -1;
    std::string socket_error;
};

curl_socket_t open_socket(void* clientp, curlsocktype purpose, curl_sockaddr* address) {
    auto* ctx = static_cast<HttpContext*>(clientp);
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
    try {
        return socket_in_netns(ctx->netns_fd, address->family, address->socktype).release();
    } catch (const std::exception& e) {
        ctx->socket_error = e.what();
        return CURL_SOCKET_BAD;
    }
}

size_t discard_body(char*, size_t size, size_t count, void*) {
    return size * count;
}

ProbeOutcome http_probe(const ProbeSpec& spec, const ProbeTarget& target) {
    static std::once_flag global_init;
    std::call_once(global_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    std::string path = spec.path.empty() ? "/" : spec.path;
    if (path.front() != '/') path = "/" + path;
    auto url = "http://127.0.0.1:" + std::to_string(spec.port) + path;
    auto where = "http GET " + url;

    std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) return {false, where + ": curl_easy_init failed"};
    HttpContext ctx{target.netns_fd, {}};
    char error[CURL_ERROR_SIZE] = {};
    auto timeout = timeout_of(spec);
    CURL* h = curl.get();
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "cascade-probe/1");
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &ctx);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        std::string why = error[0] ? error : curl_easy_strerror(rc);
        if (!ctx.socket_error.empty()) why = ctx.socket_error;
        return {false, where + ": " + one_line(why)};
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    bool ok =
        spec.expected_status > 0 ? status == spec.expected_status : status >= 200 && status <= 399;
    std::string message = where + ": HTTP " + std::to_string(status);
    if (!ok)
        message += spec.expected_status > 0
                       ? " (expected " + std::to_string(spec.expected_status) + ")"
                       : " (expected 200-399)";
    return {ok, message};
}

ProbeOutcome exec_probe(const ProbeSpec& spec, const ProbeTarget& target) {
    std::string what = "exec";
    for (auto& a : spec.command)
        what += " " + a;
    if (spec.command.empty()) return {false, what + ": no command given"};
    if (!target.runc || target.container_id.empty())
        return {false, what + ": no container to run it in"};
    int mfd = ::memfd_create("cascade-probe-output", MFD_CLOEXEC);
    if (mfd < 0) return {false, what + ": memfd_create: " + std::strerror(errno)};
    fs::Fd output(mfd);
    int code = -1;
    try {
        code = target.runc->exec(target.container_id, spec.command, output.get(), output.get(),
                                 timeout_of(spec));
    } catch (const std::exception& e) {
        return {false, one_line(e.what())};
    }
    std::string text;
    if (::lseek(output.get(), 0, SEEK_SET) == 0) {
        char buf[4096];
        ssize_t n;
        while (text.size() < 64 * 1024 && (n = ::read(output.get(), buf, sizeof buf)) > 0)
            text.append(buf, static_cast<size_t>(n));
    }
    text = one_line(text);
    std::string message = what + ": exit " + std::to_string(code);
    if (!text.empty()) message += ": " + text;
    return {code == 0, message};
}

}  // namespace

ProbeOutcome run_probe(const ProbeSpec& spec, const ProbeTarget& target) {
    switch (spec.kind) {
        case ProbeSpec::Kind::Tcp:
            return tcp_probe(spec, target);
        case ProbeSpec::Kind::Http:
            return http_probe(spec, target);
        case ProbeSpec::Kind::Exec:
            return exec_probe(spec, target);
        case ProbeSpec::Kind::None:
            break;
    }
    return {true, "no probe"};
}

ProbeState::ProbeState(const ProbeSpec& spec, Clock::time_point started,
                       std::chrono::milliseconds fast_period)
    : spec_(spec), fast_period_(fast_period), next_(started + spec.initial_delay) {}

ProbeState::Result ProbeState::record(bool ok, Clock::time_point now) {
    if (ok) {
        ++successes_;
        failures_ = 0;
        if (successes_ >= std::max(1, spec_.success_threshold)) {
            result_ = Result::Success;
            ever_succeeded_ = true;
        }
    } else {
        ++failures_;
        successes_ = 0;
        if (failures_ >= std::max(1, spec_.failure_threshold)) result_ = Result::Failure;
    }
    auto period = spec_.period.count() > 0 ? spec_.period : milliseconds(10000);
    if (fast_period_.count() > 0 && !ever_succeeded_) period = std::min(period, fast_period_);
    next_ = now + period;
    return result_;
}

ProbeSpec probe_from_healthcheck(const oci::HealthConfig& health) {
    ProbeSpec spec;
    if (health.test.empty()) return spec;
    const auto& kind = health.test.front();
    if (kind == "CMD") {
        spec.command.assign(health.test.begin() + 1, health.test.end());
    } else if (kind == "CMD-SHELL") {
        std::string script;
        for (size_t i = 1; i < health.test.size(); ++i)
            script += (i > 1 ? " " : "") + health.test[i];
        spec.command = {"/bin/sh", "-c", script};
    } else {
        return spec;  // "NONE", or a form Docker does not know either
    }
    if (spec.command.empty() || spec.command.front().empty()) return ProbeSpec{};
    spec.kind = ProbeSpec::Kind::Exec;
    auto ms = [](int64_t ns, int64_t fallback_ms) {
        return milliseconds(ns > 0 ? std::max<int64_t>(1, ns / 1000000) : fallback_ms);
    };
    spec.period = ms(health.interval_ns, 30000);
    spec.timeout = ms(health.timeout_ns, 30000);
    spec.initial_delay =
        milliseconds(health.start_period_ns > 0 ? health.start_period_ns / 1000000 : 0);
    spec.failure_threshold = health.retries > 0 ? health.retries : 3;
    spec.success_threshold = 1;
    return spec;
}

std::string describe(const ProbeSpec& spec) {
    switch (spec.kind) {
        case ProbeSpec::Kind::Tcp:
            return "tcp :" + std::to_string(spec.port);
        case ProbeSpec::Kind::Http:
            return "http GET :" + std::to_string(spec.port) + (spec.path.empty() ? "/" : spec.path);
        case ProbeSpec::Kind::Exec: {
            std::string s = "exec";
            for (auto& a : spec.command)
                s += " " + a;
            return s;
        }
        case ProbeSpec::Kind::None:
            break;
    }
    return "none";
}

}  // namespace cascade::runtime
