// Parallel gzip (oci/pgzip.hpp) and multi-threaded layer compression: valid
// gzip for zlib, libarchive, gzip(1) and Go (umoci), and the same bytes for
// any number of threads.
#include <gtest/gtest.h>
#include <zlib.h>

#include <random>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/layer.hpp"
#include "oci/layout.hpp"
#include "oci/media_types.hpp"
#include "oci/pgzip.hpp"
#include "tests/oci/oci_test_util.hpp"
#include "tests/support/support.hpp"

namespace cascade::oci {
namespace {

using namespace testutil;

std::string gzip_parallel(const std::string& in, unsigned threads, int level = -1,
                          size_t block = ParallelGzip::kDefaultBlockSize, size_t piece = 100000) {
    std::string out;
    ParallelGzip gz([&](const void* d, size_t n) { out.append(static_cast<const char*>(d), n); },
                    level, threads, "test", block);
    for (size_t off = 0; off < in.size(); off += piece)
        gz.write(in.data() + off, std::min(piece, in.size() - off));
    gz.finish();
    EXPECT_EQ(gz.input_bytes(), in.size());
    return out;
}

// Inflates with zlib in gzip mode; fails the test on any error.
std::string gunzip(const std::string& gz) {
    z_stream zs{};
    EXPECT_EQ(inflateInit2(&zs, 15 + 16), Z_OK);
    std::string out;
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
    zs.avail_in = static_cast<uInt>(gz.size());
    char buf[1 << 16];
    int rc = Z_OK;
    while (rc == Z_OK) {
        zs.next_out = reinterpret_cast<Bytef*>(buf);
        zs.avail_out = sizeof buf;
        rc = inflate(&zs, Z_NO_FLUSH);
        out.append(buf, sizeof buf - zs.avail_out);
    }
    EXPECT_EQ(rc, Z_STREAM_END) << (zs.msg ? zs.msg : "");
    EXPECT_EQ(zs.avail_in, 0u) << "bytes after the gzip member";
    inflateEnd(&zs);
    return out;
}

std::string random_bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s)
        c = static_cast<char>(rng() & 0xff);
    return s;
}

// Text-like data with long-range repeats (exercises the dictionary).
std::string compressible_bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    const char* words[] = {"layer ", "cascade ", "overlay ", "gzip ", "block\n", "runc ", "tar "};
    std::string s;
    while (s.size() < n)
        s += words[rng() % 7];
    s.resize(n);
    return s;
}

void expect_gzip_t_accepts(const stdfs::path& file) {
    auto r = test::run({"gzip", "-t", file.string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(ParallelGzip, EmptyInputIsAValidGzipStream) {
    for (unsigned threads : {1u, 4u}) {
        auto gz = gzip_parallel("", threads);
        EXPECT_EQ(gunzip(gz), "");
        EXPECT_EQ(gz.substr(0, 4), std::string("\x1f\x8b\x08\x00", 4));
        EXPECT_EQ(gz.substr(4, 4), std::string(4, '\0')) << "MTIME must be 0";
    }
}

TEST(ParallelGzip, RoundTripsAndIsIndependentOfThreads) {
    const size_t block = 64 * 1024;
    std::vector<std::string> inputs = {
        "hello\n",
        std::string(block, 'x'),      // exactly one block
        std::string(3 * block, 'y'),  // a multiple of the block size
        random_bytes(3 * 1024 * 1024 + 17, 1),
        compressible_bytes(5 * 1024 * 1024 + 3, 2),
        random_bytes(100000, 3) + compressible_bytes(700000, 4) + random_bytes(90000, 5),
    };
    for (size_t i = 0; i < inputs.size(); i++) {
        const auto& in = inputs[i];
        auto one = gzip_parallel(in, 1, -1, block);
        auto four = gzip_parallel(in, 4, -1, block, 4099);  // other write sizes too
        auto three = gzip_parallel(in, 3, -1, block, 1 << 20);
        EXPECT_EQ(one, four) << "input " << i << ": bytes differ between 1 and 4 threads";
        EXPECT_EQ(one, three) << "input " << i;
        EXPECT_TRUE(gunzip(four) == in) << "input " << i << " does not round-trip";
    }
}

TEST(ParallelGzip, CompressesAboutAsWellAsPlainDeflate) {
    auto in = compressible_bytes(4 * 1024 * 1024, 7);
    auto ours = gzip_parallel(in, 2);
    uLongf bound = compressBound(in.size());
    std::string plain(bound, '\0');
    ASSERT_EQ(compress2(reinterpret_cast<Bytef*>(plain.data()), &bound,
                        reinterpret_cast<const Bytef*>(in.data()), in.size(), 6),
              Z_OK);
    // Blocks primed with the previous 32 KiB lose almost nothing.
    EXPECT_LT(ours.size(), bound + bound / 50 + 1024) << ours.size() << " vs " << bound;
}

TEST(ParallelGzip, GzipAndLibarchiveAcceptIt) {
    fs::TempDir tmp;
    auto in = random_bytes(1 << 20, 9) + compressible_bytes(3 << 20, 10);
    auto file = tmp.path() / "data.gz";
    fs::write_file_atomic(file, gzip_parallel(in, 4), 0644);
    expect_gzip_t_accepts(file);
    EXPECT_TRUE(decompress(file) == in);
}

TEST(ParallelGzip, RejectsBadLevels) {
    auto sink = [](const void*, size_t) {};
    EXPECT_THROW(ParallelGzip(sink, 10, 1, "x"), Error);
    EXPECT_THROW(ParallelGzip(sink, -2, 1, "x"), Error);
}

class LayerThreads : public ::testing::Test {
  protected:
    void SetUp() override {
        tree_ = tmp_.path() / "tree";
        put(tree_ / "random.bin", random_bytes(6 * 1024 * 1024 + 5, 11));
        put(tree_ / "text/log.txt", compressible_bytes(4 * 1024 * 1024, 12));
        for (int i = 0; i < 50; i++)
            put(tree_ / "many" / ("f" + std::to_string(i)), compressible_bytes(1000 + i * 97, i));
        put(tree_ / "empty", "");
        set_tree_mtime(tree_, 1700000000);
    }

    LayerWriteResult write(Compression c, unsigned threads, const std::string& name) {
        LayerWriteOptions o;
        o.compression = c;
        o.threads = threads;
        o.clamp_mtime = 1700000000;
        return write_layer(tree_, tmp_.path() / name, o);
    }

    fs::TempDir tmp_;
    stdfs::path tree_;
};

TEST_F(LayerThreads, GzipLayerIsTheSameWithOneAndFourThreads) {
    auto one = write(Compression::Gzip, 1, "one.tar.gz");
    auto four = write(Compression::Gzip, 4, "four.tar.gz");
    EXPECT_EQ(one.digest, four.digest);
    EXPECT_EQ(one.diff_id, four.diff_id);
    EXPECT_EQ(one.size, four.size);
    EXPECT_EQ(slurp(tmp_.path() / "one.tar.gz"), slurp(tmp_.path() / "four.tar.gz"));
    expect_gzip_t_accepts(tmp_.path() / "four.tar.gz");

    auto tar = decompress(tmp_.path() / "four.tar.gz");
    EXPECT_EQ(Digest::sha256_of(tar), four.diff_id);
    EXPECT_EQ(Digest::sha256_of(slurp(tmp_.path() / "four.tar.gz")), four.digest);
    auto entries = read_tar(tmp_.path() / "four.tar.gz");
    bool found = false;
    for (const auto& e : entries)
        if (e.name == "random.bin") {
            found = true;
            EXPECT_TRUE(e.content == slurp(tree_ / "random.bin"));
        }
    EXPECT_TRUE(found);
}

TEST_F(LayerThreads, ZstdLayerIsTheSameWithOneAndFourThreads) {
    auto one = write(Compression::Zstd, 1, "one.tar.zst");
    auto four = write(Compression::Zstd, 4, "four.tar.zst");
    EXPECT_EQ(one.digest, four.digest);
    EXPECT_EQ(one.diff_id, four.diff_id);
    EXPECT_EQ(Digest::sha256_of(decompress(tmp_.path() / "four.tar.zst")), four.diff_id);
}

// Go's gzip reader (umoci is written in Go) unpacks the multi-block layer
// and checks its diff ID.
TEST_F(LayerThreads, UmociUnpacksAParallelGzipLayer) {
    if (!test::have_program("umoci")) GTEST_SKIP() << "umoci is not installed";
    auto layer_file = tmp_.path() / "layer.tar.gz";
    LayerWriteOptions o;
    o.threads = 4;
    auto layer = write_layer(tree_, layer_file, o);
    auto layout_dir = tmp_.path() / "layout";
    auto layout = ImageLayout::open(layout_dir, true);
    layout.put_blob_file(layer_file, layer.digest);
    ImageConfig c;
    c.created = rfc3339(1700000000);
    c.diff_ids = {layer.diff_id};
    auto config = Blob::of(std::string(media::kImageConfig), to_json_bytes(to_json(c)));
    layout.put_blob(config.bytes);
    Manifest m;
    m.media_type = std::string(media::kImageManifest);
    m.config = config.descriptor();
    Descriptor ld;
    ld.media_type = layer.media_type;
    ld.digest = layer.digest;
    ld.size = layer.size;
    m.layers.push_back(ld);
    auto manifest = Blob::of(std::string(media::kImageManifest), to_json_bytes(to_json(m)));
    layout.put_blob(manifest.bytes);
    Descriptor md = manifest.descriptor();
    md.platform = Platform{"amd64", "linux", "", "", {}};
    layout.add_manifest(md, "v1");

    auto bundle = tmp_.path() / "bundle";
    auto r =
        test::run({"umoci", "unpack", "--image", layout_dir.string() + ":v1", bundle.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(slurp(bundle / "rootfs/random.bin") == slurp(tree_ / "random.bin"));
    EXPECT_TRUE(slurp(bundle / "rootfs/text/log.txt") == slurp(tree_ / "text/log.txt"));
}

}  // namespace
}  // namespace cascade::oci
