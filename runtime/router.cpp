// The router. Threads:
// - forwarders (one epoll thread per core, at most 4; CASCADE_ROUTER_THREADS
//   overrides): each watches every listener (EPOLLEXCLUSIVE: a new client
//   wakes one idle forwarder), accepts, connects the client to a backend at
//   once when it can, and moves the connection's bytes until it closes, all
//   on the one thread;
// - connect workers: call Backend::connect (which may block up to the
//   backend's own timeout, e.g. inside a container's network namespace) when
//   the immediate attempt did not connect, so a slow backend never stalls
//   anything else; they hand the connection to a forwarder, round robin;
// - the control loop: runs the API's changes of listeners, and owns their fds.
// All of them run as SCHED_BATCH (runtime/threads.hpp).
//
// The shared HTTP port: the forwarder that accepted a connection reads its
// request head (non-blocking, bounded in size and time), finds the route by
// Host, and then treats the connection like one on the route's own port, with
// the head buffered as the first bytes to send to the backend. Error answers
// (400, 404, 408, 431, 503) are written by that forwarder, which then
// half-closes and discards what the client still sends for a moment, so the
// client reads the answer instead of a reset.
//
// Forwarding: both sockets are edge-triggered; an event pumps only the
// direction(s) it concerns, and a short read ends a pump (the socket is empty,
// new data brings a new edge), so a request/response costs one recv and one
// send per direction.
//
// The first exchange of a connection (FirstExchange): the forwarder keeps a
// copy of what the client sends and holds back a small sized first response
// until it is whole. When the backend closes or resets before that (nothing
// went to the client yet) and the request may be repeated, the connection
// goes back to a connect worker with the copy (a Replay) and continues on a
// backend it has not tried; with none left the client gets a 503 (shared port)
// or a reset. After the first response only bytes are moved.
//
// Ownership: listeners' fds belong to the control loop; heads, error answers
// and established connections to the forwarder that accepted them. Routes,
// backends, hostnames and counters live under `mu`; the API changes a
// thread's state by posting a command to it and waiting for it.

#include "runtime/router.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "oci/error.hpp"
#include "runtime/threads.hpp"

namespace cascade::runtime {

namespace {

constexpr size_t kChunk = 64 * 1024;         // one read; also the most a direction holds back
constexpr size_t kPumpBudget = 1024 * 1024;  // bytes per direction before other connections run
constexpr size_t kMaxConnectWorkers = 64;    // threads blocked in Backend::connect at most
constexpr int kMaxAcceptsPerEvent = 64;  // listeners are level-triggered; the rest come next round
constexpr auto kAcceptPause = std::chrono::milliseconds(100);  // after EMFILE and friends
constexpr size_t kMaxHead = 16 * 1024;                         // request head on the shared port
constexpr auto kDefaultHeaderTimeout = std::chrono::milliseconds(10000);
// After an error answer: how long, and how much, the client may still send
// (read and discarded) before the socket is closed.
constexpr auto kLingerTime = std::chrono::milliseconds(2000);
constexpr size_t kLingerBytes = 1024 * 1024;
// Until a connection's first response is complete: the most request bytes
// kept for a resend, and the largest first response (head + body) held back.
constexpr size_t kReplayLimit = 64 * 1024;
constexpr size_t kMaxReplays = 16;  // backends tried per request at most (besides the rotation)
// Backend::attempt: the first attempt's time; each later round doubles it.
// kConnectBudget bounds all attempts of one connection.
// A loopback handshake takes microseconds, so a short first attempt only
// cuts off a SYN that was dropped.
constexpr auto kFirstAttempt = std::chrono::milliseconds(20);
constexpr auto kConnectBudget = std::chrono::milliseconds(2000);

using Clock = std::chrono::steady_clock;
using AttemptFn = std::function<fs::Fd(std::chrono::milliseconds, bool&)>;

// epoll_event.data.u64: the low three bits say what the fd is, the rest is an id.
enum Kind : uint64_t {
    kWake = 0,
    kListener = 1,
    kClientSide = 2,
    kBackendSide = 3,
    kHead = 4,     // shared port: reading the request head
    kClosing = 5,  // shared port: writing an error answer, then lingering
};
uint64_t tag(Kind kind, uint64_t id) {
    return (id << 3) | kind;
}

std::string address_text(const std::string& host, uint16_t port) {
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

void set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// Forwarded bytes should not wait for Nagle; fails harmlessly on non-TCP sockets.
void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// A forced or failed connection ends with RST, so a peer reading to EOF does
// not mistake a cut-off stream for a complete one.
void close_abortively(const fs::Fd& fd) {
    if (!fd) return;
    linger abort_on_close{1, 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
}

// `what` names the listener in errors, e.g. "route 'app-a'".
fs::Fd listen_on(const std::string& what, const std::string& host, uint16_t port) {
    std::string where = address_text(host, port);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    std::string service = std::to_string(port);
    int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
    if (rc != 0) {
        throw Error("router: cannot listen for " + what + " on " + where + ": " + gai_strerror(rc) +
                    " (give an IP address or a resolvable host name)");
    }
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(found, freeaddrinfo);
    int last_errno = EADDRNOTAVAIL;
    for (addrinfo* ai = found; ai; ai = ai->ai_next) {
        fs::Fd fd(socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!fd) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        // Accepted sockets inherit TCP_NODELAY: no setsockopt per connection.
        setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd.get(), SOMAXCONN) != 0) {
            last_errno = errno;
            continue;
        }
        return fd;
    }
    std::string hint;
    if (last_errno == EADDRINUSE)
        hint =
            "; the port is taken (by another process or route): stop that or choose another port";
    else if (last_errno == EACCES)
        hint = "; ports below 1024 need CAP_NET_BIND_SERVICE";
    else if (last_errno == EADDRNOTAVAIL)
        hint = "; the host is not an address of this machine";
    throw Error("router: cannot listen for " + what + " on " + where + ": " +
                std::strerror(last_errno) + hint);
}

uint16_t bound_port(int fd) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
    if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    return 0;
}

// ---- the request head --------------------------------------------------------
// Only what routing needs: where the head ends, that the request line and the
// header lines are well formed, and the Host (RFC 9112 section 3.2: exactly
// one Host; an absolute-form target's authority wins).

char lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

bool is_tchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

enum class HeadStatus { Incomplete, Complete, TooLarge, Malformed };

struct Head {
    HeadStatus status = HeadStatus::Incomplete;
    std::string host;    // normalized, when Complete
    std::string reason;  // when Malformed
};

Head malformed(std::string reason) {
    return Head{HeadStatus::Malformed, {}, std::move(reason)};
}

// "Host" value or absolute-form authority -> lowercase name without port and
// trailing dot; empty when it is not a valid host.
std::string normalize_host(std::string_view value) {
    std::string_view name = value;
    std::string_view port;
    if (!value.empty() && value.front() == '[') {
        size_t close = value.find(']');
        if (close == std::string_view::npos) return {};
        name = value.substr(0, close + 1);
        std::string_view rest = value.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return {};
            port = rest.substr(1);
        }
    } else if (size_t colon = value.find(':'); colon != std::string_view::npos) {
        name = value.substr(0, colon);
        port = value.substr(colon + 1);
        if (port.empty() && colon + 1 != value.size()) return {};
    }
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), is_digit)) return {};
    if (!name.empty() && name.back() == '.' && name.front() != '[') name.remove_suffix(1);
    if (name.empty()) return {};
    std::string out;
    out.reserve(name.size());
    for (char c : name) {
        char l = lower(c);
        bool ok = (l >= 'a' && l <= 'z') || is_digit(l) || l == '-' || l == '.' || l == '_' ||
                  (name.front() == '[' && (l == ':' || l == '[' || l == ']'));
        if (!ok) return {};
        out.push_back(l);
    }
    return out;
}

// One line ending in LF (CRLF or bare LF), without the line end.
bool next_line(std::string_view text, size_t& pos, std::string_view& line) {
    size_t lf = text.find('\n', pos);
    if (lf == std::string_view::npos) return false;
    line = text.substr(pos, lf - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = lf + 1;
    return true;
}

Head examine_head(std::string_view buf) {
    size_t pos = 0;
    // RFC 9112 2.2: empty lines before the request line are ignored.
    while (pos < buf.size() && pos < 8 && (buf[pos] == '\r' || buf[pos] == '\n'))
        pos++;
    std::string_view line;
    size_t line_start = pos;
    if (!next_line(buf, pos, line)) {
        if (buf.size() >= kMaxHead) return Head{HeadStatus::TooLarge, {}, {}};
        // A request line can't hold a control character: answer binary
        // garbage (a TLS ClientHello, say) at once.
        for (size_t i = line_start; i < buf.size(); i++) {
            auto c = static_cast<unsigned char>(buf[i]);
            if ((c < 0x20 && c != '\r') || c == 0x7f) return malformed("not an HTTP request");
        }
        return Head{};
    }
    // request-line = method SP request-target SP HTTP-version
    size_t sp1 = line.find(' ');
    size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
        return malformed("the request line is not 'METHOD TARGET HTTP/1.x'");
    std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view version = line.substr(sp2 + 1);
    if (method.empty() || !std::all_of(method.begin(), method.end(), is_tchar))
        return malformed("invalid method");
    if (target.empty()) return malformed("empty request target");
    for (char c : target) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) return malformed("invalid character in the request target");
    }
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !is_digit(version[5]) ||
        version[6] != '.' || !is_digit(version[7]) || version[5] != '1')
        return malformed("unsupported HTTP version (this port speaks HTTP/1.0 and HTTP/1.1)");

    bool have_host = false;
    std::string_view host_value;
    while (true) {
        if (!next_line(buf, pos, line)) {
            if (buf.size() >= kMaxHead) return Head{HeadStatus::TooLarge, {}, {}};
            return Head{};
        }
        if (line.empty()) break;  // end of the head
        if (pos > kMaxHead) return Head{HeadStatus::TooLarge, {}, {}};
        if (line.front() == ' ' || line.front() == '\t')
            return malformed("folded header line (obs-fold)");
        size_t colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0)
            return malformed("header line without a name");
        std::string_view name = line.substr(0, colon);
        if (!std::all_of(name.begin(), name.end(), is_tchar))
            return malformed("invalid header name");
        std::string_view value = line.substr(colon + 1);
        for (char c : value) {
            auto u = static_cast<unsigned char>(c);
            if ((u < 0x20 && c != '\t') || u == 0x7f)
                return malformed("control character in a header value");
        }
        if (iequals(name, "host")) {
            if (have_host) return malformed("more than one Host header");
            have_host = true;
            while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
                value.remove_prefix(1);
            while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
                value.remove_suffix(1);
            host_value = value;
        }
    }
    if (pos > kMaxHead) return Head{HeadStatus::TooLarge, {}, {}};

    // absolute-form: "GET http://app-a.localhost/ HTTP/1.1"
    std::string_view authority = host_value;
    bool absolute = false;
    for (std::string_view scheme : {"http://", "https://"}) {
        if (target.size() > scheme.size() && iequals(target.substr(0, scheme.size()), scheme)) {
            authority = target.substr(scheme.size());
            authority = authority.substr(0, authority.find_first_of("/?#"));
            if (size_t at = authority.rfind('@'); at != std::string_view::npos)
                authority.remove_prefix(at + 1);
            absolute = true;
        }
    }
    if (!have_host && !absolute) return malformed("no Host header");
    Head head;
    head.host = normalize_host(authority);
    if (head.host.empty())
        return malformed("invalid Host '" + std::string(authority.substr(0, 64)) + "'");
    head.status = HeadStatus::Complete;
    return head;
}

std::string http_error(int status, std::string_view reason, const std::string& body,
                       bool retry_after = false) {
    std::string out = "HTTP/1.1 " + std::to_string(status) + " ";
    out += reason;
    out += "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n";
    if (retry_after) out += "Retry-After: 1\r\n";
    out += "Cache-Control: no-store\r\nConnection: close\r\n\r\n" + body;
    return out;
}

// ---- resending the first request ----------------------------------------------
// Only what the decision needs: is the request safe to repeat, and where does
// the first response end.

enum class Repeat { Unknown, Safe, Unsafe };

// Safe: the request starts with an idempotent method (RFC 9110 9.2.2) and a
// space. Unknown: too few bytes to tell.
Repeat repeatable(std::string_view request) {
    bool unknown = false;
    for (std::string_view method : {"GET ", "HEAD ", "OPTIONS ", "PUT ", "DELETE ", "TRACE "}) {
        if (request.size() >= method.size()) {
            if (request.substr(0, method.size()) == method) return Repeat::Safe;
        } else if (method.substr(0, request.size()) == request) {
            unknown = true;
        }
    }
    return unknown ? Repeat::Unknown : Repeat::Unsafe;
}

// Where the first response in `buf` ends: Sized with `size` = head + body;
// Incomplete: its head is still arriving; Stream: no HTTP/1.x response with a
// Content-Length that fits kReplayLimit (chunked, unsized, malformed, large).
enum class ResponseLength { Incomplete, Sized, Stream };
struct FirstResponse {
    ResponseLength kind = ResponseLength::Stream;
    size_t size = 0;
};

FirstResponse examine_response(std::string_view buf, bool head_request) {
    constexpr std::string_view kVersion = "HTTP/1.";
    if (buf.size() < kVersion.size())
        return {kVersion.substr(0, buf.size()) == buf ? ResponseLength::Incomplete
                                                      : ResponseLength::Stream,
                0};
    if (buf.substr(0, kVersion.size()) != kVersion) return {};
    size_t pos = 0;
    std::string_view line;
    if (!next_line(buf, pos, line))
        return {buf.size() < kReplayLimit ? ResponseLength::Incomplete : ResponseLength::Stream, 0};
    // status-line = HTTP-version SP 3DIGIT SP [reason]
    if (line.size() < 12 || line[8] != ' ' || !is_digit(line[9]) || !is_digit(line[10]) ||
        !is_digit(line[11]) || (line.size() > 12 && line[12] != ' '))
        return {};
    int status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    std::optional<uint64_t> length;
    while (true) {
        if (!next_line(buf, pos, line))
            return {buf.size() < kReplayLimit ? ResponseLength::Incomplete : ResponseLength::Stream,
                    0};
        if (line.empty()) break;
        size_t colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) return {};
        std::string_view name = line.substr(0, colon);
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
            value.remove_prefix(1);
        while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
            value.remove_suffix(1);
        if (iequals(name, "transfer-encoding")) return {};
        if (iequals(name, "content-length")) {
            if (value.empty() || value.size() > 9 ||
                !std::all_of(value.begin(), value.end(), is_digit))
                return {};
            uint64_t n = std::stoull(std::string(value));
            if (length && *length != n) return {};
            length = n;
        }
    }
    if (pos > kReplayLimit) return {};
    bool no_body = head_request || status < 200 || status == 204 || status == 304;
    if (no_body) return {ResponseLength::Sized, pos};
    if (!length || pos + *length > kReplayLimit) return {};
    return {ResponseLength::Sized, pos + static_cast<size_t>(*length)};
}

struct BackendState {
    std::string id;
    std::string route;
    std::shared_ptr<const std::function<fs::Fd()>> connect;  // replaced whole on re-add
    std::shared_ptr<const AttemptFn> attempt;                // null: use connect
    bool in_rotation = true;
    size_t active = 0;         // connects in progress + forwarded connections
    uint64_t force_epoch = 0;  // connections begun before this epoch are closed on arrival
};

struct RouteState {
    std::string name;
    std::string host;
    uint16_t port = 0;
    uint64_t listener_id = 0;  // 0: not listening
    bool removed = false;
    std::string hostname;  // on the shared port; empty: none
    std::vector<std::shared_ptr<BackendState>> rotation;
    size_t next = 0;
    RouteStats stats;  // bytes_in/out live in the atomics below
    std::atomic<uint64_t> bytes_in{0};
    std::atomic<uint64_t> bytes_out{0};
};

// A client from the shared HTTP port: its request head, read ahead.
struct HttpRequest {
    std::string head;  // every byte read so far; the backend gets it first
    std::string host;
};

// A client whose backend closed before answering: what goes to the next one.
struct Replay {
    std::string request;  // every byte the client sent
    bool client_eof = false;
    std::vector<std::shared_ptr<BackendState>> tried;
};

struct ConnectTask {
    fs::Fd client;
    std::shared_ptr<RouteState> route;
    std::optional<HttpRequest> http;
    std::shared_ptr<Replay> replay;  // null: the connection's first backend
};

// A backend socket ready to be forwarded, handed from a worker to a forwarder.
struct Arrival {
    fs::Fd client;
    fs::Fd backend;
    std::shared_ptr<RouteState> route;
    std::shared_ptr<BackendState> target;
    uint64_t epoch = 0;
    std::optional<HttpRequest> http;
    std::shared_ptr<Replay> replay;
};

// A shared-port client that no backend accepted: a forwarder answers 503.
struct Refusal {
    fs::Fd client;
    std::string host;
};

// One direction of a forwarded connection: bytes read from `src` are written
// to `dst`; at most one read's worth waits in `pending` when `dst` is full, so
// a slow reader throttles the writer on the other side (backpressure).
struct Direction {
    int src = -1;
    int dst = -1;
    std::string pending;
    size_t offset = 0;
    bool eof = false;        // src said EOF
    bool shut = false;       // ... and dst got shutdown(SHUT_WR) after the last byte
    bool hup = false;        // src reported (RD)HUP: read on to EOF, short reads or not
    bool out_armed = false;  // dst is watched for EPOLLOUT (after a send found it full)
    std::atomic<uint64_t>* bytes = nullptr;  // the route's counter for this direction
};

// Until the first response is complete: what a resend needs. `active` ends
// for good once a response byte went to the client, the request is not safe
// to repeat, or a limit is passed.
struct FirstExchange {
    bool active = true;
    Repeat repeat = Repeat::Unknown;
    bool head_request = false;
    std::string request;              // the client's bytes so far
    std::string held;                 // the backend's bytes, not yet forwarded
    std::optional<HttpRequest> http;  // shared port: for a 503 when no backend is left
    std::vector<std::shared_ptr<BackendState>> tried;  // earlier backends of this request
};

struct Connection {
    uint64_t id = 0;
    fs::Fd client;
    fs::Fd backend;
    std::shared_ptr<RouteState> route;
    std::shared_ptr<BackendState> target;
    Direction up;    // client -> backend
    Direction down;  // backend -> client
    FirstExchange first;
    bool kick = false;  // held bytes were released: pump again (no edge will come)
    // The first response arrived whole and nothing moved since: a backend
    // reset now loses nothing, so the client gets the answer and an EOF.
    bool response_done = false;
};

struct Listener {
    fs::Fd fd;
    std::shared_ptr<RouteState> route;  // null: the shared HTTP port
};

// A route's listener as each forwarder sees it: the fd stays the loop's.
struct WatchedListener {
    int fd = -1;
    std::shared_ptr<RouteState> route;
};

// Shared port: a client whose request head is still arriving.
struct PendingHead {
    fs::Fd client;
    std::string buf;
    Clock::time_point deadline;
};

// Shared port: an error answer being written; then the client's remaining
// bytes are read and dropped until EOF, kLingerBytes or the deadline.
struct Closing {
    fs::Fd client;
    std::string out;
    size_t offset = 0;
    bool shut = false;
    size_t discarded = 0;
    Clock::time_point deadline;
};

// Replay: the backend closed or failed before the first response; resend the
// request to another backend.
enum class Flow { Idle, More, Failed, Replay };

// Whether the backend's end before the first response can be hidden from the
// client: nothing went to the client yet, and the request is safe to repeat
// or the client has sent nothing at all (a backend killed just after the
// connect: like one that refused).
bool can_resend(const Connection& c) {
    return c.first.active && (c.first.repeat == Repeat::Safe || c.first.request.empty());
}

}  // namespace

struct Router::Impl {
    // Shared state, guarded by mu.
    mutable std::mutex mu;
    std::condition_variable released;  // a backend's active count dropped
    std::map<std::string, std::shared_ptr<RouteState>> routes;
    std::map<std::string, std::shared_ptr<BackendState>> backends;
    std::deque<std::function<void()>> commands;                    // to run on the loop thread
    std::map<std::string, std::shared_ptr<RouteState>> hostnames;  // shared port: Host -> route
    HttpPortStats http_counters;
    Clock::duration header_timeout = kDefaultHeaderTimeout;
    std::string http_host;  // the shared port's address, when listening
    uint16_t http_bound_port = 0;

    fs::Fd epoll;
    fs::Fd wake;
    std::atomic<bool> stopping{false};
    std::thread loop_thread;

    // Loop-thread state.
    std::unordered_map<uint64_t, Listener> listeners;
    uint64_t http_listener = 0;  // 0: no shared port
    uint64_t next_id = 1;

    // Connect workers.
    std::mutex work_mu;
    std::condition_variable work_cv;
    std::deque<ConnectTask> tasks;
    std::vector<std::thread> workers;
    size_t idle_workers = 0;
    bool workers_stop = false;

    // A forwarding thread with its own epoll and connections. Workers hand
    // each connected client/backend pair to the next forwarder, round robin,
    // so forwarding uses more than one core.
    struct Forwarder {
        Impl& owner;
        fs::Fd epoll;
        fs::Fd wake;
        std::thread thread;
        std::mutex mu;  // guards arrivals, refusals and commands
        std::deque<Arrival> arrivals;
        std::deque<Refusal> refusals;
        std::deque<std::function<void()>> commands;
        // Forwarder-thread state.
        std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections;
        std::vector<uint64_t> unfinished;  // connections that used up their budget
        // Listeners this forwarder accepts from (the loop owns their fds).
        std::unordered_map<uint64_t, WatchedListener> watched;
        bool accept_paused = false;
        Clock::time_point accept_resume;
        // Shared port: request heads arriving, error answers being written.
        std::unordered_map<uint64_t, PendingHead> heads;
        std::set<std::pair<Clock::time_point, uint64_t>> head_timers;
        std::unordered_map<uint64_t, Closing> closings;
        std::set<std::pair<Clock::time_point, uint64_t>> closing_timers;
        uint64_t next_id = 1;
        std::unique_ptr<char[]> scratch = std::make_unique<char[]>(kChunk);

        explicit Forwarder(Impl& impl);
        void wake_up();
        void hand_over(Arrival arrival);
        void run(std::function<void()> fn);  // on the forwarder's thread; waits
        void main();
        void handle_wake();
        void establish(Arrival arrival);
        void watch_listener(uint64_t listener_id, int fd, std::shared_ptr<RouteState> route);
        void unwatch_listener(uint64_t listener_id);
        void accept_clients(uint64_t listener_id);
        void pause_accepting();
        void resume_accepting();
        void read_head(uint64_t head_id);
        void route_request(uint64_t head_id, std::string host);
        void respond(fs::Fd client, std::string answer, Kind registered_as);
        void linger(uint64_t closing_id);
        void end_closing(uint64_t closing_id);
        void expire_timers();
        int next_timeout() const;
        void pump(uint64_t connection_id);
        void on_connection_event(uint64_t connection_id, Kind side, uint32_t events);
        void settle(uint64_t connection_id, Flow up, Flow down);
        Flow pump_direction(Connection& c, Direction& d);
        void watch_writable(Connection& c, Direction& d);
        void end_first(Connection& c);
        std::unique_ptr<Connection> take(uint64_t connection_id, bool closing);
        void replay(uint64_t connection_id);
        void finish(uint64_t connection_id, bool abort);
        void close_backend_connections(const std::shared_ptr<BackendState>& b);
    };
    std::vector<std::unique_ptr<Forwarder>> forwarders;
    std::atomic<size_t> next_forwarder{0};

    Impl();
    ~Impl();

    void wake_loop();
    void run_in_loop(std::function<void()> fn);
    std::shared_ptr<RouteState> route_locked(const std::string& name);
    void retire_if_unused_locked(const std::shared_ptr<BackendState>& b);
    void release(const std::shared_ptr<RouteState>& route, const std::shared_ptr<BackendState>& b);
    void release_backend(const std::shared_ptr<BackendState>& b);

    // Connect workers.
    void submit(ConnectTask task, Forwarder* here = nullptr);
    bool connect_at_once(ConnectTask& task, Forwarder* here = nullptr);
    void refuse_locked(ConnectTask& task);
    void worker_main();
    void connect_client(ConnectTask task);

    // Loop thread.
    void loop_main();
    void handle_wake();
    uint64_t add_listener(const std::shared_ptr<RouteState>& route, fs::Fd fd);
    void drop_listener(uint64_t listener_id);
};

namespace {

fs::Fd epoll_with_wake(fs::Fd& wake) {
    fs::Fd epoll(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll) throw sys_error("router: epoll_create1", "", errno);
    wake = fs::Fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake) throw sys_error("router: eventfd", "", errno);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag(kWake, 0);
    if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wake.get(), &ev) != 0)
        throw sys_error("router: epoll_ctl add eventfd", "", errno);
    return epoll;
}

void signal_eventfd(const fs::Fd& wake) {
    uint64_t one = 1;
    ssize_t n = write(wake.get(), &one, sizeof one);
    (void)n;  // EAGAIN: the counter is already non-zero, the loop wakes anyway
}

// Runs `fn` on `loop` (an epoll thread woken by `wake` that runs `commands`)
// and waits for it; at once when called on that thread.
void run_on(const std::thread& loop, std::mutex& mu, std::deque<std::function<void()>>& commands,
            const fs::Fd& wake, std::function<void()> fn) {
    if (std::this_thread::get_id() == loop.get_id()) {
        fn();
        return;
    }
    auto task = std::make_shared<std::packaged_task<void()>>(std::move(fn));
    auto done = task->get_future();
    {
        std::lock_guard lock(mu);
        commands.push_back([task] { (*task)(); });
    }
    signal_eventfd(wake);
    done.get();
}

// Forwarding threads: one per core, at least 1 and at most kMaxForwarders (the
// router shares the machine with the replicas it routes to). Each accepts from
// the route ports too, so a connection stays on one thread from accept to
// close: on 2 cores two forwarders serve 87 % of direct throughput and one
// serves 76 % (bench/runtime.py, busybox httpd).
constexpr unsigned kMaxForwarders = 4;
// CASCADE_ROUTER_THREADS overrides (for measurements).
size_t forwarder_count() {
    if (const char* env = getenv("CASCADE_ROUTER_THREADS"); env && *env) {
        int n = atoi(env);
        if (n >= 1 && n <= 64) return static_cast<size_t>(n);
    }
    return std::clamp(std::thread::hardware_concurrency(), 1u, kMaxForwarders);
}

}  // namespace

Router::Impl::Impl() {
    epoll = epoll_with_wake(wake);
    for (size_t i = 0, n = forwarder_count(); i < n; i++)
        forwarders.push_back(std::make_unique<Forwarder>(*this));
    for (auto& f : forwarders) {
        Forwarder* forwarder = f.get();
        forwarder->thread = std::thread([forwarder] { forwarder->main(); });
    }
    loop_thread = std::thread([this] { loop_main(); });
}

Router::Impl::~Impl() {
    stopping = true;
    wake_loop();
    loop_thread.join();
    for (auto& f : forwarders) {
        f->wake_up();
        f->thread.join();
    }
    {
        std::lock_guard lock(work_mu);
        workers_stop = true;
    }
    work_cv.notify_all();
    for (auto& worker : workers)
        worker.join();
    // What workers handed over after the forwarders ended is closed here.
    for (auto& f : forwarders) {
        for (auto& arrival : f->arrivals) {
            close_abortively(arrival.client);
            close_abortively(arrival.backend);
        }
    }
}

void Router::Impl::wake_loop() {
    signal_eventfd(wake);
}

// ---- forwarders --------------------------------------------------------------

Router::Impl::Forwarder::Forwarder(Impl& impl) : owner(impl) {
    epoll = epoll_with_wake(wake);
}

void Router::Impl::Forwarder::wake_up() {
    signal_eventfd(wake);
}

void Router::Impl::Forwarder::hand_over(Arrival arrival) {
    {
        std::lock_guard lock(mu);
        arrivals.push_back(std::move(arrival));
    }
    wake_up();
}

void Router::Impl::Forwarder::run(std::function<void()> fn) {
    run_on(thread, mu, commands, wake, std::move(fn));
}

void Router::Impl::Forwarder::main() {
    set_forwarding_thread("router-forward");
    constexpr int kMaxEvents = 256;
    epoll_event events[kMaxEvents];
    while (!owner.stopping) {
        int n = epoll_wait(epoll.get(), events, kMaxEvents, next_timeout());
        if (n < 0) n = 0;  // EINTR; nothing else can fail on a valid epoll fd
        if (accept_paused && Clock::now() >= accept_resume) resume_accepting();
        for (int i = 0; i < n && !owner.stopping; i++) {
            uint64_t data = events[i].data.u64;
            auto kind = static_cast<Kind>(data & 7);
            uint64_t id = data >> 3;
            switch (kind) {
                case kWake:
                    handle_wake();
                    break;
                case kListener:
                    accept_clients(id);
                    break;
                case kHead:
                    read_head(id);
                    break;
                case kClosing:
                    linger(id);
                    break;
                case kClientSide:
                case kBackendSide:
                    on_connection_event(id, kind, events[i].events);
                    break;
            }
        }
        expire_timers();
        if (!unfinished.empty()) {
            std::vector<uint64_t> again;
            again.swap(unfinished);
            std::sort(again.begin(), again.end());
            again.erase(std::unique(again.begin(), again.end()), again.end());
            for (uint64_t id : again)
                if (connections.count(id)) pump(id);
        }
    }
    // Shutting down: forwarded connections are cut (RST), heads too.
    std::vector<uint64_t> open;
    for (auto& [id, c] : connections)
        open.push_back(id);
    for (uint64_t id : open)
        finish(id, true);
    for (auto& [id, head] : heads)
        close_abortively(head.client);
    heads.clear();
    closings.clear();
}

void Router::Impl::Forwarder::handle_wake() {
    uint64_t count;
    ssize_t n = read(wake.get(), &count, sizeof count);
    (void)n;
    std::deque<std::function<void()>> todo;
    std::deque<Arrival> arrived;
    std::deque<Refusal> refused;
    {
        std::lock_guard lock(mu);
        todo.swap(commands);
        arrived.swap(arrivals);
        refused.swap(refusals);
    }
    for (auto& arrival : arrived)
        establish(std::move(arrival));
    for (auto& refusal : refused) {
        if (owner.stopping) break;
        respond(std::move(refusal.client),
                http_error(503, "Service Unavailable",
                           "cascade router: no ready backend for host '" + refusal.host +
                               "'; try again later\n",
                           true),
                kWake);
    }
    for (auto& command : todo)
        command();
}

void Router::Impl::run_in_loop(std::function<void()> fn) {
    run_on(loop_thread, mu, commands, wake, std::move(fn));
}

std::shared_ptr<RouteState> Router::Impl::route_locked(const std::string& name) {
    auto& slot = routes[name];
    if (!slot) {
        slot = std::make_shared<RouteState>();
        slot->name = name;
    }
    return slot;
}

// A backend out of rotation with nothing open is forgotten; drain() of an
// unknown id returns true at once.
void Router::Impl::retire_if_unused_locked(const std::shared_ptr<BackendState>& b) {
    if (b->in_rotation || b->active != 0) return;
    auto it = backends.find(b->id);
    if (it != backends.end() && it->second == b) backends.erase(it);
}

void Router::Impl::release(const std::shared_ptr<RouteState>& route,
                           const std::shared_ptr<BackendState>& b) {
    {
        std::lock_guard lock(mu);
        route->stats.active--;
        b->active--;
        retire_if_unused_locked(b);
    }
    released.notify_all();
}

// The connection goes on (with another backend): only the backend's count drops.
void Router::Impl::release_backend(const std::shared_ptr<BackendState>& b) {
    {
        std::lock_guard lock(mu);
        b->active--;
        retire_if_unused_locked(b);
    }
    released.notify_all();
}

// ---- connect workers -------------------------------------------------------

// The common case without a worker: the rotation's next backend, when it has
// bounded attempts, gets one that does not wait (on loopback the handshake is
// usually complete when connect() returns). When that does not connect, a
// worker takes the task as usual (and comes to this backend last).
bool Router::Impl::connect_at_once(ConnectTask& task, Forwarder* here) {
    std::shared_ptr<BackendState> b;
    std::shared_ptr<const AttemptFn> attempt;
    uint64_t epoch = 0;
    {
        std::lock_guard lock(mu);
        RouteState& route = *task.route;
        if (route.removed || route.rotation.empty() || stopping) return false;
        b = route.rotation[route.next % route.rotation.size()];
        if (!b->attempt || !b->in_rotation) return false;
        route.next++;
        b->active++;
        epoch = b->force_epoch;
        attempt = b->attempt;
    }
    fs::Fd backend;
    try {
        bool late = false;
        backend = (*attempt)(std::chrono::milliseconds(0), late);
    } catch (...) {
        backend.reset();
    }
    if (backend) {  // from Backend::attempt: ready for forwarding as it is
        Arrival arrival{std::move(task.client),
                        std::move(backend),
                        task.route,
                        b,
                        epoch,
                        std::move(task.http),
                        nullptr};
        if (here) {
            here->establish(std::move(arrival));
            return true;
        }
        Forwarder& f = *forwarders[next_forwarder++ % forwarders.size()];
        f.hand_over(std::move(arrival));
        return true;
    }
    {
        std::lock_guard lock(mu);
        b->active--;
        retire_if_unused_locked(b);
    }
    released.notify_all();
    return false;
}

// `here`: the forwarder calling, which then forwards a connection made at once
// itself.
void Router::Impl::submit(ConnectTask task, Forwarder* here) {
    if (!task.replay && connect_at_once(task, here)) return;
    std::unique_lock lock(work_mu);
    tasks.push_back(std::move(task));
    if (tasks.size() > idle_workers && workers.size() < kMaxConnectWorkers) {
        try {
            workers.emplace_back([this] { worker_main(); });
        } catch (const std::system_error&) {
            // No new thread now: the task waits for a busy worker. With none at
            // all, the client can't be served.
            if (workers.empty()) {
                ConnectTask lost = std::move(tasks.back());
                tasks.pop_back();
                lock.unlock();
                std::lock_guard route_lock(mu);
                refuse_locked(lost);
                return;
            }
        }
    }
    lock.unlock();
    work_cv.notify_one();
}

// No backend took the client: it is closed, or on the shared port answered 503.
void Router::Impl::refuse_locked(ConnectTask& task) {
    task.route->stats.failed++;
    task.route->stats.active--;
    if (task.http) {
        Forwarder& f = *forwarders[next_forwarder++ % forwarders.size()];
        {
            std::lock_guard lock(f.mu);
            f.refusals.push_back(Refusal{std::move(task.client), std::move(task.http->host)});
        }
        f.wake_up();
    } else if (task.replay) {
        // The client sent a request and got nothing: a reset, not a clean EOF.
        close_abortively(task.client);
    }
}

void Router::Impl::worker_main() {
    set_forwarding_thread("router-connect");
    while (true) {
        ConnectTask task;
        {
            std::unique_lock lock(work_mu);
            idle_workers++;
            work_cv.wait(lock, [&] { return workers_stop || !tasks.empty(); });
            idle_workers--;
            if (workers_stop) return;
            task = std::move(tasks.front());
            tasks.pop_front();
        }
        connect_client(std::move(task));
    }
}

void Router::Impl::connect_client(ConnectTask task) {
    std::vector<std::shared_ptr<BackendState>> candidates;
    {
        std::lock_guard lock(mu);
        RouteState& route = *task.route;
        if (!route.removed && !route.rotation.empty() &&
            (!task.replay || task.replay->tried.size() < kMaxReplays)) {
            size_t n = route.rotation.size();
            size_t start = route.next++ % n;
            for (size_t i = 0; i < n; i++) {
                auto& b = route.rotation[(start + i) % n];
                // A resend goes to a backend this request has not been to.
                if (task.replay && std::find(task.replay->tried.begin(), task.replay->tried.end(),
                                             b) != task.replay->tried.end())
                    continue;
                candidates.push_back(b);
            }
        }
    }
    // Rounds: every candidate once; then those whose attempt timed out again,
    // with twice the time, until kConnectBudget is spent.
    const auto deadline = Clock::now() + kConnectBudget;
    auto attempt_time = kFirstAttempt;
    while (!candidates.empty()) {
        std::vector<std::shared_ptr<BackendState>> timed_out;
        for (auto& b : candidates) {
            std::shared_ptr<const std::function<fs::Fd()>> connect;
            std::shared_ptr<const AttemptFn> attempt;
            uint64_t epoch = 0;
            {
                // Counted before connecting, so a drain() that starts now waits
                // for this connection too.
                std::lock_guard lock(mu);
                if (!b->in_rotation || stopping) continue;
                b->active++;
                epoch = b->force_epoch;
                connect = b->connect;
                attempt = b->attempt;
            }
            fs::Fd backend;
            bool late = false;
            try {
                if (attempt) {
                    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                                      Clock::now());
                    backend = (*attempt)(
                        std::clamp(left, std::chrono::milliseconds(1), attempt_time), late);
                } else {
                    backend = (*connect)();
                }
            } catch (...) {
                backend.reset();  // a backend that throws refuses, like one that returns no socket
                late = false;
            }
            if (backend) {
                if (!attempt) {  // Backend::attempt's sockets come ready
                    set_nonblocking(backend.get());
                    set_nodelay(backend.get());
                }
                Forwarder& f = *forwarders[next_forwarder++ % forwarders.size()];
                f.hand_over(Arrival{std::move(task.client), std::move(backend), task.route, b,
                                    epoch, std::move(task.http), std::move(task.replay)});
                return;
            }
            {
                std::lock_guard lock(mu);
                b->active--;
                retire_if_unused_locked(b);
            }
            if (late) {
                timed_out.push_back(b);
                std::lock_guard lock(mu);
                task.route->stats.connect_timeouts++;
            }
            released.notify_all();
        }
        if (timed_out.empty() || Clock::now() >= deadline) break;
        candidates = std::move(timed_out);
        attempt_time = std::min(attempt_time * 2, kConnectBudget);  // no overflow in long runs
    }
    {
        std::lock_guard lock(mu);
        refuse_locked(task);
    }
    task.client.reset();
}

// ---- the control loop and the shared port's heads --------------------------

void Router::Impl::loop_main() {
    set_forwarding_thread("router-control");
    constexpr int kMaxEvents = 16;
    epoll_event events[kMaxEvents];
    while (!stopping) {
        int n = epoll_wait(epoll.get(), events, kMaxEvents, -1);
        for (int i = 0; i < n && !stopping; i++)
            if (static_cast<Kind>(events[i].data.u64 & 7) == kWake) handle_wake();
    }
    // The listeners' fds close with the Impl, after the forwarders that
    // accept from them have ended.
}

void Router::Impl::handle_wake() {
    uint64_t count;
    ssize_t n = read(wake.get(), &count, sizeof count);
    (void)n;
    std::deque<std::function<void()>> todo;
    {
        std::lock_guard lock(mu);
        todo.swap(commands);
    }
    for (auto& command : todo)
        command();
}

// Milliseconds until the forwarder must look again: 0 with connections left
// unfinished, else until the next timer; -1: none.
int Router::Impl::Forwarder::next_timeout() const {
    std::optional<Clock::time_point> soonest;
    auto consider = [&](Clock::time_point t) {
        if (!soonest || t < *soonest) soonest = t;
    };
    if (!unfinished.empty()) return 0;
    if (accept_paused) consider(accept_resume);
    if (!head_timers.empty()) consider(head_timers.begin()->first);
    if (!closing_timers.empty()) consider(closing_timers.begin()->first);
    if (!soonest) return -1;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*soonest - Clock::now());
    return static_cast<int>(std::clamp<int64_t>(left.count() + 1, 0, 60000));
}

void Router::Impl::Forwarder::expire_timers() {
    if (head_timers.empty() && closing_timers.empty()) return;
    auto now = Clock::now();
    while (!head_timers.empty() && head_timers.begin()->first <= now) {
        uint64_t id = head_timers.begin()->second;
        head_timers.erase(head_timers.begin());
        auto it = heads.find(id);
        if (it == heads.end()) continue;
        fs::Fd client = std::move(it->second.client);
        heads.erase(it);
        {
            std::lock_guard lock(owner.mu);
            owner.http_counters.bad_request++;
        }
        respond(std::move(client),
                http_error(408, "Request Timeout",
                           "cascade router: the request head did not arrive in time\n"),
                kHead);
    }
    while (!closing_timers.empty() && closing_timers.begin()->first <= now) {
        uint64_t id = closing_timers.begin()->second;
        closing_timers.erase(closing_timers.begin());
        end_closing(id);
    }
}

void Router::Impl::Forwarder::read_head(uint64_t head_id) {
    auto it = heads.find(head_id);
    if (it == heads.end()) return;
    PendingHead& h = it->second;
    bool eof = false;
    while (h.buf.size() < kMaxHead) {
        size_t old = h.buf.size();
        h.buf.resize(old + kMaxHead);
        ssize_t n = recv(h.client.get(), h.buf.data() + old, kMaxHead, 0);
        h.buf.resize(old + static_cast<size_t>(std::max<ssize_t>(n, 0)));
        if (n > 0) continue;
        if (n == 0) {
            eof = true;
            break;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        head_timers.erase({h.deadline, head_id});
        close_abortively(h.client);
        heads.erase(it);  // reset by the client
        return;
    }
    Head head = examine_head(h.buf);
    if (head.status == HeadStatus::Incomplete && !eof) return;  // the next edge brings more
    head_timers.erase({h.deadline, head_id});
    if (head.status == HeadStatus::Complete) {
        route_request(head_id, std::move(head.host));
        return;
    }
    fs::Fd client = std::move(h.client);
    bool empty = h.buf.empty();
    heads.erase(it);
    if (head.status == HeadStatus::Incomplete && empty) return;  // connected, sent nothing, left
    {
        std::lock_guard lock(owner.mu);
        owner.http_counters.bad_request++;
    }
    std::string answer;
    if (head.status == HeadStatus::TooLarge) {
        answer = http_error(431, "Request Header Fields Too Large",
                            "cascade router: the request head is larger than " +
                                std::to_string(kMaxHead) + " bytes\n");
    } else if (head.status == HeadStatus::Incomplete) {
        answer = http_error(400, "Bad Request",
                            "cascade router: bad request: the connection ended inside the "
                            "request head\n");
    } else {
        answer =
            http_error(400, "Bad Request", "cascade router: bad request: " + head.reason + "\n");
    }
    respond(std::move(client), std::move(answer), kHead);
}

// The head is complete: pick the route by Host and connect like any client.
void Router::Impl::Forwarder::route_request(uint64_t head_id, std::string host) {
    auto it = heads.find(head_id);
    PendingHead h = std::move(it->second);
    heads.erase(it);
    std::shared_ptr<RouteState> route;
    bool ready = false;
    {
        std::lock_guard lock(owner.mu);
        auto found = owner.hostnames.find(host);
        if (found == owner.hostnames.end()) {
            owner.http_counters.unknown_host++;
        } else {
            route = found->second;
            owner.http_counters.routed++;
            route->stats.connections++;
            ready = !route->removed && !route->rotation.empty();
            if (!ready) route->stats.failed++;
        }
    }
    if (!route) {
        // The known hostnames are not listed: they are not the client's business.
        respond(std::move(h.client),
                http_error(404, "Not Found", "cascade router: no route for host '" + host + "'\n"),
                kHead);
        return;
    }
    if (!ready) {
        respond(std::move(h.client),
                http_error(
                    503, "Service Unavailable",
                    "cascade router: no ready backend for host '" + host + "'; try again later\n",
                    true),
                kHead);
        return;
    }
    epoll_ctl(epoll.get(), EPOLL_CTL_DEL, h.client.get(), nullptr);
    {
        std::lock_guard lock(owner.mu);
        route->stats.active++;
    }
    owner.submit(ConnectTask{std::move(h.client), route,
                             HttpRequest{std::move(h.buf), std::move(host)}, nullptr},
                 this);
}

// Writes `answer`, half-closes, and reads what the client still sends until
// it closes (or kLingerTime/kLingerBytes), so the client gets to read the
// answer instead of a reset. `registered_as`: kHead when the socket is in
// epoll as a head, anything else when it is not in epoll.
void Router::Impl::Forwarder::respond(fs::Fd client, std::string answer, Kind registered_as) {
    uint64_t id = next_id++;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = tag(kClosing, id);
    int op = registered_as == kHead ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(epoll.get(), op, client.get(), &ev) != 0) {
        close_abortively(client);
        return;
    }
    Closing& c = closings[id];
    c.client = std::move(client);
    c.out = std::move(answer);
    c.deadline = Clock::now() + kLingerTime;
    closing_timers.emplace(c.deadline, id);
    linger(id);
}

void Router::Impl::Forwarder::linger(uint64_t closing_id) {
    auto it = closings.find(closing_id);
    if (it == closings.end()) return;
    Closing& c = it->second;
    int fd = c.client.get();
    while (c.offset < c.out.size()) {
        ssize_t n = send(fd, c.out.data() + c.offset, c.out.size() - c.offset, MSG_NOSIGNAL);
        if (n > 0) {
            c.offset += static_cast<size_t>(n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            end_closing(closing_id);
            return;
        }
    }
    if (!c.shut) {
        shutdown(fd, SHUT_WR);
        c.shut = true;
    }
    while (true) {
        ssize_t n = recv(fd, scratch.get(), kChunk, 0);
        if (n > 0) {
            c.discarded += static_cast<size_t>(n);
            if (c.discarded <= kLingerBytes) continue;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        end_closing(closing_id);  // EOF, too much, or an error
        return;
    }
}

void Router::Impl::Forwarder::end_closing(uint64_t closing_id) {
    auto it = closings.find(closing_id);
    if (it == closings.end()) return;
    closing_timers.erase({it->second.deadline, closing_id});
    closings.erase(it);  // closing the socket takes it out of epoll
}

// Every listener, a route's or the shared HTTP port, is watched by every
// forwarder; the loop keeps the fd.
uint64_t Router::Impl::add_listener(const std::shared_ptr<RouteState>& route, fs::Fd fd) {
    uint64_t id = next_id++;
    size_t watching = 0;
    try {
        for (; watching < forwarders.size(); watching++) {
            Forwarder& f = *forwarders[watching];
            f.run([&f, id, &fd, &route] { f.watch_listener(id, fd.get(), route); });
        }
    } catch (...) {
        for (size_t i = 0; i < watching; i++) {
            Forwarder& f = *forwarders[i];
            f.run([&f, id] { f.unwatch_listener(id); });
        }
        throw;
    }
    listeners[id] = Listener{std::move(fd), route};
    if (route) route->listener_id = id;
    return id;
}

void Router::Impl::drop_listener(uint64_t listener_id) {
    auto it = listeners.find(listener_id);
    if (it == listeners.end()) return;
    // No forwarder uses the fd once this returns; then it is closed.
    for (auto& f : forwarders) {
        Forwarder& forwarder = *f;
        forwarder.run([&forwarder, listener_id] { forwarder.unwatch_listener(listener_id); });
    }
    listeners.erase(it);
}

// The forwarders accept themselves: each watches every listener
// (EPOLLEXCLUSIVE wakes one idle forwarder, not all), connects the client to a
// backend (on the shared port once its request head is read) and forwards it
// on the same thread. Measured on 2 cores with busybox httpd: 87 % of direct
// throughput on a route port, where the loop accepting and handing each
// connection to a forwarder served 74 %.
void Router::Impl::Forwarder::watch_listener(uint64_t listener_id, int fd,
                                             std::shared_ptr<RouteState> route) {
    if (!accept_paused) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLEXCLUSIVE;
        ev.data.u64 = tag(kListener, listener_id);
        if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
            throw sys_error(
                "router: epoll_ctl add listener for " +
                    (route ? "route '" + route->name + "'" : std::string("the HTTP port")),
                "", errno);
    }
    watched[listener_id] = WatchedListener{fd, std::move(route)};
}

void Router::Impl::Forwarder::unwatch_listener(uint64_t listener_id) {
    auto it = watched.find(listener_id);
    if (it == watched.end()) return;
    if (!accept_paused) epoll_ctl(epoll.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
    watched.erase(it);
}

// Out of fds or memory: this forwarder stops accepting for a moment (the
// listeners are level-triggered and would report the same backlog at once).
// EPOLLEXCLUSIVE entries cannot be modified, only removed and added again.
void Router::Impl::Forwarder::pause_accepting() {
    if (accept_paused) return;
    accept_paused = true;
    accept_resume = Clock::now() + kAcceptPause;
    for (auto& [id, listener] : watched)
        epoll_ctl(epoll.get(), EPOLL_CTL_DEL, listener.fd, nullptr);
}

void Router::Impl::Forwarder::resume_accepting() {
    accept_paused = false;
    for (auto& [id, listener] : watched) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLEXCLUSIVE;
        ev.data.u64 = tag(kListener, id);
        epoll_ctl(epoll.get(), EPOLL_CTL_ADD, listener.fd, &ev);
    }
}

void Router::Impl::Forwarder::accept_clients(uint64_t listener_id) {
    auto it = watched.find(listener_id);
    if (it == watched.end()) return;  // unwatched earlier in this batch
    const int listener = it->second.fd;
    const std::shared_ptr<RouteState> route = it->second.route;
    for (int i = 0; i < kMaxAcceptsPerEvent && !owner.stopping; i++) {
        int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting();
            return;  // EAGAIN, or an error that a later round may not have
        }
        fs::Fd client(fd);
        if (!route) {
            // The shared HTTP port: the request head comes first.
            uint64_t id = next_id++;
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
            ev.data.u64 = tag(kHead, id);
            if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, client.get(), &ev) != 0) continue;
            Clock::duration timeout;
            {
                std::lock_guard lock(owner.mu);
                owner.http_counters.connections++;
                timeout = owner.header_timeout;
            }
            PendingHead& head = heads[id];
            head.client = std::move(client);
            head.deadline = Clock::now() + timeout;
            head_timers.emplace(head.deadline, id);
            read_head(id);  // often here already; else EPOLLIN brings it
            continue;
        }
        {
            std::lock_guard lock(owner.mu);
            route->stats.connections++;
            route->stats.active++;
        }
        owner.submit(ConnectTask{std::move(client), route, std::nullopt, nullptr}, this);
    }
}

void Router::Impl::Forwarder::establish(Arrival arrival) {
    bool forced;
    {
        std::lock_guard lock(owner.mu);
        forced = arrival.epoch < arrival.target->force_epoch;
    }
    if (forced || owner.stopping) {
        close_abortively(arrival.client);
        close_abortively(arrival.backend);
        arrival.client.reset();
        arrival.backend.reset();
        owner.release(arrival.route, arrival.target);
        return;
    }
    auto c = std::make_unique<Connection>();
    c->id = next_id++;
    c->client = std::move(arrival.client);
    c->backend = std::move(arrival.backend);
    c->route = std::move(arrival.route);
    c->target = std::move(arrival.target);
    c->up.src = c->down.dst = c->client.get();
    c->up.dst = c->down.src = c->backend.get();
    c->up.bytes = &c->route->bytes_in;
    c->down.bytes = &c->route->bytes_out;
    if (arrival.replay) {
        // A resend: everything the client sent goes to this backend first
        // (counted in bytes_in once, when it arrived).
        c->first.request = arrival.replay->request;
        c->up.pending = std::move(arrival.replay->request);
        c->up.eof = arrival.replay->client_eof;
        c->first.tried = std::move(arrival.replay->tried);
    } else if (arrival.http) {
        // The request head (and whatever followed it) goes to the backend first.
        c->up.bytes->fetch_add(arrival.http->head.size(), std::memory_order_relaxed);
        c->first.request = arrival.http->head;
        c->up.pending = std::move(arrival.http->head);
    }
    if (arrival.http) c->first.http = HttpRequest{{}, std::move(arrival.http->host)};
    c->first.repeat = repeatable(c->first.request);
    if (c->first.repeat == Repeat::Unsafe || c->first.request.size() > kReplayLimit)
        end_first(*c);
    else
        c->first.head_request = c->first.request.rfind("HEAD ", 0) == 0;
    // TCP_NODELAY is set already: clients inherit it from the listener,
    // backends have it from Backend::attempt or connect_client.
    uint64_t id = c->id;
    Connection& conn = *c;
    connections[id] = std::move(c);
    // Edge-triggered: every event of either side pumps both directions until
    // they would block, so no readiness is ever left unhandled. EPOLLOUT is
    // added once a send finds a socket full (watch_writable).
    for (auto [fd, kind] :
         {std::pair{conn.client.get(), kClientSide}, std::pair{conn.backend.get(), kBackendSide}}) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
        ev.data.u64 = tag(kind, id);
        if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
            finish(id, true);
            return;
        }
    }
    // Only the client's side: the backend has had nothing to answer yet, and
    // bytes it sent first (a greeting) are reported by EPOLL_CTL_ADD's edge.
    Flow up = pump_direction(conn, conn.up);
    settle(id, up, Flow::Idle);
}

void Router::Impl::Forwarder::pump(uint64_t connection_id) {
    auto it = connections.find(connection_id);
    if (it == connections.end()) return;
    Connection& c = *it->second;
    Flow up = pump_direction(c, c.up);
    Flow down = up == Flow::Failed || up == Flow::Replay ? up : pump_direction(c, c.down);
    settle(connection_id, up, down);
}

// An event on one side moves only what it concerns: readable -> the direction
// reading from this side; writable -> the direction writing to it, if bytes
// wait for it.
void Router::Impl::Forwarder::on_connection_event(uint64_t connection_id, Kind side,
                                                  uint32_t events) {
    auto it = connections.find(connection_id);
    if (it == connections.end()) return;  // closed earlier in this batch
    Connection& c = *it->second;
    if (events & EPOLLERR) {
        int fd = side == kClientSide ? c.client.get() : c.backend.get();
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 && side == kBackendSide && can_resend(c)) {
            replay(connection_id);
            return;
        }
        if (err != 0 && !(side == kBackendSide && c.response_done)) {
            finish(connection_id, true);
            return;
        }
        if (err != 0) c.down.eof = true;  // the answer is whole: deliver it, then EOF
    }
    Direction& from = side == kClientSide ? c.up : c.down;
    Direction& to = side == kClientSide ? c.down : c.up;
    constexpr uint32_t kHangup = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
    if (events & kHangup) from.hup = true;
    Flow read = Flow::Idle, write = Flow::Idle;
    if (events & (EPOLLIN | kHangup)) read = pump_direction(c, from);
    if (read != Flow::Failed && read != Flow::Replay && (events & (EPOLLOUT | kHangup)) &&
        to.offset < to.pending.size())
        write = pump_direction(c, to);
    if (side == kClientSide)
        settle(connection_id, read, write);
    else
        settle(connection_id, write, read);
}

void Router::Impl::Forwarder::settle(uint64_t connection_id, Flow up, Flow down) {
    auto it = connections.find(connection_id);
    if (it == connections.end()) return;
    Connection& c = *it->second;
    if (up == Flow::Failed || down == Flow::Failed) {
        finish(connection_id, true);
    } else if (up == Flow::Replay || down == Flow::Replay) {
        replay(connection_id);
    } else if (c.up.shut && c.down.shut) {
        finish(connection_id, false);
    } else if (up == Flow::More || down == Flow::More || c.kick) {
        c.kick = false;
        unfinished.push_back(connection_id);
    }
}

// The first exchange is over (or can't be resent): what is held goes to the
// client, and from now on bytes are only forwarded.
void Router::Impl::Forwarder::end_first(Connection& c) {
    FirstExchange& f = c.first;
    if (!f.active) return;
    f.active = false;
    if (!f.held.empty()) {
        if (c.down.bytes) c.down.bytes->fetch_add(f.held.size(), std::memory_order_relaxed);
        c.down.pending.append(f.held);
        c.kick = true;  // the client side may be writable already: no edge would come
    }
    std::string().swap(f.held);
    std::string().swap(f.request);
    f.tried.clear();
    f.http.reset();
}

// Removes the connection from this forwarder, and its sockets from the epoll
// unless `closing` (closing a socket removes it: none is ever duplicated);
// null when it is gone already.
std::unique_ptr<Connection> Router::Impl::Forwarder::take(uint64_t connection_id, bool closing) {
    auto it = connections.find(connection_id);
    if (it == connections.end()) return nullptr;
    std::unique_ptr<Connection> c = std::move(it->second);
    connections.erase(it);
    if (!closing) {
        epoll_ctl(epoll.get(), EPOLL_CTL_DEL, c->client.get(), nullptr);
        epoll_ctl(epoll.get(), EPOLL_CTL_DEL, c->backend.get(), nullptr);
    }
    return c;
}

// The backend closed or failed before any response byte reached the client:
// the request goes to another backend (a worker connects; the client waits).
void Router::Impl::Forwarder::replay(uint64_t connection_id) {
    std::unique_ptr<Connection> c = take(connection_id, false);
    if (!c) return;
    close_abortively(c->backend);
    c->backend.reset();
    auto again = std::make_shared<Replay>();
    again->request = std::move(c->first.request);
    again->client_eof = c->up.eof;
    again->tried = std::move(c->first.tried);
    again->tried.push_back(c->target);
    {
        std::lock_guard lock(owner.mu);
        c->route->stats.retried++;
    }
    owner.release_backend(c->target);
    owner.submit(ConnectTask{std::move(c->client), c->route, std::move(c->first.http), again});
}

Flow Router::Impl::Forwarder::pump_direction(Connection& c, Direction& d) {
    const bool down = &d == &c.down;
    // A failing backend before the first response: resend when that is safe.
    auto backend_failed = [&c] { return can_resend(c) ? Flow::Replay : Flow::Failed; };
    size_t moved = 0;
    while (true) {
        while (d.offset < d.pending.size()) {
            ssize_t n =
                send(d.dst, d.pending.data() + d.offset, d.pending.size() - d.offset, MSG_NOSIGNAL);
            if (n > 0) {
                d.offset += static_cast<size_t>(n);
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                watch_writable(c, d);
                return Flow::Idle;  // EPOLLOUT on dst resumes
            } else {
                return down ? Flow::Failed : backend_failed();
            }
        }
        if (!d.pending.empty()) {
            std::string().swap(d.pending);  // idle connections hold no buffer
            d.offset = 0;
        }
        if (d.eof) {
            if (!d.shut) {
                // Half-close: the peer that reads to EOF sees it; the other
                // direction keeps flowing. (Also when the other direction is
                // over already and close() follows: measured, leaving this
                // shutdown out made the router ~2% slower.)
                shutdown(d.dst, SHUT_WR);
                d.shut = true;
            }
            return Flow::Idle;
        }
        if (moved >= kPumpBudget) return Flow::More;
        ssize_t n = recv(d.src, scratch.get(), kChunk, 0);
        if (n == 0) {
            if (down && c.first.active) {
                if (can_resend(c)) return Flow::Replay;
                end_first(c);
            }
            d.eof = true;
            continue;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return Flow::Idle;  // EPOLLIN resumes
            if (down && c.response_done) {
                d.eof = true;  // reset right after a whole answer: deliver it, then EOF
                continue;
            }
            return down ? backend_failed() : Flow::Failed;
        }
        moved += static_cast<size_t>(n);
        if (c.first.active) {
            std::string_view data(scratch.get(), static_cast<size_t>(n));
            FirstExchange& f = c.first;
            if (!down) {
                f.request.append(data);
                if (f.repeat == Repeat::Unknown) {
                    f.repeat = repeatable(f.request);
                    f.head_request = f.request.rfind("HEAD ", 0) == 0;
                }
                if (f.repeat == Repeat::Unsafe || f.request.size() > kReplayLimit) end_first(c);
            } else if (f.repeat != Repeat::Safe) {
                end_first(c);  // the backend spoke before a resendable request
            } else {
                // Hold the response back until it is complete (or can't be).
                f.held.append(data);
                FirstResponse r = examine_response(f.held, f.head_request);
                bool waiting = r.kind == ResponseLength::Incomplete ||
                               (r.kind == ResponseLength::Sized && f.held.size() < r.size);
                if (!waiting) {
                    c.response_done = r.kind == ResponseLength::Sized && f.held.size() == r.size;
                    end_first(c);  // into d.pending: the loop's top sends it
                    c.kick = false;
                    continue;
                }
                if (static_cast<size_t>(n) < kChunk && !d.hup) return Flow::Idle;
                continue;
            }
        }
        c.response_done = false;
        if (d.bytes) d.bytes->fetch_add(static_cast<size_t>(n), std::memory_order_relaxed);
        size_t sent = 0;
        while (sent < static_cast<size_t>(n)) {
            ssize_t m =
                send(d.dst, scratch.get() + sent, static_cast<size_t>(n) - sent, MSG_NOSIGNAL);
            if (m > 0) {
                sent += static_cast<size_t>(m);
            } else if (m < 0 && errno == EINTR) {
                continue;
            } else if (m < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                d.pending.assign(scratch.get() + sent, static_cast<size_t>(n) - sent);
                watch_writable(c, d);
                return Flow::Idle;  // reading stops until dst drains this
            } else {
                return down ? Flow::Failed : backend_failed();
            }
        }
        // A short read emptied the socket: new bytes bring a new edge. After a
        // hangup the FIN may already wait behind them, so read on to EOF.
        if (static_cast<size_t>(n) < kChunk && !d.hup) return Flow::Idle;
    }
}

// Sockets are watched for EPOLLOUT only once a send found one full: a
// writable edge on every new socket and after every ACK would be events with
// nothing to do. Arming reports the current state (edge-triggered), so space
// freed meanwhile is not missed.
void Router::Impl::Forwarder::watch_writable(Connection& c, Direction& d) {
    if (d.out_armed) return;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = tag(&d == &c.up ? kBackendSide : kClientSide, c.id);
    if (epoll_ctl(epoll.get(), EPOLL_CTL_MOD, d.dst, &ev) == 0) {
        d.out_armed = true;
    } else {
        unfinished.push_back(c.id);  // cannot wait for the edge: pump again next round
    }
}

void Router::Impl::Forwarder::finish(uint64_t connection_id, bool abort) {
    std::unique_ptr<Connection> c = take(connection_id, true);
    if (!c) return;
    if (abort) {
        close_abortively(c->client);
        close_abortively(c->backend);
    }
    c->client.reset();
    c->backend.reset();
    owner.release(c->route, c->target);
}

void Router::Impl::Forwarder::close_backend_connections(const std::shared_ptr<BackendState>& b) {
    std::vector<uint64_t> doomed;
    for (auto& [id, c] : connections)
        if (c->target == b) doomed.push_back(id);
    for (uint64_t id : doomed)
        finish(id, true);
}

// ---- API ---------------------------------------------------------------------

Router::Router() : impl_(std::make_unique<Impl>()) {}

Router::~Router() = default;

void Router::add_route(const std::string& route, const std::string& host, uint16_t port) {
    std::string bind_host = host.empty() ? "127.0.0.1" : host;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->routes.find(route);
        if (it != impl_->routes.end() && it->second->listener_id != 0 &&
            it->second->host == bind_host && it->second->port == port)
            return;
    }
    // Bind first: when the new address is taken, the old listener stays.
    auto fd = std::make_shared<fs::Fd>(listen_on("route '" + route + "'", bind_host, port));
    impl_->run_in_loop([this, &route, &bind_host, port, fd] {
        std::shared_ptr<RouteState> r;
        uint64_t old_listener;
        {
            std::lock_guard lock(impl_->mu);
            r = impl_->route_locked(route);
            old_listener = r->listener_id;
            r->host = bind_host;
            r->port = port;
            r->listener_id = 0;
        }
        impl_->drop_listener(old_listener);
        impl_->add_listener(r, std::move(*fd));
    });
}

void Router::remove_route(const std::string& route) {
    impl_->run_in_loop([this, &route] {
        uint64_t listener;
        {
            std::lock_guard lock(impl_->mu);
            auto it = impl_->routes.find(route);
            if (it == impl_->routes.end()) return;
            std::shared_ptr<RouteState> r = it->second;
            impl_->routes.erase(it);
            r->removed = true;
            listener = r->listener_id;
            r->listener_id = 0;
            if (!r->hostname.empty()) impl_->hostnames.erase(r->hostname);
            r->hostname.clear();
            for (auto& b : r->rotation) {
                b->in_rotation = false;
                impl_->retire_if_unused_locked(b);
            }
            r->rotation.clear();
        }
        impl_->drop_listener(listener);
    });
}

void Router::add_backend(const std::string& route, Backend backend) {
    if (backend.id.empty()) throw Error("router: a backend of route '" + route + "' has no id");
    if (!backend.connect && !backend.attempt)
        throw Error("router: backend '" + backend.id + "' of route '" + route +
                    "' has no connect function");
    auto connect = std::make_shared<const std::function<fs::Fd()>>(std::move(backend.connect));
    std::shared_ptr<const AttemptFn> attempt;
    if (backend.attempt) attempt = std::make_shared<const AttemptFn>(std::move(backend.attempt));
    std::lock_guard lock(impl_->mu);
    auto it = impl_->backends.find(backend.id);
    if (it != impl_->backends.end()) {
        auto& b = it->second;
        if (b->route != route)
            throw Error("router: backend id '" + backend.id + "' already belongs to route '" +
                        b->route + "'; backend ids must be unique across routes");
        b->connect = std::move(connect);
        b->attempt = std::move(attempt);
        if (!b->in_rotation) {
            b->in_rotation = true;
            impl_->route_locked(route)->rotation.push_back(b);
        }
        return;
    }
    auto b = std::make_shared<BackendState>();
    b->id = backend.id;
    b->route = route;
    b->connect = std::move(connect);
    b->attempt = std::move(attempt);
    impl_->backends[b->id] = b;
    impl_->route_locked(route)->rotation.push_back(b);
}

void Router::remove_backend(const std::string& route, const std::string& backend_id) {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->backends.find(backend_id);
    if (it == impl_->backends.end() || it->second->route != route) return;
    std::shared_ptr<BackendState> b = it->second;
    if (!b->in_rotation) return;
    b->in_rotation = false;
    auto r = impl_->routes.find(route);
    if (r != impl_->routes.end()) std::erase(r->second->rotation, b);
    impl_->retire_if_unused_locked(b);
}

std::vector<std::string> Router::backends(const std::string& route) const {
    std::lock_guard lock(impl_->mu);
    std::vector<std::string> ids;
    auto it = impl_->routes.find(route);
    if (it == impl_->routes.end()) return ids;
    for (auto& b : it->second->rotation)
        ids.push_back(b->id);
    return ids;
}

bool Router::drain(const std::string& backend_id, std::chrono::milliseconds timeout) {
    std::unique_lock lock(impl_->mu);
    auto it = impl_->backends.find(backend_id);
    if (it == impl_->backends.end()) return true;
    std::shared_ptr<BackendState> b = it->second;
    // wait_for with a huge duration would overflow the clock.
    constexpr auto kForever = std::chrono::hours(24 * 365);
    auto deadline =
        std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(timeout, kForever);
    if (impl_->released.wait_until(lock, deadline, [&] { return b->active == 0; })) return true;
    b->force_epoch++;
    lock.unlock();
    for (auto& f : impl_->forwarders)
        f->run([&f, b] { f->close_backend_connections(b); });
    return false;
}

size_t Router::active_connections(const std::string& backend_id) const {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->backends.find(backend_id);
    return it == impl_->backends.end() ? 0 : it->second->active;
}

RouteStats Router::stats(const std::string& route) const {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->routes.find(route);
    if (it == impl_->routes.end()) return RouteStats{};
    RouteStats out = it->second->stats;
    out.bytes_in = it->second->bytes_in.load(std::memory_order_relaxed);
    out.bytes_out = it->second->bytes_out.load(std::memory_order_relaxed);
    return out;
}

void Router::listen_http(const std::string& host, uint16_t port) {
    std::string bind_host = host.empty() ? "127.0.0.1" : host;
    {
        std::lock_guard lock(impl_->mu);
        if (impl_->http_bound_port != 0 && impl_->http_host == bind_host &&
            impl_->http_bound_port == port)
            return;
    }
    auto fd = std::make_shared<fs::Fd>(listen_on("the shared HTTP port", bind_host, port));
    uint16_t bound = bound_port(fd->get());
    impl_->run_in_loop([this, fd] {
        uint64_t old = impl_->http_listener;
        impl_->http_listener = 0;
        impl_->drop_listener(old);
        impl_->http_listener = impl_->add_listener(nullptr, std::move(*fd));
    });
    std::lock_guard lock(impl_->mu);
    impl_->http_host = bind_host;
    impl_->http_bound_port = bound;
}

uint16_t Router::http_port() const {
    std::lock_guard lock(impl_->mu);
    return impl_->http_bound_port;
}

void Router::set_hostname(const std::string& route, const std::string& hostname) {
    std::string name = normalize_host(hostname);
    if (name.empty() || name.find(':') != std::string::npos)
        throw Error("router: invalid hostname '" + hostname + "' for route '" + route +
                    "': give a DNS name such as " + route +
                    ".localhost (letters, digits, '-', '.')");
    std::lock_guard lock(impl_->mu);
    auto taken = impl_->hostnames.find(name);
    if (taken != impl_->hostnames.end() && taken->second->name != route)
        throw Error("router: hostname '" + name + "' of route '" + route +
                    "' is already used by route '" + taken->second->name +
                    "'; give each route its own hostname");
    auto r = impl_->route_locked(route);
    if (!r->hostname.empty()) impl_->hostnames.erase(r->hostname);
    r->hostname = name;
    impl_->hostnames[name] = r;
}

void Router::clear_hostname(const std::string& route) {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->routes.find(route);
    if (it == impl_->routes.end() || it->second->hostname.empty()) return;
    impl_->hostnames.erase(it->second->hostname);
    it->second->hostname.clear();
}

void Router::set_header_timeout(std::chrono::milliseconds timeout) {
    std::lock_guard lock(impl_->mu);
    impl_->header_timeout = timeout;
}

HttpPortStats Router::http_stats() const {
    std::lock_guard lock(impl_->mu);
    return impl_->http_counters;
}

}  // namespace cascade::runtime
