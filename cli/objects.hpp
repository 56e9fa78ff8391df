// Declared objects (Kubernetes-shaped: apiVersion/kind/metadata/spec, the
// subset of OpenShift's BuildConfig, DeploymentConfig, Route and ImageStream
// that the image-stream example uses) → the specs the controllers take.
//
// Errors name the object and field: `BuildConfig "app-a": spec.output.to.name
// is missing`.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/build_controller.hpp"
#include "registry/importer.hpp"
#include "runtime/deployment.hpp"

namespace cascade::cli {

// Reads a YAML or JSON file (one object, several YAML documents, or a List)
// or every *.yaml/*.yml/*.json file of a directory, in name order. Relative
// paths inside objects (BuildConfig spec.source.contextDir) are made absolute
// against the file's directory. Returns the objects, flattened.
std::vector<nlohmann::json> load_objects(const std::filesystem::path& path);

// Makes the relative paths of one object (BuildConfig spec.source.contextDir)
// absolute against base_dir, as load_objects does (for processed templates).
void resolve_object_paths(nlohmann::json& obj, const std::filesystem::path& base_dir);

// YAML text → JSON (YAML 1.2 core schema scalars: quoted → string; true/false,
// null/~, integers and floats typed).
std::vector<nlohmann::json> yaml_documents_to_json(const std::string& text);
// JSON → block YAML that yaml_documents_to_json reads back to the same value
// (strings that would read as another type are quoted; multi-line strings
// are literal blocks). Ends with a newline.
std::string json_to_yaml(const nlohmann::json& value);

// The kinds `apply` accepts, for error messages.
extern const std::vector<std::string> kSupportedKinds;

std::string object_kind(const nlohmann::json& obj);  // throws when missing
std::string object_name(const nlohmann::json& obj);  // metadata.name, throws when missing

engine::BuildConfigSpec build_config_from_object(const nlohmann::json& obj);
// A DeploymentConfig (apps.openshift.io/v1) or a Deployment (apps/v1): the
// image stream tag it follows (the ImageChange trigger's `from`, else
// containers[0].image), then every field cli/pod_template.hpp reads. Fields
// cascade does not act on are appended to `warnings` (when given) and ignored.
runtime::DeploymentSpec deployment_from_object(const nlohmann::json& obj,
                                               std::vector<std::string>* warnings = nullptr);
// spec.paused of a DeploymentConfig or Deployment (false when not set).
bool deployment_paused(const nlohmann::json& obj);
// spec.to.name, spec.host (the Host header on the shared HTTP port), and the
// annotations cascade.io/host-port and cascade.io/host-address (the route's
// own port).
runtime::RouteSpec route_from_object(const nlohmann::json& obj);
// ImageStream spec.tags[] that follow an image in another registry
// ({name, from: {kind: DockerImage, name: REF}, importPolicy: {scheduled,
// insecure}}) → what the importer takes. Tags without `from` are skipped.
std::vector<registry::ImportSpec> image_stream_imports_from_object(const nlohmann::json& obj);

// ImageStream spec.tags[] with from.kind ImageStreamTag: an alias that
// follows another stream tag (when the source moves, the alias moves to the
// same digest, cause "tag <source>"). A name without a stream ("latest" or
// ":latest") is a tag of the same stream.
struct ImageStreamAlias {
    std::string repository, tag;                // the alias
    std::string source_repository, source_tag;  // what it follows
};
std::vector<ImageStreamAlias> image_stream_aliases_from_object(const nlohmann::json& obj);
// ImageStream spec.lookupPolicy.local (false when not set). Accepted and
// shown; it changes nothing here (every name resolves through this registry).
bool image_stream_lookup_local(const nlohmann::json& obj);

// A Service (v1): the pods it selects by label, and its ports (TCP only).
struct ServicePort {
    std::string name;
    uint16_t port = 0;
    std::string target_port;  // a container port number or name; default: port
};
struct ServiceSpec {
    std::string name;
    std::map<std::string, std::string> selector;
    std::vector<ServicePort> ports;
};
ServiceSpec service_from_object(const nlohmann::json& obj);
// Whether `labels` carries every key/value of `selector` (an empty selector
// selects nothing).
bool selector_matches(const std::map<std::string, std::string>& selector,
                      const std::map<std::string, std::string>& labels);
// spec.to.kind of a Route: "Service", "DeploymentConfig" (also when missing)
// or "Deployment"; anything else throws, listing those.
std::string route_target_kind(const nlohmann::json& obj);

// A DeploymentConfig's ConfigChange trigger: present → a changed template
// rolls out; absent → it is recorded and rolls out with `rollout latest` (or
// the next image change). A Deployment always rolls out a changed template.
bool deployment_config_change(const nlohmann::json& obj);

// metadata.labels, checked against Kubernetes' label syntax (key: optional
// DNS-subdomain prefix and '/', then a name of up to 63 [A-Za-z0-9-_.]
// beginning and ending alphanumeric; value: empty or such a name). Throws
// naming the label.
std::map<std::string, std::string> object_labels(const nlohmann::json& obj);
// One warning per field cascade does not know, naming its path (apiVersion,
// kind, metadata and each kind's spec fields; a DeploymentConfig's spec is
// checked by deployment_from_object).
std::vector<std::string> unknown_field_warnings(const nlohmann::json& obj);

// "repo:tag" → {repo, tag}; a missing tag is "latest".
std::pair<std::string, std::string> split_stream_tag(const std::string& text);

}  // namespace cascade::cli
