// A small but complete image written with cascade's own code, for checks by
// external validators and tools.
#pragma once

#include <filesystem>
#include <string>

#include "oci/image.hpp"
#include "oci/layer.hpp"
#include "oci/layout.hpp"
#include "oci/media_types.hpp"
#include "tests/oci/oci_test_util.hpp"

namespace cascade::oci::testutil {

struct SampleImage {
    Blob config;
    Blob manifest;
    LayerWriteResult layer;
    ImageConfig config_doc;
};

// Writes a one-layer image (gzip) into the layout at `layout_dir` (created),
// tagged `ref`. `scratch` is a directory for the layer's source tree.
inline SampleImage write_sample_image(const std::filesystem::path& layout_dir,
                                      const std::filesystem::path& scratch,
                                      const std::string& ref) {
    auto tree = scratch / "tree";
    put(tree / "hello.txt", "hello from cascade\n");
    put(tree / "usr/bin/app", "#!/bin/sh\necho app\n", 0755);
    std::filesystem::create_directories(tree / "var/lib/empty");
    std::filesystem::create_symlink("usr/bin", tree / "bin");

    auto layout = ImageLayout::open(layout_dir, true);
    LayerWriteOptions lo;
    lo.clamp_mtime = 1700000000;
    auto layer_file = scratch / "layer.tar.gz";
    SampleImage img;
    img.layer = write_layer(tree, layer_file, lo);
    layout.put_blob_file(layer_file, img.layer.digest);

    ImageConfig& c = img.config_doc;
    c.created = rfc3339(1700000000);
    c.author = "cascade tests";
    c.config.user = "1000:1000";
    c.config.env = {"PATH=/usr/bin:/bin", "GREETING=hello"};
    c.config.entrypoint = std::vector<std::string>{"/usr/bin/app"};
    c.config.cmd = std::vector<std::string>{"--serve"};
    c.config.exposed_ports = {"8080/tcp"};
    c.config.volumes = {"/var/lib/empty"};
    c.config.working_dir = "/";
    c.config.labels = {{"org.opencontainers.image.title", "sample"}};
    c.config.stop_signal = "SIGTERM";
    c.diff_ids = {img.layer.diff_id};
    c.history = {{rfc3339(1700000000), "COPY . /", "cascade", "", false},
                 {rfc3339(1700000000), "EXPOSE 8080/tcp", "", "", true}};
    img.config = Blob::of(std::string(media::kImageConfig), to_json_bytes(to_json(c)));
    layout.put_blob(img.config.bytes);

    Manifest m;
    m.media_type = std::string(media::kImageManifest);
    m.config = img.config.descriptor();
    Descriptor ld;
    ld.media_type = img.layer.media_type;
    ld.digest = img.layer.digest;
    ld.size = img.layer.size;
    m.layers.push_back(ld);
    m.annotations[std::string(kAnnotationBaseName)] = "docker.io/library/busybox:latest";
    m.annotations[std::string(kAnnotationBaseDigest)] = Digest::sha256_of("base").str();
    m.annotations[std::string(kAnnotationCreated)] = c.created;
    img.manifest = Blob::of(std::string(media::kImageManifest), to_json_bytes(to_json(m)));
    layout.put_blob(img.manifest.bytes);

    Descriptor md = img.manifest.descriptor();
    md.platform = Platform{"amd64", "linux", "", "", {}};
    layout.add_manifest(md, ref);
    return img;
}

}  // namespace cascade::oci::testutil
