// The OCI image format's JSON documents: descriptors, image manifests, image
// indexes and image configs, with (de)serialization.
//
// Documents received from elsewhere are kept as their exact bytes (see
// `Blob`): a digest is always over those bytes, never over a re-serialization.
// Documents cascade writes itself are serialized once by `to_json_bytes`,
// deterministically (sorted keys, no insignificant whitespace).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "oci/digest.hpp"

namespace cascade::oci {

using Annotations = std::map<std::string, std::string>;

inline constexpr std::string_view kAnnotationBaseName = "org.opencontainers.image.base.name";
inline constexpr std::string_view kAnnotationBaseDigest = "org.opencontainers.image.base.digest";
inline constexpr std::string_view kAnnotationRefName = "org.opencontainers.image.ref.name";
inline constexpr std::string_view kAnnotationCreated = "org.opencontainers.image.created";

struct Platform {
    std::string architecture;  // "amd64"
    std::string os;            // "linux"
    std::string variant;
    std::string os_version;
    std::vector<std::string> os_features;
    bool operator==(const Platform&) const = default;
};

struct Descriptor {
    std::string media_type;
    Digest digest;
    int64_t size = 0;
    std::vector<std::string> urls;
    Annotations annotations;
    std::optional<Platform> platform;
    std::string artifact_type;
    bool operator==(const Descriptor&) const = default;
};

struct Manifest {
    int schema_version = 2;
    std::string media_type;  // as in the document; OCI manifests may omit it
    std::string artifact_type;
    Descriptor config;
    std::vector<Descriptor> layers;
    std::optional<Descriptor> subject;
    Annotations annotations;
};

struct Index {
    int schema_version = 2;
    std::string media_type;
    std::string artifact_type;
    std::vector<Descriptor> manifests;
    std::optional<Descriptor> subject;
    Annotations annotations;
};

struct HealthConfig {
    std::vector<std::string> test;
    int64_t interval_ns = 0, timeout_ns = 0, start_period_ns = 0;
    int retries = 0;
    int64_t start_interval_ns = 0;
    bool operator==(const HealthConfig&) const = default;
};

// The "config" object inside an image config (the runtime defaults).
struct ContainerConfig {
    std::string user;
    std::vector<std::string> exposed_ports;  // "8080/tcp", sorted
    std::vector<std::string> env;            // "K=V"
    std::optional<std::vector<std::string>> entrypoint;
    std::optional<std::vector<std::string>> cmd;
    std::vector<std::string> volumes;  // sorted
    std::string working_dir;
    std::map<std::string, std::string> labels;
    std::string stop_signal;
    std::optional<std::vector<std::string>> shell;  // Docker extension
    std::optional<HealthConfig> healthcheck;        // Docker extension
    std::vector<std::string> on_build;              // Docker extension
    bool operator==(const ContainerConfig&) const = default;
};

struct HistoryEntry {
    std::string created;  // RFC 3339
    std::string created_by;
    std::string author;
    std::string comment;
    bool empty_layer = false;
    bool operator==(const HistoryEntry&) const = default;
};

struct ImageConfig {
    std::string created;  // RFC 3339, may be empty
    std::string author;
    std::string architecture = "amd64";
    std::string os = "linux";
    std::string variant;
    ContainerConfig config;
    std::vector<Digest> diff_ids;  // rootfs.diff_ids, type "layers"
    std::vector<HistoryEntry> history;
};

// JSON conversion. from_json functions throw cascade::Error naming the field
// that is missing or of the wrong type.
nlohmann::json to_json(const Descriptor&);
nlohmann::json to_json(const Platform&);
nlohmann::json to_json(const Manifest&);
nlohmann::json to_json(const Index&);
nlohmann::json to_json(const ImageConfig&);
Descriptor descriptor_from_json(const nlohmann::json&);
Manifest manifest_from_json(const nlohmann::json&);
Index index_from_json(const nlohmann::json&);
ImageConfig config_from_json(const nlohmann::json&);

// Parses bytes as JSON, then as the document; errors say what and where.
Manifest parse_manifest(std::string_view bytes);
Index parse_index(std::string_view bytes);
ImageConfig parse_config(std::string_view bytes);

// Canonical bytes for documents cascade writes: sorted keys, compact.
std::string to_json_bytes(const nlohmann::json&);

// The media type a manifest-like document declares, or, when it declares none,
// the one its shape implies ("manifests" → index, "config"+"layers" →
// manifest). Throws when the bytes are not JSON or not a manifest/index.
std::string detect_manifest_media_type(std::string_view bytes);

// A document with its exact bytes and the digest of those bytes.
struct Blob {
    std::string media_type;
    std::string bytes;
    Digest digest;
    static Blob of(std::string media_type, std::string bytes);
    Descriptor descriptor() const;
};

// Current time or SOURCE_DATE_EPOCH, as RFC 3339 UTC ("2024-01-02T03:04:05Z").
std::string rfc3339(int64_t unix_seconds);
// SOURCE_DATE_EPOCH if set and valid, else nullopt.
std::optional<int64_t> source_date_epoch();

}  // namespace cascade::oci
