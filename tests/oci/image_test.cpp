#include "oci/image.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>

#include "oci/error.hpp"
#include "oci/media_types.hpp"

namespace cascade::oci {
namespace {

// Shaped like what registries serve: pretty-printed, Docker's key order.
const char* kDockerManifest = R"({
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1457,
      "digest": "sha256:a416a98b71e224a31ee99cff8e16063554498227d2b696152a9c3e0aa65e5824"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 2220094,
         "digest": "sha256:809d8e20e2e7b9ecbc2d0e1f5b4e8c6b8a5ad7ea5e1d3d26a8e4d5b9c0f2a6e1"
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
         "size": 5000,
         "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
         "urls": ["https://example.com/layer.tar.gz"]
      }
   ]
})";

const char* kOciManifest = R"({
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {
    "mediaType": "application/vnd.oci.image.config.v1+json",
    "digest": "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7",
    "size": 7023
  },
  "layers": [
    {
      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
      "digest": "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0",
      "size": 32654
    },
    {
      "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
      "digest": "sha256:ec4b8955958665577945c89419d1af06b5f7636b4ac3da7f12184802ad867736",
      "size": 73109,
      "annotations": {"org.opencontainers.image.title": "layer2"}
    }
  ],
  "subject": {
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
    "size": 1234
  },
  "annotations": {
    "com.example.key1": "value1",
    "org.opencontainers.image.base.name": "docker.io/library/busybox:latest"
  }
})";

const char* kOciIndex = R"({
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "size": 7143,
      "digest": "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f",
      "platform": {"architecture": "ppc64le", "os": "linux"}
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "size": 7682,
      "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
      "platform": {
        "architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1457",
        "os.features": ["win32k"]
      }
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "size": 700,
      "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000001",
      "platform": {"architecture": "arm", "os": "linux", "variant": "v7"},
      "annotations": {"org.opencontainers.image.ref.name": "arm"}
    }
  ],
  "annotations": {"com.example.key1": "value1"}
})";

const char* kDockerManifestList = R"({
  "schemaVersion": 2,
  "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
  "manifests": [
    {
      "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
      "size": 7143,
      "digest": "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f",
      "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}
    }
  ]
})";

// A config as `docker build` writes it: nulls, extra fields, container_config.
const char* kDockerConfig =
    R"({"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"Image":"sha256:0b7d1ab3e4e1e7d9c07f6d1c9b0b8f3e0e2c6d6f4f7c4a1b2c3d4e5f6a7b8c9d","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"container":"b1ddbc10d5c1b6c4","container_config":{"Cmd":["/bin/sh","-c","#(nop) ","CMD [\"sh\"]"]},"created":"2023-07-18T23:19:33.655005962Z","docker_version":"20.10.23","history":[{"created":"2023-07-18T23:19:33.538571854Z","created_by":"/bin/sh -c #(nop) ADD file:7e9002edaafd4e45 in / "},{"created":"2023-07-18T23:19:33.655005962Z","created_by":"/bin/sh -c #(nop)  CMD [\"sh\"]","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:3d24ee258efc3bfe4066a1a9fb83febf6dc0b1548dfe896161533668281c9f4f"]}})";

// A config as buildah writes it (OCI format), with Docker extensions.
const char* kBuildahConfig = R"({
  "created": "2024-03-01T10:00:00.123456789Z",
  "architecture": "arm64",
  "variant": "v8",
  "os": "linux",
  "config": {
    "User": "1001:0",
    "ExposedPorts": {"8080/tcp": {}, "443/tcp": {}},
    "Env": ["PATH=/usr/bin", "LANG=C.UTF-8"],
    "Entrypoint": ["/usr/bin/httpd"],
    "Cmd": ["-D", "FOREGROUND"],
    "Volumes": {"/var/www": {}},
    "WorkingDir": "/var/www",
    "Labels": {"io.buildah.version": "1.28.2", "maintainer": "x@example.com"},
    "StopSignal": "SIGWINCH",
    "Shell": ["/bin/bash", "-c"],
    "Healthcheck": {"Test": ["CMD-SHELL", "curl -f http://localhost/"], "Interval": 30000000000,
                    "Timeout": 5000000000, "StartPeriod": 1000000000, "Retries": 3},
    "OnBuild": ["COPY . /app"]
  },
  "rootfs": {"type": "layers", "diff_ids": [
    "sha256:3d24ee258efc3bfe4066a1a9fb83febf6dc0b1548dfe896161533668281c9f4f",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
  "history": [
    {"created": "2024-03-01T09:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in /",
     "author": "base", "comment": "imported"},
    {"created": "2024-03-01T10:00:00Z", "created_by": "/bin/sh -c #(nop) EXPOSE 8080",
     "empty_layer": true}
  ]
})";

TEST(MediaTypes, Predicates) {
    EXPECT_TRUE(media::is_manifest(media::kImageManifest));
    EXPECT_TRUE(media::is_manifest(media::kDockerManifest));
    EXPECT_FALSE(media::is_manifest(media::kImageIndex));
    EXPECT_FALSE(media::is_manifest("application/vnd.docker.distribution.manifest.v1+prettyjws"));
    EXPECT_TRUE(media::is_index(media::kImageIndex));
    EXPECT_TRUE(media::is_index(media::kDockerManifestList));
    EXPECT_FALSE(media::is_index(media::kImageManifest));
    for (auto t : {media::kLayerTar, media::kLayerGzip, media::kLayerZstd, media::kDockerLayerGzip,
                   media::kDockerForeignLayerGzip})
        EXPECT_TRUE(media::is_layer(t)) << t;
    EXPECT_TRUE(media::is_layer("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"));
    EXPECT_FALSE(media::is_layer(media::kImageConfig));
    EXPECT_FALSE(media::is_layer(media::kEmptyJson));
    EXPECT_FALSE(media::is_layer("application/vnd.oci.image.layer.v1.tar+bzip2"));
    EXPECT_FALSE(media::is_layer(""));
}

TEST(Image, ParsesDockerSchema2Manifest) {
    Manifest m = parse_manifest(kDockerManifest);
    EXPECT_EQ(m.schema_version, 2);
    EXPECT_EQ(m.media_type, media::kDockerManifest);
    EXPECT_EQ(m.config.media_type, media::kDockerConfig);
    EXPECT_EQ(m.config.size, 1457);
    EXPECT_EQ(m.config.digest.encoded(),
              "a416a98b71e224a31ee99cff8e16063554498227d2b696152a9c3e0aa65e5824");
    ASSERT_EQ(m.layers.size(), 2u);
    EXPECT_EQ(m.layers[0].size, 2220094);
    EXPECT_EQ(m.layers[1].urls, std::vector<std::string>{"https://example.com/layer.tar.gz"});
    EXPECT_FALSE(m.subject);
    EXPECT_TRUE(m.annotations.empty());
    EXPECT_EQ(detect_manifest_media_type(kDockerManifest), media::kDockerManifest);
}

TEST(Image, ParsesOciManifestWithSubjectAndAnnotations) {
    Manifest m = parse_manifest(kOciManifest);
    EXPECT_EQ(m.media_type, media::kImageManifest);
    ASSERT_EQ(m.layers.size(), 2u);
    EXPECT_EQ(m.layers[1].media_type, media::kLayerZstd);
    EXPECT_EQ(m.layers[1].annotations.at("org.opencontainers.image.title"), "layer2");
    ASSERT_TRUE(m.subject);
    EXPECT_EQ(m.subject->size, 1234);
    EXPECT_EQ(m.annotations.at(std::string(kAnnotationBaseName)),
              "docker.io/library/busybox:latest");
}

TEST(Image, ManifestRoundTrip) {
    Manifest m = parse_manifest(kOciManifest);
    std::string bytes = to_json_bytes(to_json(m));
    Manifest again = parse_manifest(bytes);
    EXPECT_EQ(again.config, m.config);
    EXPECT_EQ(again.layers, m.layers);
    EXPECT_EQ(again.subject, m.subject);
    EXPECT_EQ(again.annotations, m.annotations);
    EXPECT_EQ(to_json_bytes(to_json(again)), bytes);  // stable
}

TEST(Image, ManifestCanonicalBytes) {
    Manifest m;
    m.media_type = std::string(media::kImageManifest);
    m.config = Blob::of(std::string(media::kImageConfig), "{}").descriptor();
    Descriptor layer;
    layer.media_type = std::string(media::kLayerGzip);
    layer.digest = Digest::sha256_of("layer");
    layer.size = 5;
    m.layers.push_back(layer);
    m.annotations[std::string(kAnnotationBaseDigest)] = Digest::sha256_of("base").str();
    std::string expected =
        R"({"annotations":{"org.opencontainers.image.base.digest":")" +
        Digest::sha256_of("base").str() + R"("},"config":{"digest":")" +
        Digest::sha256_of("{}").str() +
        R"(","mediaType":"application/vnd.oci.image.config.v1+json","size":2},"layers":[{"digest":")" +
        Digest::sha256_of("layer").str() +
        R"(","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":5}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2})";
    EXPECT_EQ(to_json_bytes(to_json(m)), expected);
}

TEST(Image, ParsesIndexesWithPlatforms) {
    Index x = parse_index(kOciIndex);
    EXPECT_EQ(x.media_type, media::kImageIndex);
    ASSERT_EQ(x.manifests.size(), 3u);
    ASSERT_TRUE(x.manifests[0].platform);
    EXPECT_EQ(x.manifests[0].platform->architecture, "ppc64le");
    ASSERT_TRUE(x.manifests[1].platform);
    EXPECT_EQ(x.manifests[1].platform->os, "windows");
    EXPECT_EQ(x.manifests[1].platform->os_version, "10.0.17763.1457");
    EXPECT_EQ(x.manifests[1].platform->os_features, std::vector<std::string>{"win32k"});
    EXPECT_EQ(x.manifests[2].platform->variant, "v7");
    EXPECT_EQ(x.manifests[2].annotations.at(std::string(kAnnotationRefName)), "arm");
    EXPECT_EQ(x.annotations.at("com.example.key1"), "value1");

    Index again = parse_index(to_json_bytes(to_json(x)));
    EXPECT_EQ(again.manifests, x.manifests);
    EXPECT_EQ(again.annotations, x.annotations);
    auto j = to_json(x);
    EXPECT_EQ(j["manifests"][1]["platform"]["os.version"], "10.0.17763.1457");
    EXPECT_FALSE(j["manifests"][0]["platform"].contains("variant"));
    EXPECT_FALSE(j["manifests"][0].contains("annotations"));

    Index list = parse_index(kDockerManifestList);
    EXPECT_EQ(list.media_type, media::kDockerManifestList);
    EXPECT_EQ(list.manifests[0].platform->variant, "v8");
    EXPECT_EQ(detect_manifest_media_type(kDockerManifestList), media::kDockerManifestList);
}

TEST(Image, BlobKeepsExactBytes) {
    Blob b = Blob::of(std::string(media::kDockerManifest), kDockerManifest);
    EXPECT_EQ(b.bytes, kDockerManifest);
    EXPECT_EQ(b.digest, Digest::sha256_of(kDockerManifest));
    Descriptor d = b.descriptor();
    EXPECT_EQ(d.media_type, media::kDockerManifest);
    EXPECT_EQ(d.digest, b.digest);
    EXPECT_EQ(d.size, static_cast<int64_t>(std::string(kDockerManifest).size()));
    // Re-serialising would give other bytes and another digest: the reason
    // received documents are kept as they came.
    std::string reserialised = to_json_bytes(nlohmann::json::parse(kDockerManifest));
    EXPECT_NE(Digest::sha256_of(reserialised), b.digest);
}

TEST(Image, ParsesDockerConfigWithNulls) {
    ImageConfig c = parse_config(kDockerConfig);
    EXPECT_EQ(c.architecture, "amd64");
    EXPECT_EQ(c.os, "linux");
    EXPECT_EQ(c.created, "2023-07-18T23:19:33.655005962Z");
    EXPECT_EQ(c.config.env,
              std::vector<std::string>{
                  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"});
    ASSERT_TRUE(c.config.cmd);
    EXPECT_EQ(*c.config.cmd, std::vector<std::string>{"sh"});
    EXPECT_FALSE(c.config.entrypoint);
    EXPECT_TRUE(c.config.volumes.empty());
    EXPECT_TRUE(c.config.labels.empty());
    ASSERT_EQ(c.diff_ids.size(), 1u);
    ASSERT_EQ(c.history.size(), 2u);
    EXPECT_FALSE(c.history[0].empty_layer);
    EXPECT_TRUE(c.history[1].empty_layer);

    // What cascade writes back omits the empty and null fields.
    auto j = to_json(c);
    EXPECT_FALSE(j["config"].contains("Entrypoint"));
    EXPECT_FALSE(j["config"].contains("Volumes"));
    EXPECT_FALSE(j["config"].contains("User"));
    EXPECT_FALSE(j["config"].contains("Hostname"));
    EXPECT_FALSE(j.contains("container_config"));
    EXPECT_FALSE(j["history"][0].contains("empty_layer"));
    EXPECT_EQ(j["history"][1]["empty_layer"], true);
}

TEST(Image, ParsesBuildahConfigAndRoundTrips) {
    ImageConfig c = parse_config(kBuildahConfig);
    EXPECT_EQ(c.variant, "v8");
    EXPECT_EQ(c.config.user, "1001:0");
    EXPECT_EQ(c.config.exposed_ports, (std::vector<std::string>{"443/tcp", "8080/tcp"}));
    EXPECT_EQ(c.config.volumes, std::vector<std::string>{"/var/www"});
    EXPECT_EQ(c.config.working_dir, "/var/www");
    EXPECT_EQ(c.config.labels.at("maintainer"), "x@example.com");
    EXPECT_EQ(c.config.stop_signal, "SIGWINCH");
    ASSERT_TRUE(c.config.shell);
    EXPECT_EQ(*c.config.shell, (std::vector<std::string>{"/bin/bash", "-c"}));
    ASSERT_TRUE(c.config.healthcheck);
    EXPECT_EQ(c.config.healthcheck->test,
              (std::vector<std::string>{"CMD-SHELL", "curl -f http://localhost/"}));
    EXPECT_EQ(c.config.healthcheck->interval_ns, 30000000000);
    EXPECT_EQ(c.config.healthcheck->timeout_ns, 5000000000);
    EXPECT_EQ(c.config.healthcheck->start_period_ns, 1000000000);
    EXPECT_EQ(c.config.healthcheck->retries, 3);
    EXPECT_EQ(c.config.on_build, std::vector<std::string>{"COPY . /app"});
    EXPECT_EQ(c.history[0].author, "base");
    EXPECT_EQ(c.history[0].comment, "imported");

    ImageConfig again = parse_config(to_json_bytes(to_json(c)));
    EXPECT_EQ(again.created, c.created);
    EXPECT_EQ(again.architecture, c.architecture);
    EXPECT_EQ(again.variant, c.variant);
    EXPECT_EQ(again.config, c.config);
    EXPECT_EQ(again.diff_ids, c.diff_ids);
    EXPECT_EQ(again.history, c.history);
}

TEST(Image, ConfigCanonicalBytesUseOciFieldNames) {
    ImageConfig c;
    c.created = "2024-01-02T03:04:05Z";
    c.author = "cascade";
    c.config.user = "app";
    c.config.exposed_ports = {"8080/tcp"};
    c.config.env = {"PATH=/bin", "A=b"};
    c.config.entrypoint = std::vector<std::string>{"/bin/sh", "-c"};
    c.config.cmd = std::vector<std::string>{"run"};
    c.config.volumes = {"/data"};
    c.config.working_dir = "/srv";
    c.config.labels = {{"a", "1"}};
    c.config.stop_signal = "SIGTERM";
    c.config.shell = std::vector<std::string>{"/bin/bash", "-c"};
    c.config.healthcheck = HealthConfig{{"CMD", "true"}, 30000000000, 0, 0, 3};
    c.config.on_build = {"RUN x"};
    c.diff_ids = {Digest::sha256_of("layer")};
    c.history = {{"2024-01-02T03:04:05Z", "RUN x", "", "c", false}, {"", "CMD", "", "", true}};
    std::string expected =
        R"({"architecture":"amd64","author":"cascade","config":{"Cmd":["run"],"Entrypoint":["/bin/sh","-c"],"Env":["PATH=/bin","A=b"],"ExposedPorts":{"8080/tcp":{}},"Healthcheck":{"Interval":30000000000,"Retries":3,"Test":["CMD","true"]},"Labels":{"a":"1"},"OnBuild":["RUN x"],"Shell":["/bin/bash","-c"],"StopSignal":"SIGTERM","User":"app","Volumes":{"/data":{}},"WorkingDir":"/srv"},"created":"2024-01-02T03:04:05Z","history":[{"comment":"c","created":"2024-01-02T03:04:05Z","created_by":"RUN x"},{"created_by":"CMD","empty_layer":true}],"os":"linux","rootfs":{"diff_ids":[")" +
        Digest::sha256_of("layer").str() + R"("],"type":"layers"}})";
    EXPECT_EQ(to_json_bytes(to_json(c)), expected);
}

TEST(Image, MinimalConfigOmitsEverythingOptional) {
    ImageConfig c;
    EXPECT_EQ(
        to_json_bytes(to_json(c)),
        R"({"architecture":"amd64","config":{},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}})");
    // An explicitly empty Entrypoint (ENTRYPOINT []) is kept distinct from unset.
    c.config.entrypoint = std::vector<std::string>{};
    ImageConfig again = parse_config(to_json_bytes(to_json(c)));
    ASSERT_TRUE(again.config.entrypoint);
    EXPECT_TRUE(again.config.entrypoint->empty());
    EXPECT_FALSE(again.config.cmd);
}

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
    try {
        fn();
        ADD_FAILURE() << "no exception";
    } catch (const Error& e) {
        for (const auto& p : parts)
            EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
                << "\"" << p << "\" not in: " << e.what();
    }
}

TEST(Image, ErrorsNameTheField) {
    expect_error([] { parse_manifest("{not json"); }, {"not valid JSON"});
    expect_error([] { parse_manifest(R"({"schemaVersion":2,"layers":[]})"); },
                 {"config", "missing"});
    expect_error(
        [] {
            parse_manifest(
                R"({"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":2},"layers":[{"mediaType":"a/b","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":"12"}]})");
        },
        {"layers[0].size", "integer", "string"});
    expect_error(
        [] {
            parse_manifest(
                R"({"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:xyz","size":2},"layers":[]})");
        },
        {"config.digest", "sha256:xyz"});
    expect_error([] { parse_manifest(R"({"schemaVersion":1,"name":"x","fsLayers":[]})"); },
                 {"schema 1"});
    expect_error([] { parse_manifest(R"({"schemaVersion":3,"config":{},"layers":[]})"); },
                 {"schemaVersion", "3"});
    expect_error([] { parse_manifest(R"([1,2])"); }, {"expected an object", "array"});
    expect_error(
        [] {
            parse_manifest(
                R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]})");
        },
        {"mediaType", "not an image manifest"});
    expect_error([] { parse_index(R"({"schemaVersion":2})"); }, {"manifests", "missing"});
    expect_error([] { parse_config(R"({"os":"linux","rootfs":{"type":"layers","diff_ids":[]}})"); },
                 {"architecture", "missing"});
    expect_error([] { parse_config(R"({"architecture":"amd64","os":"linux"})"); }, {"rootfs"});
    expect_error(
        [] {
            parse_config(
                R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:nope"]}})");
        },
        {"rootfs.diff_ids[0]"});
    expect_error(
        [] {
            parse_config(
                R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Env":["A=1",2]}})");
        },
        {"config.Env[1]"});
    expect_error(
        [] {
            parse_config(
                R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Labels":{"a":1}}})");
        },
        {"config.Labels.a"});
    expect_error(
        [] {
            parse_config(
                R"({"architecture":"amd64","os":"linux","rootfs":{"type":"x","diff_ids":[]}})");
        },
        {"rootfs.type", "layers"});
    expect_error([] { to_json(Descriptor{}); }, {"no digest"});
}

TEST(Image, DetectsMediaTypes) {
    EXPECT_EQ(detect_manifest_media_type(kOciManifest), media::kImageManifest);
    EXPECT_EQ(detect_manifest_media_type(kOciIndex), media::kImageIndex);
    // No mediaType: the shape decides.
    EXPECT_EQ(detect_manifest_media_type(R"({"schemaVersion":2,"config":{},"layers":[]})"),
              media::kImageManifest);
    EXPECT_EQ(detect_manifest_media_type(R"({"schemaVersion":2,"manifests":[]})"),
              media::kImageIndex);
    EXPECT_THROW(detect_manifest_media_type("nope"), Error);
    EXPECT_THROW(detect_manifest_media_type("[]"), Error);
    EXPECT_THROW(detect_manifest_media_type(R"({"schemaVersion":2})"), Error);
    EXPECT_THROW(detect_manifest_media_type(R"({"config":{},"layers":[],"manifests":[]})"), Error);
    EXPECT_THROW(detect_manifest_media_type(R"({"schemaVersion":1,"fsLayers":[]})"), Error);
    EXPECT_THROW(
        detect_manifest_media_type(
            R"({"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"})"),
        Error);
    EXPECT_THROW(
        detect_manifest_media_type(R"({"mediaType":"application/vnd.oci.image.config.v1+json"})"),
        Error);
}

TEST(Image, CanonicalJsonIsSortedAndCompact) {
    nlohmann::json j = {{"b", 1}, {"a", {{"d", true}, {"c", nullptr}}}, {"A", "x"}};
    EXPECT_EQ(to_json_bytes(j), R"({"A":"x","a":{"c":null,"d":true},"b":1})");
    nlohmann::json bad = {{"k", std::string("\xff\xfe")}};
    EXPECT_THROW(to_json_bytes(bad), Error);
}

TEST(Image, Rfc3339) {
    EXPECT_EQ(rfc3339(0), "1970-01-01T00:00:00Z");
    EXPECT_EQ(rfc3339(1700000000), "2023-11-14T22:13:20Z");
    EXPECT_EQ(rfc3339(951782400), "2000-02-29T00:00:00Z");
}

class SourceDateEpoch : public ::testing::Test {
  protected:
    void SetUp() override {
        if (const char* v = std::getenv("SOURCE_DATE_EPOCH")) saved_ = v;
    }
    void TearDown() override {
        if (saved_)
            setenv("SOURCE_DATE_EPOCH", saved_->c_str(), 1);
        else
            unsetenv("SOURCE_DATE_EPOCH");
    }
    std::optional<std::string> saved_;
};

TEST_F(SourceDateEpoch, ParsesOnlyPlainIntegers) {
    unsetenv("SOURCE_DATE_EPOCH");
    EXPECT_FALSE(source_date_epoch());
    setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
    EXPECT_EQ(source_date_epoch(), 1700000000);
    setenv("SOURCE_DATE_EPOCH", "0", 1);
    EXPECT_EQ(source_date_epoch(), 0);
    for (const char* bad : {"", "abc", "12a", "-5", "1.5", " 12", "99999999999999999999999"}) {
        setenv("SOURCE_DATE_EPOCH", bad, 1);
        EXPECT_FALSE(source_date_epoch()) << bad;
    }
}

}  // namespace
}  // namespace cascade::oci
