#include "cli/objects.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <regex>

#include "cli/pod_template.hpp"
#include "cli/template.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/reference.hpp"

namespace cascade::cli {

const std::vector<std::string> kSupportedKinds = {
    "List", "ImageStream", "BuildConfig", "DeploymentConfig", "Deployment", "Route", "Service"};

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
    // With a git source, contextDir is a directory inside the repository; a
    // repository given as ./path or ../path is relative to the file.
    nlohmann::json::json_pointer uri("/spec/source/git/uri");
    if (obj.contains(uri) && obj.at(uri).is_string()) {
        auto text = obj.at(uri).get<std::string>();
        if (text.rfind("./", 0) == 0 || text.rfind("../", 0) == 0)
            obj[uri] = std::filesystem::weakly_canonical(base_dir / text).string();
    }
    if (obj.contains(nlohmann::json::json_pointer("/spec/source/git"))) return;
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

void resolve_object_paths(nlohmann::json& obj, const std::filesystem::path& base_dir) {
    resolve_paths(obj, base_dir);
}

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
            note_template_source(o, base_dir);  // its objects are resolved when processed
            out.push_back(std::move(o));
        }
    }
    return out;
}

std::string object_kind(const nlohmann::json& obj) {
    if (!obj.is_object() || !obj.contains("kind") || !obj["kind"].is_string())
        throw Error(
            "an object has no kind; supported kinds: BuildConfig, DeploymentConfig, "
            "Deployment, Route, Service, ImageStream, List");
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

namespace {

// A list of strings at `pointer` (empty when absent).
std::vector<std::string> strings_at(const nlohmann::json& obj, const std::string& pointer) {
    nlohmann::json::json_pointer p(pointer);
    std::vector<std::string> out;
    if (!obj.contains(p)) return out;
    std::string field = pointer.substr(1);
    std::replace(field.begin(), field.end(), '/', '.');
    const auto& v = obj.at(p);
    if (!v.is_array()) throw Error(where(obj) + ": " + field + " must be a list of strings");
    for (const auto& item : v) {
        if (!item.is_string())
            throw Error(where(obj) + ": " + field + " must be a list of strings");
        out.push_back(item.get<std::string>());
    }
    return out;
}

bool bool_at(const nlohmann::json& obj, const std::string& pointer, bool fallback) {
    nlohmann::json::json_pointer p(pointer);
    if (!obj.contains(p)) return fallback;
    if (obj.at(p).is_boolean()) return obj.at(p).get<bool>();
    std::string field = pointer.substr(1);
    std::replace(field.begin(), field.end(), '/', '.');
    throw Error(where(obj) + ": " + field + " must be true or false");
}

// A name=value list (dockerStrategy.env, buildArgs): [{name, value}].
std::vector<std::pair<std::string, std::string>> name_values_at(const nlohmann::json& obj,
                                                                const std::string& pointer) {
    nlohmann::json::json_pointer p(pointer);
    std::vector<std::pair<std::string, std::string>> out;
    if (!obj.contains(p)) return out;
    std::string field = pointer.substr(1);
    std::replace(field.begin(), field.end(), '/', '.');
    if (!obj.at(p).is_array())
        throw Error(where(obj) + ": " + field + " must be a list of {name, value}");
    for (size_t i = 0; i < obj.at(p).size(); i++) {
        const auto& item = obj.at(p)[i];
        std::string at = field + "[" + std::to_string(i) + "]";
        if (!item.is_object()) throw Error(where(obj) + ": " + at + " must be {name, value}");
        if (item.contains("valueFrom"))
            throw Error(where(obj) + ": " + at +
                        ".valueFrom is not supported (cascade has no Secrets or ConfigMaps); "
                        "give the value");
        std::string name = string_at(obj, pointer + "/" + std::to_string(i) + "/name");
        bool valid = !name.empty() && !(name[0] >= '0' && name[0] <= '9');
        for (char c : name)
            valid = valid && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-');
        if (!valid)
            throw Error(where(obj) + ": " + at + ".name \"" + name +
                        "\" is not a variable name (letters, digits, '_', '.', '-')");
        out.emplace_back(name, string_at(obj, pointer + "/" + std::to_string(i) + "/value"));
    }
    return out;
}

// A path that stays inside its root: relative, without "..".
bool inside_path(const std::string& path) {
    std::filesystem::path p(path);
    if (p.is_absolute()) return false;
    for (const auto& part : p)
        if (part == "..") return false;
    return true;
}

// A webhook trigger's secret: generic.secret / github.secret, used in URLs.
std::string webhook_secret(const nlohmann::json& obj, size_t i, const std::string& key) {
    std::string at = "/spec/triggers/" + std::to_string(i) + "/" + key;
    std::string field = "spec.triggers[" + std::to_string(i) + "]." + key;
    if (obj.contains(nlohmann::json::json_pointer(at + "/secretReference")))
        throw Error(where(obj) + ": " + field +
                    ".secretReference is not supported (cascade has no Secret objects); put the "
                    "secret in " +
                    field + ".secret");
    std::string secret = string_at(obj, at + "/secret");
    if (secret.empty())
        throw Error(where(obj) + ": " + field +
                    ".secret is missing (the webhook URL's secret, e.g. a random string)");
    for (char c : secret)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '~'))
            throw Error(where(obj) + ": " + field +
                        ".secret may only hold letters, digits, '-', '_', '.' and '~' (it is "
                        "part of the webhook URL)");
    return secret;
}

}  // namespace

engine::BuildConfigSpec build_config_from_object(const nlohmann::json& obj) {
    engine::BuildConfigSpec s;
    s.name = object_name(obj);

    // The source: a git repository (contextDir inside it), or a local
    // directory (contextDir alone); an inline Dockerfile with either.
    std::string source_type = string_at(obj, "/spec/source/type");
    if (!source_type.empty() && source_type != "Git" && source_type != "Dockerfile")
        throw Error(where(obj) + ": spec.source.type \"" + source_type +
                    "\" is not supported (Git, Dockerfile; without a type, spec.source.contextDir "
                    "is a local directory)");
    for (const char* unsupported : {"binary", "images"})
        if (obj.contains(nlohmann::json::json_pointer(std::string("/spec/source/") + unsupported)))
            throw Error(where(obj) + ": spec.source." + unsupported +
                        " is not supported (spec.source.git, spec.source.contextDir, "
                        "spec.source.dockerfile)");
    bool has_git = obj.contains(nlohmann::json::json_pointer("/spec/source/git"));
    if (source_type == "Git" && !has_git)
        throw Error(where(obj) + ": spec.source.git is missing (spec.source.type is Git)");
    if (has_git) {
        s.git_uri = string_at(obj, "/spec/source/git/uri");
        if (s.git_uri.empty()) throw Error(where(obj) + ": spec.source.git.uri is missing");
        s.git_ref = string_at(obj, "/spec/source/git/ref");
        if (!s.git_ref.empty() && s.git_ref[0] == '-')
            throw Error(where(obj) + ": spec.source.git.ref \"" + s.git_ref +
                        "\" is not a branch, tag or commit");
        s.git_context_dir = string_at(obj, "/spec/source/contextDir");
        if (!inside_path(s.git_context_dir))
            throw Error(where(obj) + ": spec.source.contextDir \"" + s.git_context_dir +
                        "\" must be a relative path inside the git repository");
        s.git_context_dir = std::filesystem::path(s.git_context_dir).lexically_normal().string();
        if (s.git_context_dir == ".") s.git_context_dir.clear();
    } else {
        s.context = string_at(obj, "/spec/source/contextDir");
        if (s.context.empty())
            throw Error(where(obj) +
                        ": spec.source.contextDir is missing (a local directory), or give "
                        "spec.source.git");
    }
    if (obj.contains(nlohmann::json::json_pointer("/spec/source/dockerfile")))
        s.dockerfile_text = string_at(obj, "/spec/source/dockerfile");

    // The strategy: Docker only.
    std::string strategy = string_at(obj, "/spec/strategy/type", "Docker");
    if (strategy != "Docker")
        throw Error(where(obj) + ": spec.strategy.type \"" + strategy +
                    "\" is not supported (Docker)");
    for (const char* other : {"sourceStrategy", "customStrategy", "jenkinsPipelineStrategy"})
        if (obj.contains(nlohmann::json::json_pointer(std::string("/spec/strategy/") + other)))
            throw Error(where(obj) + ": spec.strategy." + other +
                        " is not supported (dockerStrategy, type Docker)");
    s.dockerfile = string_at(obj, "/spec/strategy/dockerStrategy/dockerfilePath", "Dockerfile");
    if (has_git && !inside_path(s.dockerfile))
        throw Error(where(obj) + ": spec.strategy.dockerStrategy.dockerfilePath \"" + s.dockerfile +
                    "\" must be a relative path inside the context");
    s.from_override = stream_tag_from(obj, "/spec/strategy/dockerStrategy/from");
    for (auto& [k, v] : name_values_at(obj, "/spec/strategy/dockerStrategy/buildArgs"))
        s.build_args[k] = v;
    s.env = name_values_at(obj, "/spec/strategy/dockerStrategy/env");
    s.no_cache = bool_at(obj, "/spec/strategy/dockerStrategy/noCache", false);

    // postCommit: script, command, args (OpenShift's BuildPostCommitSpec).
    s.post_commit.script = string_at(obj, "/spec/postCommit/script");
    s.post_commit.command = strings_at(obj, "/spec/postCommit/command");
    s.post_commit.args = strings_at(obj, "/spec/postCommit/args");
    if (!s.post_commit.script.empty() && !s.post_commit.command.empty())
        throw Error(where(obj) +
                    ": spec.postCommit: give script or command, not both (args go with either)");

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
        if (!obj.at(tp).is_array()) throw Error(where(obj) + ": spec.triggers must be a list");
        for (size_t i = 0; i < obj.at(tp).size(); i++) {
            auto type = string_at(obj, "/spec/triggers/" + std::to_string(i) + "/type");
            if (type == "ImageChange")
                s.image_change_trigger = true;
            else if (type == "ConfigChange")
                s.config_change_trigger = true;
            else if (type == "Generic")
                s.generic_secrets.push_back(webhook_secret(obj, i, "generic"));
            else if (type == "GitHub")
                s.github_secrets.push_back(webhook_secret(obj, i, "github"));
            else
                throw Error(where(obj) + ": spec.triggers[" + std::to_string(i) + "].type \"" +
                            type +
                            "\" is not supported (ImageChange, ConfigChange, Generic, GitHub)");
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

// imageChangeParams.containerNames must name containers of the template.
void check_container_names(const nlohmann::json& obj, const nlohmann::json& params) {
    if (!params.contains("containerNames")) return;
    const auto& names = params["containerNames"];
    const std::string field = "spec.triggers[ImageChange].imageChangeParams.containerNames";
    if (!names.is_array()) throw Error(where(obj) + ": " + field + " must be a list of names");
    std::vector<std::string> declared;
    nlohmann::json::json_pointer cp("/spec/template/spec/containers");
    if (obj.contains(cp) && obj.at(cp).is_array())
        for (const auto& c : obj.at(cp))
            if (c.is_object() && c.contains("name") && c["name"].is_string())
                declared.push_back(c["name"].get<std::string>());
    for (const auto& n : names) {
        std::string name = n.is_string() ? n.get<std::string>() : n.dump();
        if (std::find(declared.begin(), declared.end(), name) == declared.end()) {
            std::string list;
            for (const auto& d : declared)
                list += (list.empty() ? "" : ", ") + d;
            throw Error(where(obj) + ": " + field + ": \"" + name +
                        "\" is not a container of spec.template.spec.containers (declared: " +
                        (list.empty() ? std::string("none: give the container a name") : list) +
                        ")");
        }
    }
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
                    if (params.contains("automatic") && !params["automatic"].is_boolean())
                        throw Error(where(obj) +
                                    ": imageChangeParams.automatic must be true or false");
                    s.automatic = params.value("automatic", true);
                    check_container_names(obj, params);
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
    route_target_kind(obj);  // spec.to.kind Service: resolved by apply through its selector
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
        if (kind == "ImageStreamTag") continue;  // an alias: image_stream_aliases_from_object
        if (kind != "DockerImage")
            throw Error(where(obj) + ": " + field + ".from.kind \"" + kind +
                        "\" is not supported (DockerImage: an image in another registry; "
                        "ImageStreamTag: an alias of another stream tag)");
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

// ---- ImageStream aliases, Services, triggers, labels, unknown fields ----

std::vector<ImageStreamAlias> image_stream_aliases_from_object(const nlohmann::json& obj) {
    std::string name = object_name(obj);
    std::vector<ImageStreamAlias> out;
    nlohmann::json::json_pointer tp("/spec/tags");
    if (!obj.contains(tp) || !obj.at(tp).is_array()) return out;
    const auto& tags = obj.at(tp);
    for (size_t i = 0; i < tags.size(); i++) {
        std::string at = "/spec/tags/" + std::to_string(i);
        std::string field = "spec.tags[" + std::to_string(i) + "]";
        if (!tags[i].is_object() || !tags[i].contains("from")) continue;
        if (string_at(obj, at + "/from/kind", "DockerImage") != "ImageStreamTag") continue;
        ImageStreamAlias a;
        a.repository = name;
        a.tag = string_at(obj, at + "/name");
        std::string from = string_at(obj, at + "/from/name");
        if (from.empty()) throw Error(where(obj) + ": " + field + ".from.name is missing");
        if (from.find('@') != std::string::npos)
            throw Error(where(obj) + ": " + field + ".from.name \"" + from +
                        "\" is a digest; an ImageStreamTag alias names a tag (stream:tag)");
        if (from.find(':') == std::string::npos) {
            a.source_repository = name;  // "latest": a tag of this stream
            a.source_tag = from;
        } else {
            auto [repo, tag] = split_stream_tag(from);
            a.source_repository = repo.empty() ? name : repo;
            a.source_tag = tag;
        }
        std::string ns = string_at(obj, at + "/from/namespace");
        (void)ns;  // one namespace here
        if (!oci::is_valid_tag(a.source_tag))
            throw Error(where(obj) + ": " + field + ".from.name \"" + from +
                        "\" does not name a valid tag (stream:tag)");
        if (a.source_repository == a.repository && a.source_tag == a.tag)
            throw Error(where(obj) + ": " + field + " is an alias of itself");
        out.push_back(std::move(a));
    }
    return out;
}

bool image_stream_lookup_local(const nlohmann::json& obj) {
    nlohmann::json::json_pointer p("/spec/lookupPolicy/local");
    if (!obj.contains(p)) return false;
    if (!obj.at(p).is_boolean())
        throw Error(where(obj) + ": spec.lookupPolicy.local must be true or false");
    return obj.at(p).get<bool>();
}

namespace {

bool label_name_ok(const std::string& s, size_t max) {
    if (s.empty() || s.size() > max) return false;
    auto alnum = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    };
    if (!alnum(s.front()) || !alnum(s.back())) return false;
    return std::all_of(s.begin(), s.end(),
                       [&](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; });
}

bool dns_subdomain_ok(const std::string& s) {
    if (s.empty() || s.size() > 253) return false;
    size_t start = 0;
    while (start <= s.size()) {
        size_t dot = s.find('.', start);
        std::string label =
            s.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
            return false;
        for (char c : label)
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
        if (dot == std::string::npos) break;
        start = dot + 1;
    }
    return true;
}

std::map<std::string, std::string> label_map(const nlohmann::json& obj, const std::string& pointer,
                                             const std::string& field) {
    std::map<std::string, std::string> out;
    nlohmann::json::json_pointer p(pointer);
    if (!obj.contains(p) || obj.at(p).is_null()) return out;
    const auto& m = obj.at(p);
    if (!m.is_object()) throw Error(where(obj) + ": " + field + " must be a map of key: value");
    for (const auto& [key, v] : m.items()) {
        auto slash = key.find('/');
        bool key_ok = slash == std::string::npos ? label_name_ok(key, 63)
                                                 : dns_subdomain_ok(key.substr(0, slash)) &&
                                                       label_name_ok(key.substr(slash + 1), 63);
        if (!key_ok)
            throw Error(where(obj) + ": " + field + " key \"" + key +
                        "\" is not a label key (an optional DNS prefix and '/', then up to 63 "
                        "letters, digits, '-', '_' or '.', beginning and ending with a letter or "
                        "digit; e.g. app, app.kubernetes.io/name)");
        if (!v.is_string() && !v.is_number() && !v.is_boolean())
            throw Error(where(obj) + ": " + field + " \"" + key + "\" must have a string value");
        std::string value = v.is_string() ? v.get<std::string>() : v.dump();
        if (!value.empty() && !label_name_ok(value, 63))
            throw Error(where(obj) + ": " + field + " \"" + key + "\" value \"" + value +
                        "\" is not a label value (empty, or up to 63 letters, digits, '-', '_' "
                        "or '.', beginning and ending with a letter or digit)");
        out[key] = value;
    }
    return out;
}

}  // namespace

std::map<std::string, std::string> object_labels(const nlohmann::json& obj) {
    return label_map(obj, "/metadata/labels", "metadata.labels");
}

bool selector_matches(const std::map<std::string, std::string>& selector,
                      const std::map<std::string, std::string>& labels) {
    if (selector.empty()) return false;
    for (const auto& [k, v] : selector) {
        auto it = labels.find(k);
        if (it == labels.end() || it->second != v) return false;
    }
    return true;
}

ServiceSpec service_from_object(const nlohmann::json& obj) {
    ServiceSpec s;
    s.name = object_name(obj);
    object_labels(obj);
    if (!obj.contains("spec") || !obj["spec"].is_object())
        throw Error(where(obj) + ": spec is missing (spec.selector and spec.ports)");
    s.selector = label_map(obj, "/spec/selector", "spec.selector");
    if (s.selector.empty())
        throw Error(where(obj) +
                    ": spec.selector is missing (the labels of the pods it selects, e.g. "
                    "app: app-a; a Service without a selector is not supported)");
    nlohmann::json::json_pointer pp("/spec/ports");
    if (!obj.contains(pp)) throw Error(where(obj) + ": spec.ports is missing");
    const auto& ports = obj.at(pp);
    if (!ports.is_array() || ports.empty())
        throw Error(where(obj) + ": spec.ports must be a list of at least one port");
    for (size_t i = 0; i < ports.size(); i++) {
        std::string at = "/spec/ports/" + std::to_string(i);
        std::string field = "spec.ports[" + std::to_string(i) + "]";
        if (!ports[i].is_object()) throw Error(where(obj) + ": " + field + " must be an object");
        ServicePort p;
        int64_t port = int_at(obj, at + "/port", 0);
        if (port < 1 || port > 65535)
            throw Error(where(obj) + ": " + field + ".port " +
                        (port == 0 ? std::string("is missing") : std::to_string(port)) +
                        " (a port number 1-65535)");
        p.port = static_cast<uint16_t>(port);
        std::string proto = string_at(obj, at + "/protocol", "TCP");
        if (proto != "TCP")
            throw Error(where(obj) + ": " + field + ".protocol \"" + proto +
                        "\" is not supported (TCP)");
        p.name = string_at(obj, at + "/name");
        if (p.name.empty() && ports.size() > 1)
            throw Error(where(obj) + ": " + field +
                        ".name is missing (every port of a multi-port service needs a name)");
        for (const auto& other : s.ports) {
            if (!p.name.empty() && other.name == p.name)
                throw Error(where(obj) + ": " + field + ".name \"" + p.name + "\" names two ports");
            if (other.port == p.port)
                throw Error(where(obj) + ": " + field + ".port " + std::to_string(p.port) +
                            " is declared twice");
        }
        p.target_port = string_at(obj, at + "/targetPort", std::to_string(p.port));
        bool numeric =
            !p.target_port.empty() && std::all_of(p.target_port.begin(), p.target_port.end(),
                                                  [](char c) { return c >= '0' && c <= '9'; });
        if (numeric ? (p.target_port.size() > 5 || std::stoi(p.target_port) < 1 ||
                       std::stoi(p.target_port) > 65535)
                    : !label_name_ok(p.target_port, 15))
            throw Error(where(obj) + ": " + field + ".targetPort \"" + p.target_port +
                        "\" is neither a port number (1-65535) nor a container port name");
        s.ports.push_back(std::move(p));
    }
    return s;
}

std::string route_target_kind(const nlohmann::json& obj) {
    std::string kind = string_at(obj, "/spec/to/kind", "DeploymentConfig");
    if (kind != "Service" && kind != "DeploymentConfig" && kind != "Deployment")
        throw Error(where(obj) + ": spec.to.kind \"" + kind +
                    "\" is not supported (Service, DeploymentConfig, Deployment)");
    return kind;
}

bool deployment_config_change(const nlohmann::json& obj) {
    if (obj.value("kind", "") != "DeploymentConfig") return true;
    nlohmann::json::json_pointer tp("/spec/triggers");
    if (!obj.contains(tp)) return true;  // OpenShift's default: [ConfigChange]
    if (!obj.at(tp).is_array()) return true;
    for (const auto& t : obj.at(tp))
        if (t.is_object() && t.value("type", "") == "ConfigChange") return true;
    return false;
}

namespace {

void check_known(const nlohmann::json& obj, const nlohmann::json& node, const std::string& path,
                 const std::vector<std::string>& known, std::vector<std::string>& out) {
    if (!node.is_object()) return;
    for (const auto& [key, value] : node.items()) {
        if (std::find(known.begin(), known.end(), key) != known.end()) continue;
        std::string list;
        for (const auto& k : known)
            list += (list.empty() ? "" : ", ") + k;
        out.push_back(where(obj) + ": " + (path.empty() ? key : path + "." + key) +
                      " is not supported and is ignored (known: " + list + ")");
    }
}

}  // namespace

std::vector<std::string> unknown_field_warnings(const nlohmann::json& obj) {
    std::vector<std::string> out;
    std::string kind = obj.value("kind", "");
    check_known(obj, obj, "", {"apiVersion", "kind", "metadata", "spec", "status"}, out);
    if (obj.contains("metadata"))
        check_known(obj, obj["metadata"], "metadata",
                    {"name", "namespace", "labels", "annotations", "uid", "resourceVersion",
                     "creationTimestamp", "generation", "selfLink", "managedFields"},
                    out);
    if (!obj.contains("spec") || !obj["spec"].is_object()) return out;
    const auto& spec = obj["spec"];
    if (kind == "ImageStream") {
        check_known(obj, spec, "spec", {"tags", "lookupPolicy", "dockerImageRepository"}, out);
        if (spec.contains("lookupPolicy"))
            check_known(obj, spec["lookupPolicy"], "spec.lookupPolicy", {"local"}, out);
        if (spec.contains("tags") && spec["tags"].is_array())
            for (size_t i = 0; i < spec["tags"].size(); i++) {
                const auto& t = spec["tags"][i];
                std::string f = "spec.tags[" + std::to_string(i) + "]";
                check_known(obj, t, f,
                            {"name", "from", "importPolicy", "referencePolicy", "reference",
                             "annotations", "generation"},
                            out);
                if (t.is_object() && t.contains("from"))
                    check_known(obj, t["from"], f + ".from", {"kind", "name", "namespace"}, out);
                if (t.is_object() && t.contains("importPolicy"))
                    check_known(obj, t["importPolicy"], f + ".importPolicy",
                                {"scheduled", "insecure", "importMode"}, out);
            }
    } else if (kind == "Service") {
        check_known(obj, spec, "spec",
                    {"selector", "ports", "type", "clusterIP", "clusterIPs", "sessionAffinity",
                     "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"},
                    out);
        if (spec.contains("ports") && spec["ports"].is_array())
            for (size_t i = 0; i < spec["ports"].size(); i++)
                check_known(obj, spec["ports"][i], "spec.ports[" + std::to_string(i) + "]",
                            {"name", "port", "targetPort", "protocol"}, out);
    } else if (kind == "Route") {
        check_known(obj, spec, "spec", {"host", "to", "port", "wildcardPolicy"}, out);
        if (spec.contains("to"))
            check_known(obj, spec["to"], "spec.to", {"kind", "name", "weight"}, out);
        if (spec.contains("port")) check_known(obj, spec["port"], "spec.port", {"targetPort"}, out);
    } else if (kind == "BuildConfig") {
        check_known(obj, spec, "spec",
                    {"source", "strategy", "output", "triggers", "successfulBuildsHistoryLimit",
                     "failedBuildsHistoryLimit", "postCommit", "runPolicy", "resources",
                     "nodeSelector", "completionDeadlineSeconds", "serviceAccount"},
                    out);
        // Below spec: only what cascade acts on is known (the rest warns).
        auto sub = [&](const nlohmann::json& node,
                       const std::string& key) -> const nlohmann::json& {
            static const nlohmann::json none;
            return node.is_object() && node.contains(key) ? node[key] : none;
        };
        const auto& source = sub(spec, "source");
        check_known(obj, source, "spec.source",
                    {"type", "git", "contextDir", "dockerfile", "binary", "images"}, out);
        check_known(obj, sub(source, "git"), "spec.source.git", {"uri", "ref"}, out);
        const auto& strategy = sub(spec, "strategy");
        check_known(obj, strategy, "spec.strategy", {"type", "dockerStrategy"}, out);
        check_known(obj, sub(strategy, "dockerStrategy"), "spec.strategy.dockerStrategy",
                    {"from", "dockerfilePath", "buildArgs", "env", "noCache"}, out);
        check_known(obj, sub(spec, "output"), "spec.output", {"to"}, out);
        check_known(obj, sub(spec, "postCommit"), "spec.postCommit", {"script", "command", "args"},
                    out);
        const auto& triggers = sub(spec, "triggers");
        if (triggers.is_array())
            for (size_t i = 0; i < triggers.size(); i++) {
                std::string f = "spec.triggers[" + std::to_string(i) + "]";
                check_known(obj, triggers[i], f, {"type", "generic", "github", "imageChange"}, out);
                check_known(obj, sub(triggers[i], "generic"), f + ".generic",
                            {"secret", "secretReference"}, out);
                check_known(obj, sub(triggers[i], "github"), f + ".github",
                            {"secret", "secretReference"}, out);
                check_known(obj, sub(triggers[i], "imageChange"), f + ".imageChange",
                            {"from", "lastTriggeredImageID"}, out);
            }
    }
    return out;
}

}  // namespace cascade::cli
