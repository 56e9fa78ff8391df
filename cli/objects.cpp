#include "cli/objects.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <regex>

#include "cli/pod_template.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/reference.hpp"

namespace cascade::cli {

const std::vector<std::string> kSupportedKinds = {
    "List", "ImageStream", "BuildConfig", "DeploymentConfig", "Deployment", "Route"};

namespace {

nlohmann::json scalar_to_json(const YAML::Node& node) {
    const std::string& s = node.Scalar();
    if (node.Tag() == "!") return s;  // quoted
    static const std::regex int_re("^[-+]?[0-9]+$");
    static const std::regex float_re(R"(^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$)");
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
    if (s == "null" || s == "Null" || s == "NULL" || s == "~" || s.empty()) return nullptr;
    if (std::regex_match(s, int_re)) {
        try {
            return std::stoll(s);
        } catch (...) {
            return s;
        }
    }
    if (std::regex_match(s, float_re)) return std::stod(s);
    return s;
}

nlohmann::json yaml_to_json(const YAML::Node& node) {
    switch (node.Type()) {
        case YAML::NodeType::Null:
        case YAML::NodeType::Undefined:
            return nullptr;
        case YAML::NodeType::Scalar:
            return scalar_to_json(node);
        case YAML::NodeType::Sequence: {
            auto arr = nlohmann::json::array();
            for (const auto& item : node)
                arr.push_back(yaml_to_json(item));
            return arr;
        }
        case YAML::NodeType::Map: {
            auto obj = nlohmann::json::object();
            for (const auto& kv : node)
                obj[kv.first.as<std::string>()] = yaml_to_json(kv.second);
            return obj;
        }
    }
    return nullptr;
}

void flatten(const nlohmann::json& doc, std::vector<nlohmann::json>& out) {
    if (doc.is_null()) return;
    if (!doc.is_object()) throw Error("expected an object with apiVersion and kind");
    if (doc.value("kind", "") == "List") {
        for (const auto& item : doc.value("items", nlohmann::json::array()))
            flatten(item, out);
        return;
    }
    out.push_back(doc);
}

std::string where(const nlohmann::json& obj) {
    return obj.value("kind", "object") + " \"" +
           obj.value("/metadata/name"_json_pointer, std::string("?")) + "\"";
}

const nlohmann::json& require(const nlohmann::json& obj, const std::string& pointer) {
    nlohmann::json::json_pointer p(pointer);
    if (!obj.contains(p)) {
        std::string field = pointer.substr(1);
        std::replace(field.begin(), field.end(), '/', '.');
        throw Error(where(obj) + ": " + field + " is missing");
    }
    return obj.at(p);
}

std::string string_at(const nlohmann::json& obj, const std::string& pointer,
                      const std::string& fallback = {}) {
    nlohmann::json::json_pointer p(pointer);
    if (!obj.contains(p)) return fallback;
    const auto& v = obj.at(p);
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
    std::string field = pointer.substr(1);
    std::replace(field.begin(), field.end(), '/', '.');
    throw Error(where(obj) + ": " + field + " must be a string");
}

int64_t int_at(const nlohmann::json& obj, const std::string& pointer, int64_t fallback) {
    nlohmann::json::json_pointer p(pointer);
    if (!obj.contains(p)) return fallback;
    const auto& v = obj.at(p);
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_string()) {
        try {
            return std::stoll(v.get<std::string>());
        } catch (...) {
        }
    }
    std::string field = pointer.substr(1);
    std::replace(field.begin(), field.end(), '/', '.');
    throw Error(where(obj) + ": " + field + " must be an integer");
}

void resolve_paths(nlohmann::json& obj, const std::filesystem::path& base_dir) {
    if (obj.value("kind", "") != "BuildConfig") return;
    nlohmann::json::json_pointer p("/spec/source/contextDir");
    std::filesystem::path dir = obj.contains(p) ? obj.at(p).get<std::string>() : std::string(".");
    if (dir.is_relative()) dir = base_dir / dir;
    obj[p] = std::filesystem::weakly_canonical(dir).string();
}

// The image stream tag an ImageStreamTag/DockerImage reference names.
std::string stream_tag_from(const nlohmann::json& obj, const std::string& pointer) {
    std::string kind = string_at(obj, pointer + "/kind", "ImageStreamTag");
    std::string name = string_at(obj, pointer + "/name");
    if (name.empty()) return {};
    if (kind != "ImageStreamTag" && kind != "DockerImage")
        throw Error(where(obj) + ": " + pointer.substr(1) + ".kind \"" + kind +
                    "\" is not supported (ImageStreamTag, DockerImage)");
    auto [repo, tag] = split_stream_tag(name);
    return repo + ":" + tag;
}

}  // namespace

std::pair<std::string, std::string> split_stream_tag(const std::string& text) {
    auto at = text.find('@');
    std::string base = at == std::string::npos ? text : text.substr(0, at);
    auto colon = base.rfind(':');
    auto slash = base.rfind('/');
    if (colon != std::string::npos && (slash == std::string::npos || colon > slash))
        return {base.substr(0, colon), base.substr(colon + 1)};
    return {base, "latest"};
}

std::vector<nlohmann::json> yaml_documents_to_json(const std::string& text) {
    std::vector<nlohmann::json> docs;
    try {
        for (const auto& node : YAML::LoadAll(text))
            docs.push_back(yaml_to_json(node));
    } catch (const YAML::Exception& e) {
        throw Error("YAML error at line " + std::to_string(e.mark.line + 1) + ", column " +
                    std::to_string(e.mark.column + 1) + ": " + e.msg);
    }
    return docs;
}

namespace {

void emit_yaml(YAML::Emitter& out, const nlohmann::json& v) {
    switch (v.type()) {
        case nlohmann::json::value_t::object:
            if (v.empty()) {
                out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
                break;
            }
            out << YAML::BeginMap;
            for (const auto& [key, value] : v.items()) {
                out << YAML::Key << key << YAML::Value;
                emit_yaml(out, value);
            }
            out << YAML::EndMap;
            break;
        case nlohmann::json::value_t::array:
            if (v.empty()) {
                out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
                break;
            }
            out << YAML::BeginSeq;
            for (const auto& item : v)
                emit_yaml(out, item);
            out << YAML::EndSeq;
            break;
        case nlohmann::json::value_t::string: {
            const auto& s = v.get_ref<const std::string&>();
            // Quoted when read back plain it would not be this string (a
            // number, a boolean, null, "" ...).
            bool plain = false;
            try {
                auto node = YAML::Load(s);
                plain = node.IsScalar() && scalar_to_json(node) == v && node.Scalar() == s;
            } catch (const YAML::Exception&) {
            }
            bool block = s.size() > 1 && s.back() == '\n' && s[s.size() - 2] != '\n' &&
                         s.front() != ' ' && s.front() != '\n' && s.find('\t') == std::string::npos;
            if (s.find('\n') != std::string::npos && block)
                out << YAML::Literal << s.substr(0, s.size() - 1);
            else if (plain)
                out << s;
            else
                out << YAML::DoubleQuoted << s;
            break;
        }
        case nlohmann::json::value_t::boolean:
            out << (v.get<bool>() ? "true" : "false");
            break;
        case nlohmann::json::value_t::null:
        case nlohmann::json::value_t::discarded:
            out << YAML::Null;
            break;
        default:
            out << v.dump();  // numbers, as JSON writes them
    }
}

}  // namespace

std::string json_to_yaml(const nlohmann::json& value) {
    YAML::Emitter out;
    out.SetIndent(2);
    out << YAML::Block;
    emit_yaml(out, value);
    std::string text = out.c_str();
    if (text.empty() || text.back() != '\n') text += '\n';
    return text;
}

std::vector<nlohmann::json> load_objects(const std::filesystem::path& path) {
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(path)) {
        for (const auto& e : std::filesystem::directory_iterator(path)) {
            auto ext = e.path().extension().string();
            if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json"))
                files.push_back(e.path());
        }
        std::sort(files.begin(), files.end());
        if (files.empty())
            throw Error(path.string() + ": no *.yaml, *.yml or *.json files in this directory");
    } else {
        files.push_back(path);
    }
    std::vector<nlohmann::json> out;
    for (const auto& file : files) {
        std::string text = fs::read_file(file);
        std::vector<nlohmann::json> docs;
        try {
            if (file.extension() == ".json")
                docs.push_back(nlohmann::json::parse(text));
            else
                docs = yaml_documents_to_json(text);
        } catch (const nlohmann::json::exception& e) {
            throw Error(file.string() + ": " + e.what());
        } catch (const Error& e) {
            throw Error(file.string() + ": " + e.what());
        }
        std::vector<nlohmann::json> objs;
        try {
            for (auto& d : docs)
                flatten(d, objs);
        } catch (const Error& e) {
            throw Error(file.string() + ": " + e.what());
        }
        auto base_dir = std::filesystem::absolute(file).parent_path();
        for (auto& o : objs) {
            resolve_paths(o, base_dir);
            out.push_back(std::move(o));
        }
    }
    return out;
}

std::string object_kind(const nlohmann::json& obj) {
    if (!obj.is_object() || !obj.contains("kind") || !obj["kind"].is_string())
        throw Error(
            "an object has no kind; supported kinds: BuildConfig, DeploymentConfig, "
            "Deployment, Route, ImageStream, List");
    return obj["kind"].get<std::string>();
}

std::string object_name(const nlohmann::json& obj) {
    auto name = string_at(obj, "/metadata/name");
    if (name.empty()) throw Error(obj.value("kind", "object") + ": metadata.name is missing");
    static const std::regex name_re("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$");
    if (!std::regex_match(name, name_re))
        throw Error(where(obj) + ": metadata.name must be lower case letters, digits, '-' and '.'");
    return name;
}

engine::BuildConfigSpec build_config_from_object(const nlohmann::json& obj) {
    engine::BuildConfigSpec s;
    s.name = object_name(obj);
    s.context = string_at(obj, "/spec/source/contextDir");
    if (s.context.empty()) throw Error(where(obj) + ": spec.source.contextDir is missing");
    if (obj.contains(nlohmann::json::json_pointer("/spec/source/dockerfile")))
        s.dockerfile_text = string_at(obj, "/spec/source/dockerfile");
    s.dockerfile = string_at(obj, "/spec/strategy/dockerStrategy/dockerfilePath", "Dockerfile");
    s.from_override = stream_tag_from(obj, "/spec/strategy/dockerStrategy/from");
    nlohmann::json::json_pointer args_p("/spec/strategy/dockerStrategy/buildArgs");
    if (obj.contains(args_p)) {
        for (const auto& a : obj.at(args_p)) {
            if (!a.contains("name"))
                throw Error(where(obj) + ": spec.strategy.dockerStrategy.buildArgs[] needs a name");
            s.build_args[a["name"].get<std::string>()] = a.value("value", "");
        }
    }
    nlohmann::json::json_pointer nc("/spec/strategy/dockerStrategy/noCache");
    if (obj.contains(nc)) s.no_cache = obj.at(nc).get<bool>();
    s.successful_builds_history_limit =
        int_at(obj, "/spec/successfulBuildsHistoryLimit", s.successful_builds_history_limit);
    s.failed_builds_history_limit =
        int_at(obj, "/spec/failedBuildsHistoryLimit", s.failed_builds_history_limit);
    if (s.successful_builds_history_limit < 0 || s.failed_builds_history_limit < 0)
        throw Error(where(obj) +
                    ": spec.successfulBuildsHistoryLimit and spec.failedBuildsHistoryLimit must "
                    "not be negative");
    require(obj, "/spec/output/to/name");
    auto out = stream_tag_from(obj, "/spec/output/to");
    auto [repo, tag] = split_stream_tag(out);
    s.output_repository = repo;
    s.output_tag = tag;
    s.image_change_trigger = false;
    s.config_change_trigger = false;
    nlohmann::json::json_pointer tp("/spec/triggers");
    if (obj.contains(tp)) {
        for (const auto& t : obj.at(tp)) {
            auto type = t.value("type", "");
            if (type == "ImageChange")
                s.image_change_trigger = true;
            else if (type == "ConfigChange")
                s.config_change_trigger = true;
            else
                throw Error(where(obj) + ": trigger type \"" + type +
                            "\" is not supported (ImageChange, ConfigChange)");
        }
    }
    return s;
}

namespace {

// The stream tag a Deployment follows through OpenShift's trigger annotation
// (image.openshift.io/triggers: [{"from": {"kind": "ImageStreamTag", "name":
// "app:latest"}, "fieldPath": "spec.template.spec.containers[0].image",
// "paused": "false"}]); empty when there is none.
std::string annotated_trigger(const nlohmann::json& obj, bool& automatic) {
    nlohmann::json::json_pointer p("/metadata/annotations/image.openshift.io~1triggers");
    if (!obj.contains(p)) return {};
    const std::string field = "metadata.annotations[image.openshift.io/triggers]";
    nlohmann::json triggers = nlohmann::json::parse(string_at(obj, p.to_string()), nullptr, false);
    if (!triggers.is_array() || triggers.empty() || !triggers[0].is_object())
        throw Error(where(obj) + ": " + field +
                    " must be a JSON list like [{\"from\": {\"kind\": \"ImageStreamTag\", "
                    "\"name\": \"app:latest\"}}]");
    nlohmann::json holder = {{"kind", obj.value("kind", "")},
                             {"metadata", obj.value("metadata", nlohmann::json::object())},
                             {"trigger", triggers[0]}};
    std::string paused = string_at(holder, "/trigger/paused", "false");
    automatic = paused != "true";
    return stream_tag_from(holder, "/trigger/from");
}

}  // namespace

runtime::DeploymentSpec deployment_from_object(const nlohmann::json& obj,
                                               std::vector<std::string>* warnings) {
    runtime::DeploymentSpec s;
    s.name = object_name(obj);
    std::string kind = object_kind(obj);
    if (kind != "DeploymentConfig" && kind != "Deployment")
        throw Error(where(obj) + ": not a DeploymentConfig or Deployment");
    read_deployment_fields(obj, s, warnings);
    std::string image = string_at(obj, "/spec/template/spec/containers/0/image");
    std::string followed;
    if (kind == "Deployment") {
        s.automatic = true;
        followed = annotated_trigger(obj, s.automatic);
    } else {
        s.automatic = false;
        nlohmann::json::json_pointer tp("/spec/triggers");
        if (obj.contains(tp)) {
            if (!obj.at(tp).is_array()) throw Error(where(obj) + ": spec.triggers must be a list");
            for (const auto& t : obj.at(tp)) {
                auto type = t.value("type", "");
                if (type == "ImageChange") {
                    auto params = t.value("imageChangeParams", nlohmann::json::object());
                    s.automatic = params.value("automatic", true);
                    if (params.contains("from"))
                        followed = stream_tag_from(t, "/imageChangeParams/from");
                } else if (type != "ConfigChange") {
                    throw Error(where(obj) + ": trigger type \"" + type +
                                "\" is not supported (ImageChange, ConfigChange)");
                }
            }
        }
    }
    if (followed.empty()) followed = image;
    if (followed.empty())
        throw Error(where(obj) + ": no image: set spec.template.spec.containers[0].image" +
                    (kind == "Deployment" ? std::string(" (an image stream tag, e.g. app:latest)")
                                          : std::string(" or an ImageChange trigger")));
    auto [repo, tag] = split_stream_tag(followed);
    s.image_repository = repo;
    s.image_tag = tag;
    return s;
}

bool deployment_paused(const nlohmann::json& obj) {
    nlohmann::json::json_pointer p("/spec/paused");
    return obj.contains(p) && obj.at(p).is_boolean() && obj.at(p).get<bool>();
}

runtime::RouteSpec route_from_object(const nlohmann::json& obj) {
    runtime::RouteSpec r;
    r.name = object_name(obj);
    r.deployment = string_at(obj, "/spec/to/name");
    if (r.deployment.empty()) throw Error(where(obj) + ": spec.to.name is missing");
    auto port = string_at(obj, "/metadata/annotations/cascade.io~1host-port");
    if (!port.empty()) {
        try {
            r.port = static_cast<uint16_t>(std::stoi(port));
        } catch (...) {
            throw Error(where(obj) + ": annotation cascade.io/host-port must be a port number");
        }
    }
    r.host = string_at(obj, "/metadata/annotations/cascade.io~1host-address", "127.0.0.1");
    r.hostname = string_at(obj, "/spec/host");
    // A DNS name: labels of lower case letters, digits and '-', joined by '.'.
    bool valid = r.hostname.size() <= 253;
    size_t label = 0;
    for (size_t i = 0; i <= r.hostname.size() && valid && !r.hostname.empty(); i++) {
        char c = i < r.hostname.size() ? r.hostname[i] : '.';
        if (c == '.') {
            valid = label > 0 && label <= 63 && r.hostname[i - 1] != '-';
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && label > 0)) {
            label++;
        } else {
            valid = false;
        }
    }
    if (!valid)
        throw Error(where(obj) + ": spec.host \"" + r.hostname +
                    "\" is not a host name (lower case DNS labels joined by '.', e.g. "
                    "app-a.localhost)");
    return r;
}

std::vector<registry::ImportSpec> image_stream_imports_from_object(const nlohmann::json& obj) {
    std::string name = object_name(obj);
    std::vector<registry::ImportSpec> out;
    nlohmann::json::json_pointer tp("/spec/tags");
    if (!obj.contains(tp)) return out;
    const auto& tags = obj.at(tp);
    if (!tags.is_array()) throw Error(where(obj) + ": spec.tags must be a list");
    for (size_t i = 0; i < tags.size(); i++) {
        const auto& t = tags[i];
        std::string at = "/spec/tags/" + std::to_string(i);
        std::string field = "spec.tags[" + std::to_string(i) + "]";
        if (!t.is_object()) throw Error(where(obj) + ": " + field + " must be an object");
        std::string tag = string_at(obj, at + "/name");
        if (!oci::is_valid_tag(tag))
            throw Error(where(obj) + ": " + field + ".name \"" + tag +
                        "\" is not a valid tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})");
        if (!t.contains("from")) continue;
        std::string kind = string_at(obj, at + "/from/kind", "DockerImage");
        if (kind != "DockerImage")
            throw Error(where(obj) + ": " + field + ".from.kind \"" + kind +
                        "\" is not supported (DockerImage: an image in another registry)");
        registry::ImportSpec spec;
        spec.repository = name;
        spec.tag = tag;
        spec.from = string_at(obj, at + "/from/name");
        if (spec.from.empty()) throw Error(where(obj) + ": " + field + ".from.name is missing");
        try {
            oci::Reference::parse(spec.from);
        } catch (const std::exception& e) {
            throw Error(where(obj) + ": " + field + ".from.name \"" + spec.from +
                        "\": " + e.what());
        }
        for (auto [key, value] :
             {std::pair{"scheduled", &spec.scheduled}, std::pair{"insecure", &spec.insecure}}) {
            nlohmann::json::json_pointer p(at + "/importPolicy/" + key);
            if (!obj.contains(p)) continue;
            if (!obj.at(p).is_boolean())
                throw Error(where(obj) + ": " + field + ".importPolicy." + key +
                            " must be true or false");
            *value = obj.at(p).get<bool>();
        }
        out.push_back(std::move(spec));
    }
    return out;
}

}  // namespace cascade::cli
