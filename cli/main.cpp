// cascade — the command line. `cascade serve` runs the daemon; every other
// command is a thin client of the daemon's HTTP API (--host / CASCADE_HOST).
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "cli/daemon.hpp"
#include "cli/objects.hpp"
#include "cli/selector.hpp"
#include "cli/template.hpp"
#include "oci/error.hpp"

using nlohmann::json;

namespace cascade::cli {
namespace {

const char* kDefaultHost = "http://127.0.0.1:5000";

// A usage error found after parsing (a missing name, a bad selector): exit 2,
// like CLI11's parse errors. Errors from the daemon or an operation exit 1.
struct UsageError : Error {
    using Error::Error;
};

// Colour only on a terminal, and not with NO_COLOR set (https://no-color.org)
// or --no-color.
bool colour = false;

// A phase (or "Phase (message)") in green, red or yellow.
std::string paint_phase(const std::string& text) {
    if (!colour) return text;
    std::string word = text.substr(0, text.find(' '));
    const char* code = nullptr;
    if (word == "Complete" || word == "Running" || word == "Succeeded") code = "32";
    if (word == "Failed" || word == "Error" || word == "Cancelled") code = "31";
    if (word == "Pending" || word == "New" || word == "Paused" || word == "Progressing")
        code = "33";
    if (word == "current") code = "32";   // impact
    if (word == "outdated") code = "33";  // impact
    return code ? std::string("\033[") + code + "m" + text + "\033[0m" : text;
}

struct Global {
    std::string host;
};

// How every command reaches the daemon besides its URL (global options or
// CASCADE_USERNAME / CASCADE_PASSWORD / CASCADE_CA_CERT): Basic credentials
// and the CA file that signed the daemon's certificate (default: the system's).
struct Connection {
    std::string username;
    std::string password;
    std::string ca_cert;
};
Connection connection;

// The one place the CLI makes an HTTP(S) client of the daemon.
std::unique_ptr<httplib::Client> client_for(const std::string& host) {
    auto c = std::make_unique<httplib::Client>(host);
    if (host.rfind("https://", 0) == 0) {
        c->enable_server_certificate_verification(true);
        if (!connection.ca_cert.empty()) c->set_ca_cert_path(connection.ca_cert);
    }
    if (!connection.username.empty() || !connection.password.empty())
        c->set_basic_auth(connection.username, connection.password);
    c->set_connection_timeout(5);
    c->set_read_timeout(3600);
    c->set_write_timeout(60);
    return c;
}

[[noreturn]] void unreachable_daemon(const std::string& host, const httplib::Error& err) {
    std::string what =
        "cannot reach the cascade daemon at " + host + " (" + httplib::to_string(err) + "); ";
    if (err == httplib::Error::SSLServerVerification)
        throw Error(what +
                    "its TLS certificate is not trusted: pass --ca-cert FILE (or set "
                    "CASCADE_CA_CERT) with the certificate of the CA that signed it");
    if (err == httplib::Error::SSLConnection || err == httplib::Error::SSLLoadingCerts)
        throw Error(what +
                    "the TLS handshake failed: check that the daemon serves https and "
                    "that --ca-cert / CASCADE_CA_CERT names a PEM file");
    if (host.rfind("http://", 0) == 0 &&
        (err == httplib::Error::Read || err == httplib::Error::Write))
        throw Error(what +
                    "if the daemon serves TLS, use an https:// URL in --host / CASCADE_HOST");
    throw Error(what + "start it with `cascade serve`, or point --host / CASCADE_HOST at it");
}

json checked_json(const std::string& host, const httplib::Result& res) {
    if (!res) unreachable_daemon(host, res.error());
    json body;
    try {
        body = json::parse(res->body);
    } catch (const json::exception&) {
        throw Error("the daemon at " + host + " answered " + std::to_string(res->status) +
                    " with a body that is not JSON");
    }
    if (res->status >= 400) throw Error(body.value("message", res->body));
    return body;
}

json api_get(const Global& g, const std::string& path) {
    auto c = client_for(g.host);
    return checked_json(g.host, c->Get(path));
}

json api_post(const Global& g, const std::string& path, const json& body) {
    auto c = client_for(g.host);
    return checked_json(g.host, c->Post(path, body.dump(), "application/json"));
}

bool daemon_answers(const std::string& host) {
    auto c = client_for(host);
    c->set_connection_timeout(1);
    c->set_read_timeout(2);
    auto res = c->Get("/v2/");
    return res && (res->status == 200 || res->status == 401);  // 401: it asks for a login
}

std::string short_digest(const std::string& d) {
    auto colon = d.find(':');
    return colon == std::string::npos ? d : d.substr(colon + 1, 12);
}

// `colour_column`: the column holding a phase, painted on a terminal.
void print_table(const std::vector<std::vector<std::string>>& rows, int colour_column = -1) {
    if (rows.empty()) return;
    std::vector<size_t> width(rows[0].size(), 0);
    for (const auto& r : rows)
        for (size_t i = 0; i < r.size() && i < width.size(); i++)
            width[i] = std::max(width[i], r[i].size());
    for (const auto& r : rows) {
        std::string line;
        for (size_t i = 0; i < r.size(); i++) {
            bool paint = static_cast<int>(i) == colour_column && &r != &rows.front();
            line += paint ? paint_phase(r[i]) : r[i];
            if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 3, ' ');
        }
        std::cout << line << "\n";
    }
}

std::string age(const std::string& rfc3339) {
    if (rfc3339.empty()) return "";
    std::tm tm{};
    strptime(rfc3339.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
    auto secs = static_cast<long>(std::time(nullptr) - timegm(&tm));
    if (secs < 120) return std::to_string(secs) + "s";
    if (secs < 7200) return std::to_string(secs / 60) + "m";
    if (secs < 172800) return std::to_string(secs / 3600) + "h";
    return std::to_string(secs / 86400) + "d";
}

std::string duration_of(const json& status) {
    if (!status.contains("duration")) return "";
    auto secs = status["duration"].get<int64_t>() / 1000000000.0;
    std::ostringstream s;
    s << std::fixed << std::setprecision(1) << secs << "s";
    return s.str();
}

void print_objects(const std::string& kind, const std::vector<json>& items, bool wide) {
    std::vector<std::vector<std::string>> rows;
    if (kind == "imagestreams") {
        rows.push_back({"NAME", "TAG", "GENERATION", "DIGEST", "UPDATED", "CAUSE"});
        for (const auto& is : items) {
            auto name = is["metadata"]["name"].get<std::string>();
            const auto& tags = is["status"]["tags"];
            if (tags.empty()) rows.push_back({name, "", "", "", "", ""});
            for (const auto& t : tags) {
                if (t["items"].empty()) {  // an import that failed before the first image
                    rows.push_back({name, t["tag"], "", "", "", "import failed"});
                    continue;
                }
                const auto& newest = t["items"][0];
                std::string digest = newest["image"];
                rows.push_back({name, t["tag"], std::to_string(newest["generation"].get<int64_t>()),
                                wide ? digest : short_digest(digest), age(newest["created"]),
                                newest["cause"]});
            }
        }
    } else if (kind == "buildconfigs") {
        rows.push_back({"NAME", "FROM", "OUTPUT", "LATEST"});
        for (const auto& bc : items)
            rows.push_back(
                {bc["metadata"]["name"],
                 bc["status"]["from"].get<std::string>().empty() ? "scratch" : bc["status"]["from"],
                 bc["status"]["output"],
                 std::to_string(bc["status"]["lastVersion"].get<int64_t>())});
    } else if (kind == "builds") {
        rows.push_back({"NAME", "STATUS", "DIGEST", "BASE", "DURATION", "CAUSE"});
        for (const auto& b : items) {
            const auto& st = b["status"];
            std::string digest = st["output"]["to"]["imageDigest"];
            std::string base = st["base"]["name"];
            if (!st["base"]["digest"].get<std::string>().empty())
                base += "@" + (wide ? st["base"]["digest"].get<std::string>()
                                    : short_digest(st["base"]["digest"]));
            std::string phase = st["phase"];
            if (phase == "Complete" && !st.value("tagMoved", true)) phase += " (unchanged)";
            rows.push_back({b["metadata"]["name"], phase, wide ? digest : short_digest(digest),
                            base, duration_of(st), b["spec"]["triggeredBy"][0]["message"]});
        }
    } else if (kind == "deployments") {
        std::vector<std::string> head{"NAME",     "READY",  "UP-TO-DATE", "AVAILABLE",
                                      "REVISION", "DIGEST", "PHASE",      "AGE"};
        if (wide) head.insert(head.begin() + 5, "IMAGE");
        rows.push_back(head);
        for (const auto& d : items) {
            const auto& st = d["status"];
            std::string digest = st["imageDigest"];
            int desired = st.value("desiredReplicas", d.value("/spec/replicas"_json_pointer, 1));
            std::string message = st.value("message", "");
            std::vector<std::string> row{
                d["metadata"]["name"],
                std::to_string(st["readyReplicas"].get<int>()) + "/" + std::to_string(desired),
                std::to_string(st.value("updatedReplicas", 0)),
                std::to_string(st["readyReplicas"].get<int>()),
                std::to_string(st["latestVersion"].get<int>()),
                wide ? digest : short_digest(digest),
                st["phase"].get<std::string>() + (message.empty() ? "" : " (" + message + ")"),
                age(d.value("/metadata/creationTimestamp"_json_pointer, std::string()))};
            if (wide) row.insert(row.begin() + 5, st["image"].get<std::string>());
            rows.push_back(row);
        }
    } else if (kind == "routes") {
        rows.push_back({"NAME", "HOST/PORT", "URL", "SERVICES"});
        for (const auto& r : items) {
            const auto& st = r["status"];
            std::string url = st.value("hostnameUrl", "");
            std::string port_url = st.value("url", "");
            std::string host_port = port_url;
            if (host_port.rfind("http://", 0) == 0) host_port = host_port.substr(7);
            if (!host_port.empty() && host_port.back() == '/') host_port.pop_back();
            rows.push_back({r["metadata"]["name"], host_port, url.empty() ? port_url : url,
                            r.value("/spec/to/name"_json_pointer, std::string())});
        }
    } else if (kind == "services") {
        rows.push_back({"NAME", "PORT(S)", "SELECTOR", "AGE"});
        for (const auto& svc : items) {
            std::string ports, selector;
            for (const auto& p : svc.value("/spec/ports"_json_pointer, json::array())) {
                std::string target =
                    p.contains("targetPort") ? p["targetPort"].dump() : std::string();
                if (!target.empty() && target.front() == '"')
                    target = target.substr(1, target.size() - 2);
                ports += (ports.empty() ? "" : ",") + p.value("port", json(0)).dump() +
                         (target.empty() ? "" : ":" + target) + "/" +
                         p.value("protocol", std::string("TCP"));
            }
            const json chosen = svc.value("/spec/selector"_json_pointer, json::object());
            for (const auto& [k, v] : chosen.items())
                selector += (selector.empty() ? "" : ",") + k + "=" +
                            (v.is_string() ? v.get<std::string>() : v.dump());
            rows.push_back(
                {svc["metadata"]["name"], ports.empty() ? "<none>" : ports,
                 selector.empty() ? "<none>" : selector,
                 age(svc.value("/metadata/creationTimestamp"_json_pointer, std::string()))});
        }
    } else if (kind == "pods") {
        std::vector<std::string> head{"NAME", "READY", "STATUS", "RESTARTS", "DEPLOYMENT"};
        if (wide) head.insert(head.end(), {"PID", "IMAGE"});
        rows.push_back(head);
        for (const auto& p : items) {
            const auto& st = p["status"];
            const json& cs = st.value("containerStatuses", json::array());
            json c = cs.empty() ? json::object() : cs[0];
            // As kubectl: the container's state when it says more than the phase.
            std::string state = st.value("state", "");
            std::string status = state == "CrashLoopBackOff" || state == "completed"
                                     ? (state == "completed" ? "Completed" : state)
                                     : st.value("phase", "");
            std::vector<std::string> row{
                p["metadata"]["name"], std::string(c.value("ready", false) ? "1/1" : "0/1"), status,
                std::to_string(c.value("restartCount", 0)),
                p.value("/metadata/labels/deployment"_json_pointer, std::string())};
            if (wide) {
                std::string image = c.value("imageID", "");
                row.push_back(std::to_string(st.value("pid", 0)));
                row.push_back(image);
            }
            rows.push_back(row);
        }
    } else if (kind == "templates") {
        rows.push_back({"NAME", "DESCRIPTION", "PARAMETERS", "OBJECTS"});
        for (const auto& t : items) {
            auto params = t.value("parameters", json::array());
            int blank = 0;
            for (const auto& p : params)
                if (!p.contains("value") && !p.contains("generate")) blank++;
            std::string description =
                t.value("/metadata/annotations/description"_json_pointer, std::string());
            if (!wide && description.size() > 60) description = description.substr(0, 57) + "...";
            rows.push_back(
                {t["metadata"]["name"], description,
                 std::to_string(params.size()) + " (" + std::to_string(blank) + " blank)",
                 std::to_string(t.value("objects", json::array()).size())});
        }
    }
    print_table(rows, kind == "builds"        ? 1
                      : kind == "pods"        ? 2
                      : kind == "deployments" ? (wide ? 7 : 6)
                                              : -1);
}

// The table an object's kind is printed in (the daemon resolves aliases).
std::string resource_of(const json& obj) {
    static const std::map<std::string, std::string> resources = {
        {"ImageStream", "imagestreams"},
        {"BuildConfig", "buildconfigs"},
        {"Build", "builds"},
        {"DeploymentConfig", "deployments"},
        {"Deployment", "deployments"},
        {"Route", "routes"},
        {"Service", "services"},
        {"Template", "templates"},
        {"Pod", "pods"}};
    auto it = resources.find(obj.value("kind", ""));
    return it == resources.end() ? obj.value("kind", "") : it->second;
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), ::tolower);
    return s;
}

// oc's name of a kind with its API group: "buildconfig.build.openshift.io".
std::string qualified_kind(const std::string& kind) {
    static const std::map<std::string, std::string> names = {
        {"ImageStream", "imagestream.image.openshift.io"},
        {"BuildConfig", "buildconfig.build.openshift.io"},
        {"Build", "build.build.openshift.io"},
        {"DeploymentConfig", "deploymentconfig.apps.openshift.io"},
        {"Deployment", "deployment.apps"},
        {"Route", "route.route.openshift.io"},
        {"Service", "service"},
        {"Template", "template.template.openshift.io"}};
    auto it = names.find(kind);
    return it == names.end() ? lower(kind) : it->second;
}

// `-o name`: "buildconfig.build.openshift.io/app-a".
std::string object_ref(const json& obj) {
    return qualified_kind(obj.value("kind", "")) + "/" + obj["metadata"].value("name", "");
}

std::string url_encode(const std::string& s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

// "?labelSelector=…" for a selector checked here first (a typo is a usage
// error, exit 2, before the daemon is asked).
std::string selector_query(const std::string& text) {
    try {
        LabelSelector::parse(text);
    } catch (const Error& e) {
        throw UsageError(e.what());
    }
    return "?labelSelector=" + url_encode(text);
}

// `get all`: the kinds oc's `all` covers that cascade has,
// in oc's order (templates are not part of it).
const std::vector<std::string> kAllResources = {
    "pods", "services", "deployments", "buildconfigs", "builds", "imagestreams", "routes"};

// "KIND/NAME" → {KIND, NAME}; otherwise {text, ""}.
std::pair<std::string, std::string> split_kind_name(const std::string& text) {
    auto slash = text.find('/');
    if (slash == std::string::npos) return {text, ""};
    return {text.substr(0, slash), text.substr(slash + 1)};
}

// KIND/NAME... or KIND NAME... → {KIND, NAME} pairs (none for a bare KIND).
std::vector<std::pair<std::string, std::string>> named_objects(
    const std::string& command, const std::vector<std::string>& args) {
    std::vector<std::pair<std::string, std::string>> named;
    if (args[0].find('/') != std::string::npos) {
        for (const auto& a : args) {
            auto kn = split_kind_name(a);
            if (kn.second.empty())
                throw UsageError("cascade " + command + ": mix KIND/NAME and KIND NAME: \"" + a +
                                 "\"");
            named.push_back(kn);
        }
    } else {
        for (size_t i = 1; i < args.size(); i++)
            named.emplace_back(args[0], args[i]);
    }
    return named;
}

void print_output(const std::vector<json>& items, const std::string& resource,
                  const std::string& output, bool single) {
    if (output == "json" || output == "yaml") {
        json doc = single ? items.at(0)
                          : json{{"apiVersion", "v1"},
                                 {"kind", "List"},
                                 {"items", items},
                                 {"metadata", {{"resourceVersion", ""}}}};
        std::cout << (output == "json" ? doc.dump(2) + "\n" : json_to_yaml(doc));
    } else if (output == "name") {
        for (const auto& item : items)
            std::cout << object_ref(item) << "\n";
    } else {
        print_objects(resource, items, output == "wide");
    }
}

// `get KIND [NAME...]`, `get KIND/NAME...`, `get all`, with -l and -o.
int cmd_get(const Global& g, const std::vector<std::string>& args, const std::string& output,
            const std::string& selector_text) {
    if (args.empty())
        throw UsageError(
            "cascade get: name a kind (imagestreams, buildconfigs, builds, deployments, pods, "
            "routes, "
            "services, templates, all)");
    std::string query;
    if (!selector_text.empty()) query = selector_query(selector_text);
    auto named = named_objects("get", args);
    if (!named.empty()) {
        if (!query.empty())
            throw UsageError("cascade get: a name and a selector (-l) cannot be combined");
        std::vector<json> items;
        for (const auto& [kind, name] : named) {
            if (lower(kind) == "all") throw UsageError("cascade get all: takes no name");
            items.push_back(api_get(g, "/api/v1/" + kind + "/" + name));
        }
        bool tables = output.empty() || output == "wide";
        if (tables) {
            // One table per kind, in the order given.
            std::vector<std::string> order;
            std::map<std::string, std::vector<json>> by_resource;
            for (const auto& item : items) {
                auto r = resource_of(item);
                if (!by_resource.count(r)) order.push_back(r);
                by_resource[r].push_back(item);
            }
            for (size_t i = 0; i < order.size(); i++) {
                if (i) std::cout << "\n";
                print_objects(order[i], by_resource[order[i]], output == "wide");
            }
        } else {
            print_output(items, "", output, items.size() == 1);
        }
        return 0;
    }
    std::string kind = args[0];
    if (lower(kind) != "all") {
        auto list = api_get(g, "/api/v1/" + kind + query);
        auto items = list["items"].get<std::vector<json>>();
        if (items.empty() && (output.empty() || output == "wide")) {
            std::cerr << "No " << list.value("resource", kind) << " found"
                      << (selector_text.empty() ? "" : " matching " + selector_text) << ".\n";
            return 0;
        }
        print_output(items, list.value("resource", kind), output, false);
        return 0;
    }
    // `get all`: each kind's table, names prefixed with their kind as oc does.
    std::vector<json> all;
    bool printed = false;
    for (const auto& resource : kAllResources) {
        auto items = api_get(g, "/api/v1/" + resource + query)["items"].get<std::vector<json>>();
        if (items.empty()) continue;
        if (!output.empty() && output != "wide") {
            all.insert(all.end(), items.begin(), items.end());
            continue;
        }
        for (auto& item : items)
            item["metadata"]["name"] = object_ref(item);
        if (printed) std::cout << "\n";
        print_objects(resource, items, output == "wide");
        printed = true;
    }
    if (!output.empty() && output != "wide")
        print_output(all, "", output, false);
    else if (!printed)
        std::cerr << "No resources found"
                  << (selector_text.empty() ? "" : " matching " + selector_text) << ".\n";
    return 0;
}

// "Labels:" with one label per line under the first, as oc's describe;
// `width`: the column the values start at.
std::string labels_text(const json& obj, const std::string& field = "labels", size_t width = 15) {
    auto labels = obj.contains("metadata") && obj["metadata"].is_object()
                      ? obj["metadata"].value(field, json::object())
                      : json::object();
    std::string head = field == "labels" ? "Labels:" : "Annotations:";
    std::string out = head + std::string(width > head.size() ? width - head.size() : 1, ' ');
    if (!labels.is_object() || labels.empty()) return out + "<none>\n";
    bool first = true;
    for (const auto& [k, v] : labels.items()) {
        if (!first) out += std::string(width, ' ');
        out += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump()) + "\n";
        first = false;
    }
    return out;
}

std::string text_of(const json& v) {
    if (v.is_null()) return "";
    return v.is_string() ? v.get<std::string>() : v.dump();
}

// A `from`/`to` reference: "ImageStreamTag httpd-base:latest".
std::string ref_text(const json& ref) {
    if (!ref.is_object()) return "<none>";
    return ref.value("kind", std::string("ImageStreamTag")) + " " + ref.value("name", "");
}

// ---- delete ----

struct DeleteOptions {
    std::vector<std::string> args;  // KIND NAME... | KIND/NAME... | KIND (with -l / --all)
    std::vector<std::string> files;
    std::string selector;
    bool all = false;
    bool ignore_not_found = false;
};

// DELETE path; prints `kind.group "name" deleted` per object. A 404 prints
// oc's `Error from server (NotFound): ...` (nothing with --ignore-not-found)
// and makes the command exit 1; other errors throw.
bool delete_path(const Global& g, const std::string& path, bool ignore_not_found, int& count) {
    auto c = client_for(g.host);
    auto res = c->Delete(path);
    if (!res) unreachable_daemon(g.host, res.error());
    json body = json::parse(res->body, nullptr, false);
    std::string message = body.is_object() ? body.value("message", res->body) : res->body;
    if (res->status == 404) {
        if (ignore_not_found) return true;
        std::cerr << "Error from server (NotFound): " << message << "\n";
        return false;
    }
    if (res->status >= 400 || !body.is_object()) throw Error(message);
    for (const auto& item : body.value("items", json::array())) {
        std::cout << qualified_kind(item.value("kind", "")) << " \"" << item.value("name", "")
                  << "\" deleted\n"
                  << std::flush;
        count++;
    }
    return true;
}

int cmd_delete(const Global& g, const DeleteOptions& o) {
    bool ok = true;
    int count = 0;
    if (!o.files.empty()) {
        if (!o.args.empty() || !o.selector.empty() || o.all)
            throw UsageError("cascade delete -f FILE: takes no kind, name, -l or --all");
        for (const auto& file : o.files)
            for (const auto& obj : load_objects(file))
                ok &= delete_path(g, "/api/v1/" + lower(object_kind(obj)) + "/" + object_name(obj),
                                  o.ignore_not_found, count);
        return ok ? 0 : 1;
    }
    if (o.args.empty())
        throw UsageError(
            "cascade delete: name what to delete: KIND NAME..., KIND/NAME..., -f FILE, KIND -l "
            "SELECTOR or all -l SELECTOR");
    auto named = named_objects("delete", o.args);
    if (!named.empty()) {
        if (!o.selector.empty() || o.all)
            throw UsageError("cascade delete: names cannot be combined with -l or --all");
        for (const auto& [kind, name] : named) {
            if (lower(kind) == "all")
                throw UsageError("cascade delete all: takes -l SELECTOR, not a name");
            ok &= delete_path(g, "/api/v1/" + kind + "/" + name, o.ignore_not_found, count);
        }
        return ok ? 0 : 1;
    }
    if (o.selector.empty() && !o.all)
        throw UsageError("cascade delete " + o.args[0] +
                         ": resource(s) were provided, but no name was specified; give NAME..., "
                         "-l SELECTOR or --all");
    std::string query;
    if (!o.selector.empty()) {
        query = selector_query(o.selector);
    } else {
        query = "?all=true";
    }
    ok = delete_path(g, "/api/v1/" + lower(o.args[0]) + query, false, count);
    if (count == 0) std::cerr << "No resources found.\n";
    return ok ? 0 : 1;
}

// The daemon's warnings about applied objects (fields it ignores), like kubectl's.
void print_warnings(const json& res) {
    for (const auto& w : res.value("warnings", json::array()))
        std::cerr << "Warning: " << w.get<std::string>() << "\n";
}

// A template stored with `cascade create -f`.
json fetch_template(const Global& g, const std::string& name) {
    try {
        return api_get(g, "/api/v1/templates/" + name);
    } catch (const Error& e) {
        throw Error(std::string(e.what()) +
                    "; `cascade create -f FILE` stores a template, `cascade get templates` "
                    "lists them");
    }
}

// Template parameter values given on the command line.
struct TemplateArgs {
    std::vector<std::string> params;  // --param NAME=VALUE
    std::string param_file;           // --param-file FILE
    std::map<std::string, std::string> values() const {
        return parse_template_params(params, param_file);
    }
};

void print_apply_results(const json& res) {
    for (const auto& r : res["results"]) {
        std::cout << lower(r["kind"]) << "/" << r["name"].get<std::string>() << " "
                  << r["result"].get<std::string>() << "\n";
    }
}

// The objects of FILE|DIR, each Template processed with the given values.
std::vector<json> load_and_process(const std::string& file, const TemplateArgs& t,
                                   std::vector<std::string>* messages) {
    auto objects = load_objects(file);
    try {
        return expand_templates(objects, t.values(), messages);
    } catch (const Error& e) {
        throw Error(file + ": " + e.what());
    }
}

void print_template_messages(const std::vector<std::string>& messages) {
    for (const auto& m : messages)
        std::cout << "\n" << m << (m.empty() || m.back() != '\n' ? "\n" : "");
}

int cmd_apply(const Global& g, const std::string& file, const TemplateArgs& t) {
    std::vector<std::string> messages;
    auto objects = load_and_process(file, t, &messages);
    auto res = api_post(g, "/api/v1/apply", {{"items", objects}});
    print_warnings(res);
    print_apply_results(res);
    print_template_messages(messages);
    return 0;
}

// `oc process`: a template (a file, or one stored with `create -f`) → its
// objects as a List, JSON by default (as oc), or YAML.
int cmd_process(const Global& g, const std::string& file, const std::string& name,
                const TemplateArgs& t, const std::string& output) {
    if (file.empty() == name.empty())
        throw Error("give a template file with -f FILE or the name of a stored template");
    std::vector<json> objects;
    if (!file.empty()) {
        auto loaded = load_objects(file);
        if (std::none_of(loaded.begin(), loaded.end(), is_template))
            throw Error(file + ": no Template here (kind: Template); `cascade process` " +
                        "processes templates, `cascade apply -f` applies other objects");
        objects = load_and_process(file, t, nullptr);
    } else {
        objects = process_template(fetch_template(g, name), t.values()).objects;
    }
    auto list = processed_list(objects);
    std::cout << (output == "yaml" ? json_to_yaml(list) : list.dump(4) + "\n");
    return 0;
}

// `oc create -f`: Templates are stored (for new-app); other objects are
// created, and nothing is when one of them exists already (AlreadyExists).
int cmd_create(const Global& g, const std::string& file) {
    auto objects = load_objects(file);
    std::vector<json> templates, others;
    for (auto& o : objects)
        (is_template(o) ? templates : others).push_back(std::move(o));
    if (!others.empty()) {
        auto res = api_post(g, "/api/v1/apply?create=true", {{"items", others}});
        print_warnings(res);
        print_apply_results(res);
    }
    for (const auto& tmpl : templates) {
        validate_template(tmpl);  // before the daemon, for the file's name in the error
        print_apply_results(api_post(g, "/api/v1/templates", tmpl));
    }
    return 0;
}

// `oc new-app --template=NAME`: a stored template processed and applied.
int cmd_new_app(const Global& g, const std::string& name, const TemplateArgs& t) {
    auto processed = process_template(fetch_template(g, name), t.values());
    std::cout << "--> Deploying template \"" << name << "\"\n";
    if (!processed.values.empty()) {
        std::cout << "    With parameters:\n";
        for (const auto& [k, v] : processed.values)
            std::cout << "      * " << k << "=" << v << "\n";
    }
    auto res = api_post(g, "/api/v1/apply", {{"items", processed.objects}});
    print_warnings(res);
    print_apply_results(res);
    if (!processed.message.empty()) print_template_messages({processed.message});
    return 0;
}

// Streams a chunked response to stdout; returns the @@result JSON if any.
// The receiving side of a streamed answer: an error status's body is kept for
// the error message; otherwise the data goes to the command, whole lines at a
// time with `lines` (which returns false to stop).
struct StreamedAnswer {
    int status = 0;
    std::string error_body;
    std::string pending;

    bool on_response(const httplib::Response& r) {
        status = r.status;
        return true;
    }
    bool failed(const char* data, size_t len) {
        if (status < 400) return false;
        error_body.append(data, len);
        return true;
    }
    bool lines(const char* data, size_t len, const std::function<bool(const std::string&)>& fn) {
        if (failed(data, len)) return true;
        pending.append(data, len);
        size_t nl;
        while ((nl = pending.find('\n')) != std::string::npos) {
            std::string line = pending.substr(0, nl);
            pending.erase(0, nl + 1);
            if (!fn(line)) return false;
        }
        return true;
    }
    void throw_if_failed() const {
        if (status < 400) return;
        json err = json::parse(error_body, nullptr, false);
        throw Error(err.is_object() ? err.value("message", error_body) : error_body);
    }
};

// --secret id=ID,src=PATH (docker/buildx syntax; also source=, type=file) →
// {"ID": "/abs/PATH"}: the daemon reads the file for RUN --mount=type=secret.
json secret_flags(const std::vector<std::string>& secrets) {
    json out = json::object();
    for (const auto& spec : secrets) {
        std::string id, src;
        std::stringstream fields(spec);
        for (std::string field; std::getline(fields, field, ',');) {
            auto eq = field.find('=');
            auto key = field.substr(0, eq);
            auto value = eq == std::string::npos ? std::string() : field.substr(eq + 1);
            if (key == "id")
                id = value;
            else if (key == "src" || key == "source")
                src = value;
            else if (key != "type" || value != "file")
                throw Error("--secret " + spec + ": unknown field \"" + field +
                            "\"; expected id=ID,src=PATH");
        }
        if (id.empty() || src.empty())
            throw Error("--secret " + spec + ": expected id=ID,src=PATH");
        auto path = std::filesystem::absolute(src);
        if (!std::filesystem::is_regular_file(path))
            throw Error("--secret " + spec + ": " + path.string() + " is not a file");
        out[id] = path.string();
    }
    return out;
}

int cmd_build(const Global& g, const std::string& tag, const std::string& file,
              const std::vector<std::string>& build_args, const std::string& target, bool no_cache,
              const std::string& network, const std::string& context,
              const std::vector<std::string>& secrets = {}) {
    if (tag.empty()) throw Error("cascade build: -t NAME:TAG is required");
    auto ctx = std::filesystem::absolute(context);
    if (!std::filesystem::is_directory(ctx))
        throw Error("build context " + ctx.string() + " is not a directory");
    json args = json::object();
    for (const auto& a : build_args) {
        auto eq = a.find('=');
        if (eq == std::string::npos) {
            const char* v = std::getenv(a.c_str());  // docker: --build-arg NAME takes it from env
            if (v) args[a] = v;
        } else {
            args[a.substr(0, eq)] = a.substr(eq + 1);
        }
    }
    std::string dockerfile = "Dockerfile";
    if (!file.empty()) dockerfile = std::filesystem::absolute(file).string();
    json body = {{"context", ctx.string()}, {"dockerfile", dockerfile}, {"tag", tag},
                 {"buildArgs", args},       {"target", target},         {"noCache", no_cache},
                 {"network", network}};
    if (!secrets.empty()) body["secrets"] = secret_flags(secrets);
    auto c = client_for(g.host);
    json result;
    httplib::Request req;
    req.method = "POST";
    req.path = "/api/v1/build";
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    StreamedAnswer answer;
    req.response_handler = [&](const httplib::Response& r) { return answer.on_response(r); };
    req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
        return answer.lines(data, len, [&](const std::string& line) {
            if (line.rfind("@@result ", 0) == 0)
                result = json::parse(line.substr(9));
            else
                std::cout << line << "\n" << std::flush;
            return true;
        });
    };
    auto res = c->send(req);
    if (!res) unreachable_daemon(g.host, res.error());
    answer.throw_if_failed();
    if (result.is_null()) throw Error("the daemon ended the build stream without a result");
    if (!result["ok"].get<bool>()) throw Error(result["error"].get<std::string>());
    std::cout << "--> " << result["image"].get<std::string>() << " "
              << result["digest"].get<std::string>()
              << (result["tagMoved"].get<bool>() ? "" : " (unchanged: tag not moved)") << "\n";
    return 0;
}

// GETs `path` and copies the body to stdout as it arrives; an error answer's
// body is kept in the result instead.
StreamedAnswer stream_to_stdout(const Global& g, const std::string& path) {
    auto c = client_for(g.host);
    StreamedAnswer answer;
    auto res = c->Get(
        path, [&](const httplib::Response& r) { return answer.on_response(r); },
        [&](const char* data, size_t len) {
            if (!answer.failed(data, len))
                std::cout.write(data, static_cast<std::streamsize>(len)).flush();
            return true;
        });
    if (!res) unreachable_daemon(g.host, res.error());
    return answer;
}

// Streams a build's log; returns when the build ended (follow) or at EOF.
void stream_build_log(const Global& g, const std::string& build, bool follow) {
    stream_to_stdout(g, "/api/v1/builds/" + build + "/log" + (follow ? "?follow=true" : ""))
        .throw_if_failed();
}

int wait_build(const Global& g, const std::string& build) {
    while (true) {
        auto b = api_get(g, "/api/v1/builds/" + build);
        std::string phase = b["status"]["phase"];
        if (phase == "Complete") return 0;
        if (phase == "Failed" || phase == "Cancelled") {
            std::cerr << "build " << build << (phase == "Failed" ? " failed: " : " cancelled: ")
                      << b["status"]["message"].get<std::string>() << "\n";
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
}

int cmd_start_build(const Global& g, const std::string& name, bool follow, bool wait,
                    const std::string& from_dir) {
    json body = json::object();
    if (!from_dir.empty()) {
        std::error_code ec;
        auto dir = std::filesystem::absolute(from_dir, ec);
        if (ec || !std::filesystem::is_directory(dir))
            throw Error("--from-dir " + from_dir + " is not a directory");
        body["fromDir"] = dir.lexically_normal().string();
    }
    auto b = api_post(g, "/api/v1/buildconfigs/" + name + "/instantiate", body);
    std::string build = b["metadata"]["name"];
    std::cout << "build/" << build << " started\n" << std::flush;
    if (follow) stream_build_log(g, build, true);
    if (follow || wait) return wait_build(g, build);
    return 0;
}

struct LogOptions {
    bool follow = false;
    bool previous = false;
    std::optional<int> replica;
    std::optional<int> tail;
};

// A deployment replica's log; false (nothing printed) when the daemon knows no
// such deployment.
bool stream_deployment_log(const Global& g, const std::string& name, const LogOptions& o,
                           bool fallback_allowed) {
    std::string path = "/api/v1/deployments/" + name +
                       "/log?follow=" + (o.follow ? "true" : "false") +
                       (o.previous ? "&previous=true" : "");
    if (o.replica) path += "&replica=" + std::to_string(*o.replica);
    if (o.tail) path += "&tail=" + std::to_string(*o.tail);
    auto answer = stream_to_stdout(g, path);
    if (fallback_allowed && answer.status == 404 &&
        answer.error_body.find("not found; `cascade get deployments`") != std::string::npos)
        return false;
    answer.throw_if_failed();
    return true;
}

// `logs build/NAME-N` (a build), `logs [deployment/]NAME` (a replica of a
// deployment); a bare NAME-N that is no deployment is taken as a build.
int cmd_logs(const Global& g, std::string target, const LogOptions& o) {
    for (const char* prefix : {"build/", "builds/"})
        if (target.rfind(prefix, 0) == 0) {
            stream_build_log(g, target.substr(std::string(prefix).size()), o.follow);
            return 0;
        }
    bool explicit_deployment = false;
    for (const char* prefix : {"deployment/", "deployments/", "dc/", "deploymentconfig/"})
        if (target.rfind(prefix, 0) == 0) {
            target = target.substr(std::string(prefix).size());
            explicit_deployment = true;
        }
    if (stream_deployment_log(g, target, o, !explicit_deployment)) return 0;
    if (o.previous || o.replica || o.tail)
        throw Error(
            "deployment \"" + target +
            "\" not found; `cascade get deployments` lists them (builds: logs build/NAME-N)");
    stream_build_log(g, target, o.follow);
    return 0;
}

std::string deployment_name_of(std::string target) {
    for (const char* prefix :
         {"deployment/", "deployments/", "dc/", "deploymentconfig/", "deploymentconfigs/"})
        if (target.rfind(prefix, 0) == 0) return target.substr(std::string(prefix).size());
    return target;
}

int cmd_scale(const Global& g, const std::string& target, int replicas) {
    auto name = deployment_name_of(target);
    if (replicas < 0) throw Error("cascade scale: --replicas must not be negative");
    api_post(g, "/api/v1/deployments/" + name + "/scale", {{"replicas", replicas}});
    std::cout << "deployment/" << name << " scaled to " << replicas << "\n";
    return 0;
}

int cmd_rollout_action(const Global& g, const std::string& action, const std::string& target,
                       std::optional<int> to_revision) {
    auto name = deployment_name_of(target);
    json body = json::object();
    if (to_revision) body["toRevision"] = *to_revision;
    auto r = api_post(g, "/api/v1/deployments/" + name + "/rollout/" + action, body);
    std::cout << "deployment/" << name << " " << r.value("result", action) << "\n";
    return 0;
}

int cmd_rollout_history(const Global& g, const std::string& target, const std::string& output) {
    auto name = deployment_name_of(target);
    auto list = api_get(g, "/api/v1/deployments/" + name + "/history");
    if (output == "json") {
        std::cout << list.dump(2) << "\n";
        return 0;
    }
    if (list["items"].empty()) {
        std::cerr << "No revisions of deployment/" << name << " yet.\n";
        return 0;
    }
    std::vector<std::vector<std::string>> rows{{"REVISION", "DIGEST", "STATUS", "CAUSE"}};
    for (const auto& r : list["items"]) {
        std::string digest = r.value("digest", "");
        rows.push_back({std::to_string(r.value("revision", 0)),
                        output == "wide" ? digest : short_digest(digest), r.value("status", ""),
                        r.value("cause", "")});
    }
    print_table(rows);
    return 0;
}

// Follows a rollout until the latest revision is complete (exit 0) or fails
// and is rolled back (exit 1). With `revision`, first waits until at least that
// revision exists; with `timeout_s` > 0, gives up after that many seconds.
int cmd_rollout_status(const Global& g, const std::string& target, int revision, int timeout_s) {
    auto name = deployment_name_of(target);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    std::string last;
    while (true) {
        auto d = api_get(g, "/api/v1/deployments/" + name);
        const auto& st = d["status"];
        int latest = st.value("latestVersion", 0);
        int desired = st.value("desiredReplicas", 1);
        int updated = st.value("updatedReplicas", 0);
        int ready = st.value("readyReplicas", 0);
        int total = st.value("replicas", 0);
        std::string phase = st.value("phase", "");
        std::string message = st.value("message", "");
        std::string line;
        bool reached = latest >= revision && latest > 0;
        if (reached && phase == "Failed") {
            std::cout << "deployment \"" << name << "\" rollout failed"
                      << (message.empty() ? "" : ": " + message) << "\n";
            return 1;
        }
        if (reached && (phase == "Paused" || st.value("paused", false))) {
            std::cout << "deployment \"" << name << "\" is paused; `cascade rollout resume " << name
                      << "` continues it\n";
            return 1;
        }
        if (reached && phase == "Running" && updated >= desired && ready >= desired &&
            total == desired) {
            std::cout << "deployment \"" << name << "\" successfully rolled out (revision "
                      << latest << ")\n";
            return 0;
        }
        if (!reached)
            line = "Waiting for revision " + std::to_string(revision) + " of deployment \"" + name +
                   "\" (latest: " + std::to_string(latest) + ")...";
        else if (updated < desired)
            line = "Waiting for deployment \"" + name +
                   "\" rollout to finish: " + std::to_string(updated) + " out of " +
                   std::to_string(desired) + " new replicas have been updated...";
        else if (total > desired)
            line = "Waiting for deployment \"" + name +
                   "\" rollout to finish: " + std::to_string(total - desired) +
                   " old replicas are pending termination...";
        else
            line = "Waiting for deployment \"" + name +
                   "\" rollout to finish: " + std::to_string(ready) + " of " +
                   std::to_string(desired) + " updated replicas are available...";
        if (line != last) {
            std::cout << line << "\n" << std::flush;
            last = line;
        }
        if (timeout_s > 0 && std::chrono::steady_clock::now() > deadline)
            throw Error("deployment \"" + name + "\" did not finish its rollout within " +
                        std::to_string(timeout_s) + " s (phase " + phase +
                        (message.empty() ? "" : ": " + message) + ")");
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
}

int cmd_exec(const Global& g, const std::string& target, std::optional<int> replica,
             const std::vector<std::string>& command) {
    if (command.empty()) throw Error("cascade exec DEPLOYMENT -- CMD [ARGS…]: CMD is missing");
    auto name = deployment_name_of(target);
    json body = {{"command", command}};
    if (replica) body["replica"] = *replica;
    auto r = api_post(g, "/api/v1/deployments/" + name + "/exec", body);
    std::cout << r.value("stdout", "") << std::flush;
    std::cerr << r.value("stderr", "") << std::flush;
    return r.value("exitCode", 1);
}

std::string ms_text(const json& v) {
    std::ostringstream s;
    s << v.get<int64_t>() / 1000.0 << "s";
    return s.str();
}

std::string int_or_percent_text(const json& v) {
    return std::to_string(v.value("value", 0)) + (v.value("percent", false) ? "%" : "");
}

// A probe of the template (runtime::to_json's shape).
std::string probe_text(const json& p) {
    std::string kind = p.value("kind", "none");
    if (kind == "none") return "none";
    std::string what = kind + " :" + std::to_string(p.value("port", 0));
    if (kind == "http") what += p.value("path", "/");
    if (kind == "exec") {
        what = "exec [";
        for (const auto& a : p["command"])
            what += (what.back() == '[' ? "" : " ") + a.get<std::string>();
        what += "]";
    }
    return what + " delay=" + ms_text(p["initialDelayMs"]) + " period=" + ms_text(p["periodMs"]) +
           " timeout=" + ms_text(p["timeoutMs"]) +
           " #success=" + std::to_string(p.value("successThreshold", 1)) +
           " #failure=" + std::to_string(p.value("failureThreshold", 3));
}

// `describe deployment NAME`: template, strategy, replicas, revisions.
void describe_deployment(const Global& g, const std::string& target) {
    auto name = deployment_name_of(target);
    auto d = api_get(g, "/api/v1/deployments/" + name);
    const auto& st = d["status"];
    const auto& t = st["template"];
    const auto& strategy = t["strategy"];
    std::string strat = strategy.value("type", "");
    if (strat == "Rolling")
        strat += " (maxSurge " + int_or_percent_text(strategy["maxSurge"]) + ", maxUnavailable " +
                 int_or_percent_text(strategy["maxUnavailable"]) + ", interval " +
                 ms_text(strategy["intervalMs"]) + ", update period " +
                 ms_text(strategy["updatePeriodMs"]) + ", timeout " +
                 std::to_string(strategy.value("timeoutSeconds", 0)) + "s)";
    else
        strat += " (timeout " + std::to_string(strategy.value("timeoutSeconds", 0)) + "s)";
    std::string ports;
    for (const auto& p : t["ports"])
        ports += (ports.empty() ? "" : ", ") + std::to_string(p.get<int>());
    std::string message = st.value("message", "");
    std::cout << "Name:          " << name << "\n"
              << "Kind:          " << d.value("kind", "") << "\n"
              << labels_text(d) << "Image:         " << t.value("imageRepository", "") << ":"
              << t.value("imageTag", "")
              << (t.value("automatic", false) ? " (follows the tag)" : " (manual)") << "\n"
              << "Digest:        " << st.value("imageDigest", "") << "\n"
              << "Revision:      " << st.value("latestVersion", 0) << "\n"
              << "Phase:         " << st.value("phase", "")
              << (st.value("paused", false) ? " (paused)" : "") << "\n";
    if (!message.empty()) std::cout << "Message:       " << message << "\n";
    std::cout << "Replicas:      " << st.value("desiredReplicas", 0) << " desired, "
              << st.value("updatedReplicas", 0) << " updated, " << st.value("readyReplicas", 0)
              << " ready, " << st.value("replicas", 0) << " total\n"
              << "Strategy:      " << strat << "\n"
              << "Ports:         " << (ports.empty() ? "none" : ports) << "\n"
              << "Readiness:     " << probe_text(t["readinessProbe"]) << "\n"
              << "Liveness:      " << probe_text(t["livenessProbe"]) << "\n"
              << "Startup:       " << probe_text(t["startupProbe"]) << "\n";
    const auto& res = t["resources"];
    auto limit = [](int64_t v, const std::string& unit) {
        return v ? std::to_string(v) + unit : std::string("unlimited");
    };
    std::cout << "Resources:     memory " << limit(res.value("memoryBytes", int64_t{0}), " bytes")
              << ", cpu " << limit(res.value("cpuMillis", int64_t{0}), "m") << " (request "
              << res.value("cpuRequestMillis", int64_t{0}) << "m), pids "
              << limit(res.value("pids", int64_t{0}), "") << "\n"
              << "Restart:       " << t.value("restartPolicy", "") << ", grace "
              << t.value("stopGraceSeconds", 0) << "s\n";
    if (!t.value("user", "").empty())
        std::cout << "User:          " << t["user"].get<std::string>() << "\n";
    if (t.value("readonlyRootfs", false)) std::cout << "Root fs:       read-only\n";
    std::cout << "Volumes:";
    if (t["volumes"].empty()) std::cout << "       none";
    std::cout << "\n";
    for (const auto& v : t["volumes"]) {
        std::cout << "  " << v.value("destination", "") << " <- " << v.value("kind", "");
        if (!v.value("source", "").empty()) std::cout << " " << v["source"].get<std::string>();
        if (v.value("sizeBytes", int64_t{0}) > 0)
            std::cout << " (" << v["sizeBytes"].get<int64_t>() << " bytes)";
        if (v.value("readonly", false)) std::cout << " (read-only)";
        std::cout << "\n";
    }
    std::cout << "\nReplicas:\n";
    std::vector<std::vector<std::string>> rows{
        {"  INDEX", "STATE", "REVISION", "RESTARTS", "LAST EXIT", "CONTAINER", "MESSAGE"}};
    for (const auto& p : st["pods"])
        rows.push_back(
            {"  " + std::to_string(p.value("index", 0)), p.value("state", ""),
             std::to_string(p.value("revision", 0)), std::to_string(p.value("restarts", 0)),
             std::to_string(p.value("lastExit", 0)), p.value("name", ""), p.value("message", "")});
    print_table(rows);
    std::cout << "\nRevisions:\n";
    json history = json::array();
    try {
        history = api_get(g, "/api/v1/deployments/" + name + "/history")["items"];
    } catch (const Error& e) {
        std::cout << "  (" << e.what() << ")\n";
    }
    std::vector<std::vector<std::string>> revs{
        {"  REVISION", "DIGEST", "STATUS", "CAUSE", "MESSAGE"}};
    for (const auto& r : history)
        revs.push_back({"  " + std::to_string(r.value("revision", 0)),
                        short_digest(r.value("digest", "")), r.value("status", ""),
                        r.value("cause", ""), r.value("message", "")});
    print_table(revs);
    std::cout << "\nFailed digests:";
    if (st["failedDigests"].empty()) std::cout << " none";
    std::cout << "\n";
    for (const auto& f : st["failedDigests"])
        std::cout << "  " << f.get<std::string>() << "\n";
}

std::string build_name_of(std::string target) {
    for (const char* prefix : {"build/", "builds/"})
        if (target.rfind(prefix, 0) == 0) return target.substr(std::string(prefix).size());
    return target;
}

int cmd_cancel_build(const Global& g, const std::string& target) {
    auto build = build_name_of(target);
    auto b = api_post(g, "/api/v1/builds/" + build + "/cancel", json::object());
    if (b.value("cancelled", false))
        std::cout << "build/" << build << " cancelled\n";
    else
        std::cout << "build/" << build << " already "
                  << lower(b["status"]["phase"].get<std::string>()) << "\n";
    return 0;
}

// `describe build NAME`: the record with its steps' timings.
void describe_build(const Global& g, const std::string& name) {
    auto b = api_get(g, "/api/v1/builds/" + build_name_of(name));
    const auto& st = b["status"];
    std::cout << "Name:      " << b["metadata"]["name"].get<std::string>() << "\n"
              << "Status:    " << st["phase"].get<std::string>() << "\n"
              << "Cause:     " << b["spec"]["triggeredBy"][0].value("message", "") << "\n"
              << "Started:   " << st.value("startTimestamp", "") << "\n"
              << "Duration:  " << duration_of(st) << "\n"
              << "Image:     " << st["output"]["to"]["imageDigest"].get<std::string>() << "\n";
    if (!st["message"].get<std::string>().empty())
        std::cout << "Message:   " << st["message"].get<std::string>() << "\n";
    std::vector<std::vector<std::string>> rows{{"  STEP", "DURATION", "CACHED", "BYTES", "TEXT"}};
    for (const auto& s : st.value("steps", json::array())) {
        char seconds[32];
        std::snprintf(seconds, sizeof seconds, "%.1fs",
                      static_cast<double>(s.value("durationMs", int64_t{0})) / 1000.0);
        rows.push_back({"  " + std::to_string(s.value("number", 0)), seconds,
                        s.value("cached", false) ? "yes" : "no",
                        std::to_string(s.value("bytes", int64_t{0})), s.value("text", "")});
    }
    std::cout << "\nSteps:\n";
    print_table(rows);
}

// `oc import-image`: imports NAME:TAG (or every tag of NAME that follows an
// external image) now; with --from and --confirm the tag is first created or
// changed to follow REF.
int cmd_import_image(const Global& g, const std::string& target, const std::string& from,
                     bool confirm, bool scheduled, bool insecure) {
    if (from.empty() && (scheduled || insecure))
        throw Error(
            "--scheduled and --insecure set a tag's import policy: use them with --from REF "
            "--confirm");
    std::string name = target, tag;
    if (auto colon = target.find(':'); colon != std::string::npos) {
        name = target.substr(0, colon);
        tag = target.substr(colon + 1);
    }
    json body = {{"confirm", confirm}};
    if (!tag.empty()) body["tag"] = tag;
    if (!from.empty()) body["from"] = from;
    if (scheduled) body["scheduled"] = true;
    if (insecure) body["insecure"] = true;
    auto r = api_post(g, "/api/v1/imagestreams/" + name + "/import", body);
    const auto& status = r["status"];
    if (status.value("specResult", "unchanged") != "unchanged")
        std::cout << "imagestream/" << name << " " << status["specResult"].get<std::string>()
                  << "\n";
    int failed = 0;
    for (const auto& img : status["images"]) {
        std::string what = "imagestream/" + name + ":" + img["tag"].get<std::string>();
        if (img["status"]["status"] != "Success") {
            std::cerr << "error: " << img["status"].value("message", what + " failed") << "\n";
            failed++;
            continue;
        }
        std::string digest = img["image"]["digest"];
        std::string generation = std::to_string(img.value("generation", 0));
        if (img.value("tagMoved", false))
            std::cout << what << " imported " << img["from"].get<std::string>() << " -> " << digest
                      << " (generation " << generation << ", " << img.value("blobsFetched", 0)
                      << " blob(s) fetched, " << img.value("blobsPresent", 0)
                      << " already present)\n";
        else
            std::cout << what << " unchanged: " << img["from"].get<std::string>() << " is still "
                      << digest << " (generation " << generation << ")\n";
    }
    return failed ? 1 : 0;
}

// Starts `cascade serve` in the background for `up`, logging to <root>/daemon.log.
void start_background_daemon(const std::string& host, const std::string& root) {
    std::string listen = host;
    if (listen.rfind("http://", 0) == 0) listen = listen.substr(7);
    while (!listen.empty() && listen.back() == '/')
        listen.pop_back();
    std::filesystem::create_directories(root);
    auto log = (std::filesystem::path(root) / "daemon.log").string();
    pid_t pid = fork();
    if (pid < 0) throw Error("fork: cannot start the daemon");
    if (pid == 0) {
        setsid();
        int in = open("/dev/null", O_RDONLY);
        int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        // Double fork so the daemon is not our child.
        if (fork() != 0) _exit(0);
        execl("/proc/self/exe", "cascade", "serve", "--root", root.c_str(), "--listen",
              listen.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    waitpid(pid, nullptr, 0);
    for (int i = 0; i < 300; i++) {
        if (daemon_answers(host)) {
            std::cout << "started the cascade daemon on " << host << " (state root " << root
                      << ", log " << log << ")\n";
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    throw Error("the daemon did not answer on " + host + " within 30 s; see " + log);
}

int cmd_up(const Global& g, const std::string& dir, const std::string& root, int timeout_s) {
    if (!daemon_answers(g.host)) start_background_daemon(g.host, root);
    // Like compose with compose.yaml: a directory's cascade.yaml is what `up`
    // applies when there is one (the directory may hold templates and other
    // files that need parameters); else every file of the directory.
    std::filesystem::path source = dir;
    if (std::filesystem::is_directory(source) && std::filesystem::exists(source / "cascade.yaml"))
        source /= "cascade.yaml";
    auto objects = load_objects(source);
    auto res = api_post(g, "/api/v1/apply", {{"items", objects}});
    print_warnings(res);
    std::set<std::string> known_builds;
    for (const auto& r : res["results"]) {
        std::cout << lower(r["kind"]) << "/" << r["name"].get<std::string>() << " "
                  << r["result"].get<std::string>() << "\n";
    }
    std::cout << std::flush;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    std::map<std::string, std::string> seen;  // build/deployment → last printed state
    bool first = true;
    std::set<std::string> initial_failed;
    while (true) {
        auto st = api_get(g, "/api/v1/status");
        bool done = st["buildsIdle"].get<bool>();
        for (const auto& b : st["builds"]) {
            std::string name = b["name"], phase = b["phase"];
            if (first && phase == "Failed") initial_failed.insert(name);
            if (initial_failed.count(name)) continue;
            if (seen["build/" + name] != phase) {
                seen["build/" + name] = phase;
                if (!first || phase != "Complete")
                    std::cout << "build/" << name << " " << phase << "\n" << std::flush;
            }
            if (phase == "Failed")
                throw Error("build " + name + " failed: " + b["message"].get<std::string>() +
                            "\n  see `cascade logs build/" + name + "`");
        }
        for (const auto& d : st["deployments"]) {
            std::string name = d["name"];
            std::string state = d["phase"].get<std::string>() + " " +
                                std::to_string(d["ready"].get<int>()) + "/" +
                                std::to_string(d["replicas"].get<int>());
            if (seen["dc/" + name] != state) {
                seen["dc/" + name] = state;
                std::cout << "deployment/" << name << " " << state << "\n" << std::flush;
            }
            if (d["phase"] == "Failed")
                throw Error("deployment " + name + " failed: " + d["message"].get<std::string>());
            if (d["ready"].get<int>() < d["replicas"].get<int>() || d["phase"] != "Running")
                done = false;
        }
        first = false;
        if (done) {
            std::cout << "\n";
            for (const auto& r : st["routes"]) {
                std::cout << r["name"].get<std::string>() << ": " << r["url"].get<std::string>();
                if (!r.value("hostnameUrl", "").empty())
                    std::cout << "  " << r["hostnameUrl"].get<std::string>();
                std::cout << "\n";
            }
            return 0;
        }
        if (std::chrono::steady_clock::now() > deadline)
            throw Error(
                "not ready after " + std::to_string(timeout_s) +
                " s; `cascade get builds` and `cascade get deployments` show where it stands");
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
}

// ---- image streams: tag, describe; events; gc ----

int cmd_tag(const Global& g, const std::string& source, const std::string& dest) {
    auto r = api_post(g, "/api/v1/tag", {{"source", source}, {"destination", dest}});
    std::string where =
        "imagestream/" + r["repository"].get<std::string>() + ":" + r["tag"].get<std::string>();
    if (r["moved"].get<bool>())
        std::cout << where << " tagged " << r["digest"].get<std::string>() << " (generation "
                  << r["generation"].get<int64_t>() << ", " << r["cause"].get<std::string>()
                  << ")\n";
    else
        std::cout << where << " unchanged: it already points at " << r["digest"].get<std::string>()
                  << " (generation " << r["generation"].get<int64_t>() << ")\n";
    return 0;
}

// `describe buildconfig NAME`: source, strategy, output, triggers with their
// webhook URLs, history limits, and its builds.
void describe_build_config(const Global& g, const std::string& name) {
    auto bc = api_get(g, "/api/v1/buildconfigs/" + name);
    const json spec = bc.value("spec", json::object());
    const json st = bc.value("status", json::object());
    const json source = spec.value("source", json::object());
    const json strategy = spec.value("strategy", json::object());
    const json docker = strategy.value("dockerStrategy", json::object());
    const int w = 22;
    auto line = [&](const std::string& key, const std::string& value) {
        if (value.empty()) return;
        std::cout << key << std::string(w > static_cast<int>(key.size()) ? w - key.size() : 1, ' ')
                  << value << "\n";
    };
    line("Name:", bc["metadata"].value("name", name));
    line("Created:", bc["metadata"].value("creationTimestamp", ""));
    std::cout << labels_text(bc, "labels", w) << labels_text(bc, "annotations", w);
    line("Latest Version:", std::to_string(st.value("lastVersion", 0)));
    if (st.contains("waiting"))
        line("Waiting for:",
             st["waiting"].value("for", "") + " (" + st["waiting"].value("message", "") + ")");
    std::cout << "\n";
    line("Strategy:", strategy.value("type", std::string("Docker")));
    const json git = source.value("git", json::object());
    line("URL:", git.value("uri", ""));
    line("Ref:", git.value("ref", ""));
    line("ContextDir:", text_of(source.value("contextDir", json())));
    line("Dockerfile Path:", docker.value("dockerfilePath", ""));
    std::string from = st.value("from", "");
    line("From Image:",
         docker.contains("from") ? ref_text(docker["from"]) : (from.empty() ? "scratch" : from));
    line("Output to:", spec.contains("output") ? ref_text(spec["output"].value("to", json()))
                                               : st.value("output", ""));
    if (docker.value("noCache", false)) line("No Cache:", "true");
    std::string args;
    for (const auto& a : docker.value("buildArgs", json::array()))
        args += (args.empty() ? "" : ", ") + a.value("name", "") + "=" +
                text_of(a.value("value", json()));
    line("Build Args:", args);
    std::string env;
    for (const auto& e : docker.value("env", json::array()))
        env += (env.empty() ? "" : ", ") + e.value("name", "") + "=" +
               text_of(e.value("value", json()));
    line("Environment:", env);
    const json post = spec.value("postCommit", json::object());
    if (!post.empty()) line("Post Commit Hook:", post.dump());
    std::cout << "\n";
    std::string triggered;
    for (const auto& t : spec.value("triggers", json::array())) {
        std::string type = t.value("type", "");
        if (type == "ConfigChange") type = "Config";
        triggered += (triggered.empty() ? "" : ", ") + type;
    }
    line("Triggered by:", triggered.empty() ? "<none>" : triggered);
    // The daemon lists the webhook URLs with <secret> in place of the secret.
    const json hooks = st.value("webhooks", json::array());
    for (const auto& h : hooks) {
        std::cout << "Webhook " << h.value("type", "") << ":\n\tURL:\t" << h.value("url", "")
                  << "\n";
    }
    if (spec.contains("successfulBuildsHistoryLimit") ||
        spec.contains("failedBuildsHistoryLimit")) {
        std::cout << "Builds History Limit:\n";
        std::cout << "\tSuccessful:\t"
                  << text_of(spec.value("successfulBuildsHistoryLimit", json("<default>")))
                  << "\n\tFailed:\t\t"
                  << text_of(spec.value("failedBuildsHistoryLimit", json("<default>"))) << "\n";
    }
    std::cout << "\n";
    std::vector<std::vector<std::string>> rows{{"Build", "Status", "Duration", "Creation Time"}};
    auto builds = api_get(g, "/api/v1/builds")["items"];
    for (auto it = builds.rbegin(); it != builds.rend(); ++it) {
        const auto& b = *it;
        if (b["status"].value("/config/name"_json_pointer, std::string()) != name) continue;
        rows.push_back({b["metadata"].value("name", ""), b["status"].value("phase", ""),
                        duration_of(b["status"]), b["metadata"].value("creationTimestamp", "")});
    }
    if (rows.size() == 1)
        std::cout << "No builds yet.\n";
    else
        print_table(rows, 1);
}

// `describe route NAME`.
void describe_route(const Global& g, const std::string& name) {
    auto r = api_get(g, "/api/v1/routes/" + name);
    const json spec = r.value("spec", json::object());
    const json st = r.value("status", json::object());
    std::cout << "Name:            " << r["metadata"].value("name", name) << "\n"
              << "Created:         " << r["metadata"].value("creationTimestamp", "") << "\n"
              << labels_text(r, "labels", 17) << labels_text(r, "annotations", 17)
              << "Requested Host:  " << st.value("hostname", spec.value("host", "")) << "\n";
    if (!st.value("hostnameUrl", "").empty())
        std::cout << "                 exposed on router cascade at "
                  << st["hostnameUrl"].get<std::string>() << "\n";
    std::cout << "Own Port URL:    " << st.value("url", "") << "\n"
              << "Path:            " << spec.value("path", std::string("<none>")) << "\n"
              << "TLS Termination: <none>\n"
              << "Service:         " << spec.value("/to/name"_json_pointer, std::string()) << " ("
              << spec.value("/to/kind"_json_pointer, std::string("Service")) << ")\n"
              << "Target Port:     "
              << (spec.contains("port") ? text_of(spec["port"].value("targetPort", json()))
                                        : std::string("<all>"))
              << "\n";
}

// `describe service NAME`.
void describe_service(const Global& g, const std::string& name) {
    auto svc = api_get(g, "/api/v1/services/" + name);
    const json spec = svc.value("spec", json::object());
    std::string selector;
    const json chosen = spec.value("selector", json::object());
    for (const auto& [k, v] : chosen.items())
        selector += (selector.empty() ? "" : ",") + k + "=" + text_of(v);
    std::cout << "Name:              " << svc["metadata"].value("name", name) << "\n"
              << labels_text(svc, "labels", 19) << labels_text(svc, "annotations", 19)
              << "Selector:          " << (selector.empty() ? "<none>" : selector) << "\n"
              << "Type:              " << spec.value("type", std::string("ClusterIP")) << "\n";
    for (const auto& p : spec.value("ports", json::array())) {
        std::cout << "Port:              " << p.value("name", std::string("<unset>")) << "  "
                  << text_of(p.value("port", json())) << "/"
                  << p.value("protocol", std::string("TCP")) << "\n"
                  << "TargetPort:        "
                  << text_of(p.value("targetPort", p.value("port", json()))) << "/"
                  << p.value("protocol", std::string("TCP")) << "\n";
    }
}

// `describe template NAME`: parameters, labels, message and objects.
void describe_template(const Global& g, const std::string& name) {
    auto t = api_get(g, "/api/v1/templates/" + name);
    std::cout << "Name:           " << t["metadata"].value("name", name) << "\n"
              << "Created:        " << t["metadata"].value("creationTimestamp", "") << "\n"
              << labels_text(t, "labels", 16) << "Description:    "
              << t.value("/metadata/annotations/description"_json_pointer, std::string("<none>"))
              << "\n\nParameters:\n";
    for (const auto& p : t.value("parameters", json::array())) {
        std::cout << "    Name:\t" << p.value("name", "") << "\n";
        if (p.contains("displayName"))
            std::cout << "    Display Name:\t" << text_of(p["displayName"]) << "\n";
        if (p.contains("description"))
            std::cout << "    Description:\t" << text_of(p["description"]) << "\n";
        std::cout << "    Required:\t" << (p.value("required", false) ? "true" : "false") << "\n";
        if (p.contains("generate"))
            std::cout << "    Generated:\t" << text_of(p["generate"]) << "\n"
                      << "    From:\t" << text_of(p.value("from", json())) << "\n";
        else
            std::cout << "    Value:\t" << (p.contains("value") ? text_of(p["value"]) : "<none>")
                      << "\n";
        std::cout << "\n";
    }
    std::string object_labels;
    const json template_labels = t.value("labels", json::object());
    for (const auto& [k, v] : template_labels.items())
        object_labels += (object_labels.empty() ? "" : ",") + k + "=" + text_of(v);
    std::cout << "Object Labels:  " << (object_labels.empty() ? "<none>" : object_labels) << "\n\n"
              << "Message:        " << t.value("message", std::string("<none>")) << "\n\n"
              << "Objects:\n";
    for (const auto& o : t.value("objects", json::array()))
        std::cout << "    " << o.value("kind", "") << "\t"
                  << o.value("/metadata/name"_json_pointer, std::string()) << "\n";
}

int cmd_describe(const Global& g, std::string kind, std::string name) {
    auto slash = kind.find('/');
    if (name.empty() && slash != std::string::npos) {
        name = kind.substr(slash + 1);
        kind = kind.substr(0, slash);
    }
    kind = lower(kind);
    if (kind == "build" || kind == "builds") {
        if (name.empty()) throw UsageError("cascade describe build NAME-N: NAME-N is missing");
        describe_build(g, name);
        return 0;
    }
    if (kind == "deployment" || kind == "deployments" || kind == "dc" ||
        kind == "deploymentconfig" || kind == "deploymentconfigs" || kind == "deploy") {
        if (name.empty()) throw UsageError("cascade describe deployment NAME: NAME is missing");
        describe_deployment(g, name);
        return 0;
    }
    static const std::map<std::string,
                          std::pair<std::string, void (*)(const Global&, const std::string&)>>
        others = {{"buildconfig", {"buildconfig", describe_build_config}},
                  {"buildconfigs", {"buildconfig", describe_build_config}},
                  {"bc", {"buildconfig", describe_build_config}},
                  {"route", {"route", describe_route}},
                  {"routes", {"route", describe_route}},
                  {"service", {"service", describe_service}},
                  {"services", {"service", describe_service}},
                  {"svc", {"service", describe_service}},
                  {"template", {"template", describe_template}},
                  {"templates", {"template", describe_template}}};
    if (auto it = others.find(kind); it != others.end()) {
        if (name.empty())
            throw UsageError("cascade describe " + it->second.first + " NAME: NAME is missing");
        it->second.second(g, name);
        return 0;
    }
    if (kind != "imagestream" && kind != "imagestreams" && kind != "is")
        throw UsageError(
            "cascade describe: imagestream (is), buildconfig (bc), build, deployment (dc), route, "
            "service (svc) or template, then NAME (got \"" +
            kind + "\")");
    if (name.empty()) throw UsageError("cascade describe imagestream NAME: NAME is missing");
    auto is = api_get(g, "/api/v1/imagestreams/" + name);
    const auto& status = is["status"];
    std::cout << "Name:        " << is["metadata"]["name"].get<std::string>() << "\n"
              << labels_text(is, "labels", 13)
              << "Repository:  " << status.value("dockerImageRepository", "") << "\n"
              << "Tags:        " << status["tags"].size() << "\n";
    for (const auto& t : status["tags"]) {
        std::cout << "\n" << t["tag"].get<std::string>() << "\n";
        for (const auto& c : t.value("conditions", json::array()))
            if (c.value("status", "") == "False")
                std::cout << "  ! " << c.value("reason", "") << ": " << c.value("message", "")
                          << "\n";
        if (t["items"].empty()) continue;
        std::vector<std::vector<std::string>> rows{
            {"  ", "GENERATION", "IMAGE", "CREATED", "AGE", "CAUSE"}};
        bool first = true;
        for (const auto& item : t["items"]) {
            rows.push_back({first ? "  *" : "  ", std::to_string(item["generation"].get<int64_t>()),
                            item["image"], item["created"], age(item["created"]), item["cause"]});
            first = false;
        }
        print_table(rows);
    }
    return 0;
}

// A build or rollout step of the event log, one line.
std::string step_event_line(const json& e) {
    std::string type = e.value("type", "");
    std::string line = std::to_string(e.value("id", int64_t{0})) + "  " + e.value("time", "") +
                       "  " + type + "  " + e.value("name", "");
    std::string cause = e.value("cause", "");
    if (type == "BuildStarted") {
        line += "  -> " + e.value("output", "");
    } else if (type == "BuildFinished") {
        auto ms = e.value("durationMs", int64_t{0});
        char duration[32];
        std::snprintf(duration, sizeof duration, "%.1fs", static_cast<double>(ms) / 1000.0);
        line += "  " + e.value("result", "") + "  " + duration;
        std::string digest = e.value("digest", "");
        if (!digest.empty())
            line += "  " + short_digest(digest) +
                    (e.value("tagMoved", false) ? "" : " (unchanged, no tag moved)");
        std::string message = e.value("message", "");
        if (!message.empty() && e.value("result", "") != "Complete") line += "  " + message;
    } else if (type == "RolloutStarted") {
        line += "  revision " + std::to_string(e.value("revision", 0)) + "  " +
                short_digest(e.value("digest", "")) + "  " +
                std::to_string(e.value("replicas", 0)) + " replicas";
    } else if (type == "RolloutProgress") {
        line += "  revision " + std::to_string(e.value("revision", 0)) + "  replica " +
                std::to_string(e.value("updated", 0)) + " of " +
                std::to_string(e.value("replicas", 0)) + " updated";
        cause.clear();
    } else if (type == "RolloutFinished") {
        line += "  revision " + std::to_string(e.value("revision", 0)) + "  " +
                short_digest(e.value("digest", "")) + "  " + e.value("result", "");
        std::string reason = e.value("reason", "");
        if (!reason.empty()) line += ": " + reason;
        cause.clear();
    }
    if (!cause.empty()) line += "  (" + cause + ")";
    // One line per event, whatever a message holds.
    std::replace(line.begin(), line.end(), '\n', ' ');
    return line;
}

std::string event_line(const json& e) {
    std::string type = e.value("type", "");
    if (type != "TagMoved" && type != "TagDeleted") return step_event_line(e);
    std::string digest = e.value("digest", "");
    std::string old = e.value("oldDigest", "");
    std::string move =
        old.empty() ? short_digest(digest) : short_digest(old) + " -> " + short_digest(digest);
    return std::to_string(e.value("id", int64_t{0})) + "  " + e.value("time", "") + "  " +
           e.value("type", "") + "  " + e.value("repository", "") + ":" + e.value("tag", "") +
           "  generation " + std::to_string(e.value("generation", int64_t{0})) + "  " + move +
           "  (" + e.value("cause", "") + ")";
}

// `cascade impact IMAGE[:TAG|@DIGEST]`: a table of the images and replicas
// built on the image, and a summary line.
int cmd_impact(const Global& g, const std::string& image, const std::string& output) {
    auto report = api_get(g, "/api/v1/impact?image=" + url_encode(image));
    if (output == "json") {
        std::cout << report.dump(2) << "\n";
        return 0;
    }
    std::vector<std::vector<std::string>> rows{
        {"KIND", "NAME", "DIGEST", "BASE-DIGEST", "STATUS", "CONTAINER"}};
    for (const auto& r : report["items"])
        rows.push_back({r.value("kind", ""), r.value("name", ""),
                        short_digest(r.value("digest", "")),
                        short_digest(r.value("baseDigest", "")), r.value("status", ""),
                        r.value("container", "")});
    if (rows.size() > 1)
        print_table(rows, 4);
    else
        std::cout << "Nothing is built on " << report.value("image", image) << ".\n";
    std::cout << report.value("summary", "") << "\n";
    return 0;
}

// Lists recent events, or with --watch follows them (reconnecting after a
// lost connection from the last event seen, so none is missed).
int cmd_events(const Global& g, bool watch, int64_t since, int64_t count,
               const std::string& output) {
    if (!watch) {
        std::string path = "/api/v1/events";
        if (since >= 0) path += "?since=" + std::to_string(since);
        auto list = api_get(g, path);
        if (output == "json") {
            std::cout << list.dump(2) << "\n";
            return 0;
        }
        for (const auto& e : list["items"])
            std::cout << event_line(e) << "\n";
        if (list["items"].empty()) std::cerr << "No events.\n";
        return 0;
    }
    int64_t seen = 0;
    int64_t cursor = since;
    bool reconnecting = false;
    while (true) {
        auto c = client_for(g.host);
        std::string path = "/api/v1/events?watch=true";
        if (cursor >= 0) path += "&since=" + std::to_string(cursor);
        StreamedAnswer answer;
        bool enough = false;
        auto res = c->Get(
            path, [&](const httplib::Response& r) { return answer.on_response(r); },
            [&](const char* data, size_t len) {
                return answer.lines(data, len, [&](const std::string& line) {
                    auto e = json::parse(line, nullptr, false);
                    if (!e.is_object()) return true;
                    cursor = e.value("id", cursor);
                    if (e.value("type", "") == "Bookmark") return true;
                    std::cout << (output == "json" ? e.dump() : event_line(e)) << "\n"
                              << std::flush;
                    if (count > 0 && ++seen >= count) {
                        enough = true;
                        return false;
                    }
                    return true;
                });
            });
        if (enough) return 0;
        answer.throw_if_failed();
        if (!res && !reconnecting && answer.status == 0) unreachable_daemon(g.host, res.error());
        // The daemon stopped or the connection broke: resume after the last event.
        if (!reconnecting)
            std::cerr << "the event stream ended; reconnecting (from event " << cursor << ")\n";
        reconnecting = true;
        std::this_thread::sleep_for(std::chrono::seconds(1));
        if (daemon_answers(g.host)) reconnecting = false;
    }
}

std::string human_bytes(int64_t n) {
    const char* units[] = {"B", "kB", "MB", "GB", "TB"};
    double v = static_cast<double>(n);
    int u = 0;
    while (v >= 1000 && u < 4) {
        v /= 1000;
        u++;
    }
    std::ostringstream s;
    s << std::fixed << std::setprecision(u == 0 ? 0 : 1) << v << " " << units[u];
    return s.str();
}

int cmd_gc(const Global& g, bool dry_run, const std::string& output) {
    auto r =
        api_post(g, std::string("/api/v1/gc") + (dry_run ? "?dryRun=true" : ""), json::object());
    if (output == "json") {
        std::cout << r.dump(2) << "\n";
        return 0;
    }
    for (const auto& m : r["manifests"])
        std::cout << (dry_run ? "would remove " : "removed ") << m["repository"].get<std::string>()
                  << "@" << m["digest"].get<std::string>() << "\n";
    std::cout << (dry_run ? "would free: " : "freed: ") << r["manifests"].size() << " manifests, "
              << r["blobs"].size() << " blobs, " << human_bytes(r["bytes"].get<int64_t>()) << " ("
              << r["links"].get<int64_t>() << " blob links; kept "
              << r["markedManifests"].get<int64_t>() << " manifests in use, "
              << r["keptYoung"].get<int64_t>() << " young entries inside gc.graceSeconds)\n";
    return 0;
}

// ---- --help examples, shell completion ----

const char* kExitCodes =
    "Exit codes: 0 success; 1 an error from the daemon or the operation (not found, a failed "
    "build or rollout, an unreachable daemon); 2 a usage error (unknown command or option, "
    "missing argument, invalid selector).\n"
    "Colour is used only when stdout is a terminal and NO_COLOR is not set (or --no-color).";

// The Examples section of every command's --help (a command that sets its
// own footer keeps it).
void add_help_footers(CLI::App& app) {
    static const std::map<std::string, std::string> examples = {
        {"serve",
         "  cascade serve --root /var/lib/cascade\n"
         "  cascade serve --listen 127.0.0.1:5001 --router-listen off -c cascade.yaml"},
        {"build",
         "  cascade build -t web:latest ./web\n"
         "  cascade build -t app:1 -f Dockerfile.prod --build-arg VERSION=1.2 --no-cache ."},
        {"apply",
         "  cascade apply -f examples/image-stream/\n"
         "  cascade apply -f template.yaml --param GIT_URL=file:///src/repo"},
        {"up", "  cascade up examples/image-stream --timeout 600"},
        {"get",
         "  cascade get is\n"
         "  cascade get bc app-a -o yaml\n"
         "  cascade get all -l app=app-a\n"
         "  cascade get pods -l deploymentconfig=app-a -o wide\n"
         "  cascade get builds -l 'buildconfig in (app-a,app-b)' -o name\n"
         "  cascade get dc/app-a -o json"},
        {"describe",
         "  cascade describe is httpd-base\n"
         "  cascade describe bc/app-a\n"
         "  cascade describe build app-a-3\n"
         "  cascade describe dc app-a"},
        {"delete",
         "  cascade delete route app-a\n"
         "  cascade delete bc/app-a is/app-a\n"
         "  cascade delete -f app-a.yaml\n"
         "  cascade delete all -l app=app-a\n"
         "  cascade delete builds -l buildconfig=app-a --ignore-not-found"},
        {"start-build",
         "  cascade start-build httpd-base\n"
         "  cascade start-build app-a --follow\n"
         "  cascade start-build httpd-base --from-dir ~/src/image-stream --wait"},
        {"cancel-build", "  cascade cancel-build app-a-4"},
        {"logs",
         "  cascade logs build/app-a-3\n"
         "  cascade logs -f dc/app-a --replica 1\n"
         "  cascade logs app-a --previous --tail 50"},
        {"scale", "  cascade scale dc/app-a --replicas 3"},
        {"rollout",
         "  cascade rollout status app-a --timeout 300\n"
         "  cascade rollout history app-a\n"
         "  cascade rollout undo app-a --to-revision 2\n"
         "  cascade rollout pause app-a && cascade rollout resume app-a"},
        {"exec", "  cascade exec app-a -- cat /etc/os-release"},
        {"import-image",
         "  cascade import-image os-base\n"
         "  cascade import-image os-base:latest --from registry.local/os:1 --confirm --scheduled"},
        {"tag",
         "  cascade tag httpd-base:latest#2 httpd-base:latest   # back to generation 2\n"
         "  cascade tag app-a@sha256:... app-a:stable"},
        {"events",
         "  cascade events\n"
         "  cascade events -w\n"
         "  cascade events --since 120 -o json"},
        {"impact",
         "  cascade impact httpd-base:latest\n"
         "  cascade impact os-base@sha256:..."},
        {"gc", "  cascade gc --dry-run\n  cascade gc"},
        {"process",
         "  cascade process -f template.yaml --param GIT_URL=file:///src/repo\n"
         "  cascade process -f template.yaml --param BASE_IMAGE=os:1 | cascade apply -f -"},
        {"create", "  cascade create -f template.yaml"},
        {"new-app", "  cascade new-app --template=image-stream-demo --param GIT_URL=/src/repo"},
        {"completion",
         "  cascade completion bash > /etc/bash_completion.d/cascade\n"
         "  source <(cascade completion bash)\n"
         "  source <(cascade completion zsh)   # zsh, after compinit"}};
    std::function<void(CLI::App*, const std::string&)> visit = [&](CLI::App* a,
                                                                   const std::string& path) {
        for (auto* sub : a->get_subcommands({})) {
            std::string name = path.empty() ? sub->get_name() : path + " " + sub->get_name();
            if (sub->get_footer().empty()) {
                auto it = examples.find(name);
                if (it == examples.end()) it = examples.find(path);  // rollout's subcommands
                std::string text =
                    it != examples.end() ? it->second : "  cascade " + name + " --help";
                sub->footer("\nExamples:\n" + text + "\n\n" + kExitCodes);
            }
            visit(sub, name);
        }
    };
    visit(&app, "");
    app.footer(std::string("\nExamples:\n"
                           "  cascade serve &\n"
                           "  cascade apply -f examples/image-stream/template.yaml --param "
                           "GIT_URL=file:///src/repo\n"
                           "  cascade get all\n"
                           "  cascade start-build httpd-base && cascade events -w\n"
                           "  cascade delete all -l app=app-a\n\n"
                           "Every command has --help. ") +
               kExitCodes);
}

// The options of a command, for completion: "--output -o --help -h ...",
// and those that take a value.
std::pair<std::string, std::string> completion_options(CLI::App* a) {
    std::string all, valued;
    for (const auto* o : a->get_options()) {
        if (o->get_positional()) continue;
        std::string names;
        for (const auto& l : o->get_lnames())
            names += (names.empty() ? "--" : " --") + l;
        for (const auto& sn : o->get_snames())
            names += (names.empty() ? "-" : " -") + sn;
        if (names.empty()) continue;
        all += (all.empty() ? "" : " ") + names;
        if (o->get_expected_min() > 0) valued += (valued.empty() ? "" : "|") + names;
    }
    for (char& c : valued)
        if (c == ' ') c = '|';
    return {all, valued};
}

// `cascade completion bash|zsh`: completes commands, options, kinds, and the
// names of objects (asked of the daemon with `cascade get KIND -o name` when
// completing, with the --host given on the command line).
std::string completion_script(CLI::App& app, const std::string& shell) {
    std::string commands, command_options, rollout_subs,
        valued = "--host|--username|--password|--ca-cert";
    for (auto* sub : app.get_subcommands({})) {
        commands += (commands.empty() ? "" : " ") + sub->get_name();
        auto [opts, with_value] = completion_options(sub);
        if (sub->get_name() == "rollout")
            for (auto* r : sub->get_subcommands({})) {
                rollout_subs += (rollout_subs.empty() ? "" : " ") + r->get_name();
                auto [ropts, rvalued] = completion_options(r);
                opts += " " + ropts;
                if (!rvalued.empty()) with_value += (with_value.empty() ? "" : "|") + rvalued;
            }
        command_options += "        " + sub->get_name() + ") opts=\"" + opts + "\" ;;\n";
        if (!with_value.empty()) valued += "|" + with_value;
    }
    // Deduplicate the alternatives of the valued-options pattern.
    std::set<std::string> seen;
    std::string pattern;
    std::stringstream parts(valued);
    for (std::string p; std::getline(parts, p, '|');)
        if (!p.empty() && seen.insert(p).second) pattern += (pattern.empty() ? "" : "|") + p;
    auto [global_opts, global_valued] = completion_options(&app);
    (void)global_valued;

    std::ostringstream s;
    if (shell == "zsh")
        s << "#compdef cascade\n"
             "# zsh completion for cascade: source <(cascade completion zsh) after compinit\n"
             "autoload -U +X bashcompinit && bashcompinit\n";
    else
        s << "# bash completion for cascade: source <(cascade completion bash)\n";
    s << R"SH(
_cascade_names() {
    # The names of one kind's objects, from the daemon.
    local -a host_args=()
    [[ -n "$_cascade_host" ]] && host_args=(--host "$_cascade_host")
    "$_cascade_bin" "${host_args[@]}" get "$1" -o name 2>/dev/null | sed 's|^[^/]*/||'
}

_cascade() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local commands=")SH"
      << commands << R"SH("
    local kinds="all imagestreams is buildconfigs bc builds build deploymentconfigs dc deployments pods pod po routes route services svc templates template"
    local global_opts=")SH"
      << global_opts << R"SH("
    local cmd="" sub="" word i opts=""
    local -a args=()
    _cascade_bin="${COMP_WORDS[0]}"
    _cascade_host=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        case "$word" in
            --host) _cascade_host="${COMP_WORDS[i+1]}"; ((i++)); continue ;;
            --host=*) _cascade_host="${word#--host=}"; continue ;;
            )SH"
      << pattern << R"SH() ((i++)); continue ;;
            --) break ;;
            -*) continue ;;
        esac
        if [[ -z "$cmd" ]]; then
            cmd="$word"
        elif [[ "$cmd" == rollout && -z "$sub" ]]; then
            sub="$word"
        else
            args+=("$word")
        fi
    done

    case "$prev" in
        -o|--output) COMPREPLY=($(compgen -W "json yaml wide name" -- "$cur")); return ;;
        -f|--filename|--file|--from-dir|--ca-cert|-c|--config|--root|--secret)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    if [[ -z "$cmd" ]]; then
        if [[ "$cur" == -* ]]; then
            COMPREPLY=($(compgen -W "$global_opts" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi
    case "$cmd" in
)SH" << command_options
      << R"SH(    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    local words=""
    case "$cmd" in
        get|describe|delete)
            if [[ ${#args[@]} -eq 0 ]]; then
                words="$kinds"
                [[ "$cmd" == describe ]] && words="${kinds#all }"
            elif [[ "${args[0]}" != */* && "${args[0]}" != all ]]; then
                words="$(_cascade_names "${args[0]}")"
            fi ;;
        start-build) [[ ${#args[@]} -eq 0 ]] && words="$(_cascade_names buildconfigs)" ;;
        cancel-build) [[ ${#args[@]} -eq 0 ]] && words="$(_cascade_names builds)" ;;
        logs|scale|exec) [[ ${#args[@]} -eq 0 ]] && words="$(_cascade_names deployments)" ;;
        rollout)
            if [[ -z "$sub" ]]; then
                words=")SH"
      << rollout_subs << R"SH("
            elif [[ ${#args[@]} -eq 0 ]]; then
                words="$(_cascade_names deployments)"
            fi ;;
        tag|import-image|impact) words="$(_cascade_names imagestreams)" ;;
        new-app) words="$(_cascade_names templates)" ;;
        completion) words="bash zsh" ;;
        apply|create|process|build|up) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}

complete -F _cascade cascade
)SH";
    return s.str();
}

}  // namespace
}  // namespace cascade::cli

#ifdef CASCADE_CLIENT_ONLY
namespace cascade::cli {
namespace {
// `cascade serve` runs the daemon binary installed beside this one (cascaded), with
// the same arguments and process id: the client stays small and starts in a few
// milliseconds, without the libraries only the daemon needs (libcurl, libarchive).
int exec_daemon(int argc, char** argv) {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    auto daemon = (ec ? std::filesystem::path(".") : self.parent_path()) / "cascaded";
    std::vector<char*> args(argv, argv + argc);
    args.push_back(nullptr);
    execv(daemon.c_str(), args.data());
    throw Error("cascade serve: cannot run the daemon " + daemon.string() + ": " +
                std::strerror(errno) + " (it is installed beside cascade; rebuild or reinstall)");
}
}  // namespace
}  // namespace cascade::cli
#endif

int main(int argc, char** argv) {
    using namespace cascade::cli;
    // A daemon that closes a TLS connection first must cost an error, not the
    // process (OpenSSL writes to the socket without MSG_NOSIGNAL).
    signal(SIGPIPE, SIG_IGN);
    CLI::App app{
        "cascade: build images, track them as image streams, and roll out what runs on them"};
    app.require_subcommand(1);
    // Global options (--host, --no-color ...) also after the command, as kubectl
    // and oc take them: `cascade get dc --no-color`.
    app.fallthrough();
    Global g;
    const char* env_host = std::getenv("CASCADE_HOST");
    g.host = env_host && *env_host ? env_host : kDefaultHost;
    app.add_option("--host", g.host, "daemon URL (env CASCADE_HOST)")->capture_default_str();
    auto env_or = [](const char* name) {
        const char* v = std::getenv(name);
        return std::string(v ? v : "");
    };
    connection = {env_or("CASCADE_USERNAME"), env_or("CASCADE_PASSWORD"),
                  env_or("CASCADE_CA_CERT")};
    app.add_option("--username", connection.username,
                   "user for a daemon with authentication (env CASCADE_USERNAME)");
    app.add_option("--password", connection.password,
                   "password (env CASCADE_PASSWORD, which other users cannot see in ps)");
    app.add_option("--ca-cert", connection.ca_cert,
                   "PEM file of the CA that signed the daemon's certificate (env CASCADE_CA_CERT)");
    bool no_colour_flag = false;
    app.add_flag(
        "--no-color", no_colour_flag,
        "no colour in tables (colour is used only on a terminal, never with NO_COLOR set)");

    ServeOptions serve_opts;
    auto* serve_cmd = app.add_subcommand("serve", "run the daemon in the foreground");
    serve_cmd->add_option("--root", serve_opts.root,
                          std::string("state root (default ") + kDefaultRoot + ")");
    serve_cmd
        ->add_option(
            "--listen", serve_opts.listen,
            std::string("HOST:PORT for the registry and API (default ") + kDefaultListen + ")")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // the last one given wins
    serve_cmd
        ->add_option("--router-listen", serve_opts.router_listen,
                     std::string("HOST:PORT of the routes' shared HTTP port (by Host header), or "
                                 "off (default ") +
                         kDefaultRouterListen + ")")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    serve_cmd->add_option("-c,--config", serve_opts.config, "configuration file (YAML)");
    serve_cmd->add_flag("--insecure", serve_opts.insecure,
                        "allow a non-loopback address without authentication and TLS");

    std::string tag, file, target, network = "host";
    std::vector<std::string> build_args, build_secrets;
    bool no_cache = false;
    std::string context;
    auto* build_cmd =
        app.add_subcommand("build", "build an image from a Dockerfile into the registry");
    build_cmd->add_option("-t,--tag", tag, "NAME:TAG to store the image as")->required();
    build_cmd->add_option("-f,--file", file, "Dockerfile (default CONTEXT/Dockerfile)");
    build_cmd->add_option("--build-arg", build_args, "K=V build argument (repeatable)");
    build_cmd->add_option("--target", target, "stage to build");
    build_cmd->add_flag("--no-cache", no_cache, "do not use cached steps");
    build_cmd->add_option("--network", network, "network for RUN steps: host (default) or none")
        ->check(CLI::IsMember({"host", "none", "default"}));
    build_cmd->add_option("--secret", build_secrets,
                          "id=ID,src=FILE for RUN --mount=type=secret,id=ID (repeatable)");
    build_cmd->add_option("context", context, "build context directory")->required();

    std::string apply_file;
    auto* apply_cmd =
        app.add_subcommand("apply", "create or update objects from a file or directory");
    apply_cmd->add_option("-f,--filename", apply_file, "YAML/JSON file or directory")->required();
    TemplateArgs template_args;
    auto add_template_params = [&template_args](CLI::App* cmd) {
        cmd->add_option("-p,--param", template_args.params,
                        "NAME=VALUE of a template parameter (repeatable)");
        cmd->add_option("--param-file", template_args.param_file,
                        "file of NAME=VALUE lines of template parameters (- for stdin)");
    };
    add_template_params(apply_cmd);

    std::string process_file, process_name, process_output = "json";
    auto* process_cmd = app.add_subcommand(
        "process", "print the objects of a template with its parameters substituted (as oc)");
    process_cmd->add_option("-f,--filename", process_file, "template file (YAML/JSON)");
    process_cmd->add_option("template", process_name, "name of a stored template (create -f)");
    process_cmd->add_option("-o,--output", process_output, "json (default) or yaml")
        ->check(CLI::IsMember({"json", "yaml"}));
    add_template_params(process_cmd);

    std::string create_file;
    auto* create_cmd = app.add_subcommand(
        "create", "create objects from a file, failing when one exists; store templates");
    create_cmd->add_option("-f,--filename", create_file, "YAML/JSON file or directory")->required();

    std::string new_app_template;
    auto* new_app_cmd =
        app.add_subcommand("new-app", "create the objects of a template stored with `create -f`");
    new_app_cmd->add_option("--template", new_app_template, "stored template's name")->required();
    add_template_params(new_app_cmd);

    std::string up_dir, up_root = "/var/lib/cascade";
    int up_timeout = 900;
    auto* up_cmd = app.add_subcommand(
        "up", "start a daemon if none answers, apply DIR, wait for builds and deployments");
    up_cmd
        ->add_option(
            "dir", up_dir,
            "a file, or a directory: its cascade.yaml if it has one, else every YAML/JSON file")
        ->required();
    up_cmd->add_option("--root", up_root, "state root for a daemon started by up")
        ->capture_default_str();
    up_cmd->add_option("--timeout", up_timeout, "seconds to wait")->capture_default_str();

    std::vector<std::string> get_args;
    std::string output, get_selector;
    auto* get_cmd = app.add_subcommand(
        "get",
        "list objects: imagestreams (is), buildconfigs (bc), builds, deployments "
        "(deploymentconfigs, dc), pods (po: a deployment's replicas), routes, services (svc), "
        "templates, or all");
    get_cmd->add_option("args", get_args, "KIND [NAME...] or KIND/NAME...")->required();
    get_cmd->add_option("-o,--output", output, "json, yaml, wide or name")
        ->check(CLI::IsMember({"json", "yaml", "wide", "name"}));
    get_cmd->add_option("-l,--selector", get_selector,
                        "label selector: k=v, k!=v, k, !k, 'k in (a,b)', 'k notin (a,b)'; "
                        "commas join them");

    DeleteOptions delete_opts;
    auto* delete_cmd = app.add_subcommand(
        "delete", "delete objects by name, by file, or by label (all -l app=NAME)");
    delete_cmd->add_option("args", delete_opts.args, "KIND NAME..., KIND/NAME... or KIND -l SEL");
    delete_cmd->add_option("-f,--filename", delete_opts.files,
                           "YAML/JSON file or directory whose objects to delete (repeatable)");
    delete_cmd->add_option("-l,--selector", delete_opts.selector,
                           "delete the objects of KIND (or all) with these labels");
    delete_cmd->add_flag("--all", delete_opts.all, "delete every object of KIND");
    delete_cmd->add_flag("--ignore-not-found", delete_opts.ignore_not_found,
                         "an object that does not exist is no error");

    std::string completion_shell;
    auto* completion_cmd =
        app.add_subcommand("completion", "print a shell completion script (bash or zsh)");
    completion_cmd->add_option("shell", completion_shell, "bash or zsh")
        ->required()
        ->check(CLI::IsMember({"bash", "zsh"}));

    std::string sb_name, sb_from_dir;
    bool sb_follow = false, sb_wait = false;
    auto* sb_cmd = app.add_subcommand("start-build", "start a new build of a build config");
    sb_cmd->add_option("name", sb_name, "build config")->required();
    sb_cmd->add_flag("-F,--follow", sb_follow, "stream the build's log until it ends");
    sb_cmd->add_flag("-w,--wait", sb_wait, "wait until the build ends; exit 1 when it failed");
    sb_cmd->add_option("--from-dir", sb_from_dir,
                       "build this directory (copied when the build starts) instead of the "
                       "config's source; a git contextDir applies inside it");

    std::string logs_target;
    LogOptions logs_opts;
    auto* logs_cmd = app.add_subcommand(
        "logs", "print a build's log (build/NAME-N) or a deployment replica's (DEPLOYMENT)");
    logs_cmd->add_option("target", logs_target, "build/NAME-N or [deployment/]NAME")->required();
    logs_cmd->add_flag("-f,--follow", logs_opts.follow,
                       "keep streaming until the build ends or the replica's container is gone");
    logs_cmd->add_flag("-p,--previous", logs_opts.previous,
                       "the replica's previous container (before its last restart)");
    logs_cmd->add_option("--replica", logs_opts.replica,
                         "replica index (default: the lowest ready one)");
    logs_cmd->add_option("--tail", logs_opts.tail, "only the last N lines");

    std::string scale_target;
    int scale_replicas = -1;
    auto* scale_cmd = app.add_subcommand("scale", "set a deployment's number of replicas");
    scale_cmd->add_option("name", scale_target, "[deployment/]NAME")->required();
    scale_cmd->add_option("--replicas", scale_replicas, "the new count")->required();

    auto* rollout_cmd = app.add_subcommand(
        "rollout", "follow, list, undo, retry, pause, resume or restart a deployment's rollouts");
    rollout_cmd->require_subcommand(1);
    std::string rollout_target, rollout_output;
    int rollout_timeout = 0, rollout_revision = 0;
    std::optional<int> rollout_to;
    std::map<std::string, CLI::App*> rollout_cmds;
    for (auto [action, help] : std::vector<std::pair<std::string, std::string>>{
             {"status", "follow the latest rollout: exit 0 when complete, 1 when it failed"},
             {"history", "list the revisions: REVISION DIGEST STATUS CAUSE"},
             {"undo", "roll back to the previous revision (or --to-revision N)"},
             {"retry", "forget the failed digests and roll out the tag's digest again"},
             {"pause", "record tag moves and changes without rolling them out"},
             {"resume", "roll out what a pause held back"},
             {"restart", "replace every replica (a new revision of the same image)"},
             {"latest",
              "roll out the applied template (held back without a ConfigChange "
              "trigger), else restart"}}) {
        auto* sub = rollout_cmd->add_subcommand(action, help);
        sub->add_option("name", rollout_target, "[deployment/]NAME")->required();
        rollout_cmds[action] = sub;
    }
    rollout_cmds["status"]->add_option("--timeout", rollout_timeout,
                                       "seconds to wait (0: no limit)");
    rollout_cmds["status"]->add_option("--revision", rollout_revision,
                                       "wait until at least this revision exists");
    rollout_cmds["undo"]->add_option("--to-revision", rollout_to, "the revision to go back to");
    rollout_cmds["history"]
        ->add_option("-o,--output", rollout_output, "json or wide")
        ->check(CLI::IsMember({"json", "wide"}));

    std::string exec_target;
    std::optional<int> exec_replica;
    std::vector<std::string> exec_command;
    auto* exec_cmd = app.add_subcommand(
        "exec", "run a command in a deployment's replica: cascade exec NAME [--replica N] -- CMD");
    exec_cmd->add_option("name", exec_target, "[deployment/]NAME")->required();
    exec_cmd->add_option("--replica", exec_replica,
                         "replica index (default: the lowest ready one)");
    exec_cmd->add_option("command", exec_command, "CMD [ARGS…] (after --)")->required();

    std::string cancel_target;
    auto* cancel_cmd = app.add_subcommand(
        "cancel-build", "cancel a queued build or stop a running one: cascade cancel-build NAME-N");
    cancel_cmd->add_option("build", cancel_target, "NAME-N or build/NAME-N")->required();

    std::string import_target, import_from;
    bool import_confirm = false, import_scheduled = false, import_insecure = false;
    auto* import_cmd = app.add_subcommand(
        "import-image", "import an image stream tag from another registry now (oc import-image)");
    import_cmd->add_option("name", import_target, "NAME[:TAG] (no TAG: every tag that follows one)")
        ->required();
    import_cmd->add_option("--from", import_from,
                           "the image to follow, e.g. docker.io/library/httpd:2.4");
    import_cmd->add_flag("--confirm", import_confirm,
                         "create the image stream tag, or change what it follows");
    import_cmd->add_flag("--scheduled", import_scheduled,
                         "re-check the image periodically (imports.intervalSeconds)");
    import_cmd->add_flag("--insecure", import_insecure,
                         "allow plain http:// or a TLS certificate that does not verify");

    std::string tag_source, tag_dest;
    auto* tag_cmd = app.add_subcommand(
        "tag", "point a stream tag at an existing image, recorded in its history (a rollback)");
    tag_cmd
        ->add_option("source", tag_source, "STREAM:TAG, STREAM@sha256:… or STREAM:TAG#GENERATION")
        ->required();
    tag_cmd->add_option("destination", tag_dest, "STREAM:TAG to move")->required();

    std::string describe_kind, describe_name;
    auto* describe_cmd =
        app.add_subcommand("describe",
                           "show an object in detail: an image stream's tag history, a build "
                           "config's triggers and builds, a build's steps, a deployment's "
                           "replicas and revisions, a route, a service, a template");
    describe_cmd
        ->add_option("kind", describe_kind,
                     "imagestream (is), buildconfig (bc), build, deployment (dc), route, "
                     "service (svc), template, or KIND/NAME")
        ->required();
    describe_cmd->add_option("name", describe_name, "the object's name");

    bool events_watch = false;
    int64_t events_since = -1, events_count = 0;
    std::string events_output;
    auto* events_cmd = app.add_subcommand(
        "events", "list tag moves, builds and rollouts, or follow them with --watch");
    events_cmd->add_flag("-w,--watch", events_watch, "keep streaming new events");
    events_cmd->add_option("--since", events_since, "only events after this id (a resume point)");
    events_cmd->add_option("--count", events_count, "with --watch: stop after N events");
    events_cmd->add_option("-o,--output", events_output, "json: one JSON object per event")
        ->check(CLI::IsMember({"json"}));

    std::string impact_image, impact_output;
    auto* impact_cmd = app.add_subcommand(
        "impact", "list the images and running replicas built on an image, current or not");
    impact_cmd->add_option("image", impact_image, "IMAGE[:TAG|@DIGEST] (default tag: latest)")
        ->required();
    impact_cmd->add_option("-o,--output", impact_output, "json")->check(CLI::IsMember({"json"}));

    bool gc_dry_run = false;
    std::string gc_output;
    auto* gc_cmd = app.add_subcommand(
        "gc", "remove images that no tag, kept generation or running container uses");
    gc_cmd->add_flag("--dry-run", gc_dry_run, "only report what would be removed");
    gc_cmd->add_option("-o,--output", gc_output, "json")->check(CLI::IsMember({"json"}));

    add_help_footers(app);
    // Exit codes scripts can rely on: 0 ok (and --help), 1 an error from the
    // daemon or the operation, 2 a usage error.
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }
    const char* no_color = std::getenv("NO_COLOR");
    colour = isatty(1) && !(no_color && *no_color) && !no_colour_flag;
    while (!g.host.empty() && g.host.back() == '/')
        g.host.pop_back();
    if (g.host.find("://") == std::string::npos) g.host = "http://" + g.host;

    try {
#ifdef CASCADE_CLIENT_ONLY
        if (*serve_cmd) return exec_daemon(argc, argv);
#else
        if (*serve_cmd) return serve(serve_opts);
#endif
        if (*build_cmd)
            return cmd_build(g, tag, file, build_args, target, no_cache, network, context,
                             build_secrets);
        if (*apply_cmd) return cmd_apply(g, apply_file, template_args);
        if (*process_cmd)
            return cmd_process(g, process_file, process_name, template_args, process_output);
        if (*create_cmd) return cmd_create(g, create_file);
        if (*new_app_cmd) return cmd_new_app(g, new_app_template, template_args);
        if (*up_cmd) return cmd_up(g, up_dir, up_root, up_timeout);
        if (*get_cmd) return cmd_get(g, get_args, output, get_selector);
        if (*delete_cmd) return cmd_delete(g, delete_opts);
        if (*completion_cmd) {
            std::cout << completion_script(app, completion_shell);
            return 0;
        }
        if (*sb_cmd) return cmd_start_build(g, sb_name, sb_follow, sb_wait, sb_from_dir);
        if (*logs_cmd) return cmd_logs(g, logs_target, logs_opts);
        if (*scale_cmd) return cmd_scale(g, scale_target, scale_replicas);
        if (*exec_cmd) return cmd_exec(g, exec_target, exec_replica, exec_command);
        if (*rollout_cmd) {
            if (*rollout_cmds["status"])
                return cmd_rollout_status(g, rollout_target, rollout_revision, rollout_timeout);
            if (*rollout_cmds["history"])
                return cmd_rollout_history(g, rollout_target, rollout_output);
            for (const auto& [action, sub] : rollout_cmds) {
                if (!*sub) continue;
                std::optional<int> to;
                if (action == "undo") to = rollout_to;
                return cmd_rollout_action(g, action, rollout_target, to);
            }
        }
        if (*cancel_cmd) return cmd_cancel_build(g, cancel_target);
        if (*tag_cmd) return cmd_tag(g, tag_source, tag_dest);
        if (*describe_cmd) return cmd_describe(g, describe_kind, describe_name);
        if (*events_cmd)
            return cmd_events(g, events_watch, events_since, events_count, events_output);
        if (*gc_cmd) return cmd_gc(g, gc_dry_run, gc_output);
        if (*impact_cmd) return cmd_impact(g, impact_image, impact_output);
        if (*import_cmd)
            return cmd_import_image(g, import_target, import_from, import_confirm, import_scheduled,
                                    import_insecure);
    } catch (const UsageError& e) {
        std::cerr << "error: " << e.what() << "\n"
                  << "See 'cascade "
                  << (app.get_subcommands().empty() ? std::string("")
                                                    : app.get_subcommands()[0]->get_name() + " ")
                  << "--help' for usage.\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
