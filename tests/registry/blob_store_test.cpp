#include "registry/blob_store.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <set>
#include <thread>

#include "oci/error.hpp"
#include "oci/fs.hpp"

namespace cascade::registry {
namespace {

namespace stdfs = std::filesystem;

size_t count_entries(const stdfs::path& dir) {
    size_t n = 0;
    for ([[maybe_unused]] auto& e : stdfs::directory_iterator(dir))
        n++;
    return n;
}

class BlobStoreTest : public ::testing::Test {
  protected:
    fs::TempDir tmp;
    BlobStore store{tmp.path() / "root"};
};

TEST_F(BlobStoreTest, PutStoresBytesUnderTheirDigest) {
    std::string data = "hello blobs";
    auto d = store.put(data);
    EXPECT_EQ(d, oci::Digest::sha256_of(data));
    EXPECT_TRUE(store.has(d));
    EXPECT_EQ(store.read(d), data);
    EXPECT_EQ(store.size(d), static_cast<int64_t>(data.size()));
    EXPECT_EQ(store.path(d), tmp.path() / "root" / "blobs" / "sha256" / d.encoded());
    EXPECT_EQ(fs::read_file(store.path(d)), data);
    EXPECT_EQ(count_entries(store.ingest_dir()), 0u) << "ingest files left behind";
}

TEST_F(BlobStoreTest, WriteIsInvisibleUntilCommit) {
    std::string data(100000, 'a');
    auto d = oci::Digest::sha256_of(data);
    BlobWriter w = store.begin();
    w.write(data.substr(0, 50000));
    w.write(data.substr(50000));
    EXPECT_EQ(w.size(), 100000);
    EXPECT_FALSE(store.has(d));
    EXPECT_FALSE(stdfs::exists(store.path(d)));
    EXPECT_TRUE(stdfs::exists(w.temp_path()));
    EXPECT_EQ(w.temp_path().parent_path(), store.ingest_dir());
    EXPECT_EQ(w.commit(d, 100000), d);
    EXPECT_TRUE(store.has(d));
    EXPECT_EQ(store.read(d), data);
    EXPECT_FALSE(stdfs::exists(w.temp_path()));
    struct stat st;
    ASSERT_EQ(::stat(store.path(d).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0644u);
}

TEST_F(BlobStoreTest, DigestMismatchLeavesNothing) {
    auto wrong = oci::Digest::sha256_of("something else");
    BlobWriter w = store.begin();
    w.write("the real content");
    auto temp = w.temp_path();
    try {
        w.commit(wrong);
        FAIL() << "commit with a wrong digest succeeded";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("digest mismatch: expected " + wrong.str()),
                  std::string::npos)
            << e.what();
        EXPECT_NE(std::string(e.what()).find(oci::Digest::sha256_of("the real content").str()),
                  std::string::npos)
            << e.what();
    }
    EXPECT_FALSE(store.has(wrong));
    EXPECT_FALSE(store.has(oci::Digest::sha256_of("the real content")));
    EXPECT_FALSE(stdfs::exists(temp));
    EXPECT_EQ(count_entries(store.ingest_dir()), 0u);
    EXPECT_TRUE(store.list().empty());
}

TEST_F(BlobStoreTest, SizeMismatchLeavesNothing) {
    std::string data = "twelve bytes";
    auto d = oci::Digest::sha256_of(data);
    BlobWriter w = store.begin();
    w.write(data);
    EXPECT_THROW(w.commit(d, 13), Error);
    EXPECT_FALSE(store.has(d));
    EXPECT_EQ(count_entries(store.ingest_dir()), 0u);
}

TEST_F(BlobStoreTest, AbandonedWriterRemovesItsTempFile) {
    stdfs::path temp;
    {
        BlobWriter w = store.begin();
        w.write("never committed");
        temp = w.temp_path();
        EXPECT_TRUE(stdfs::exists(temp));
    }
    EXPECT_FALSE(stdfs::exists(temp));
    EXPECT_TRUE(store.list().empty());

    BlobWriter w = store.begin();
    w.write("aborted");
    w.abort();
    EXPECT_FALSE(stdfs::exists(w.temp_path()));
    EXPECT_THROW(w.commit(), Error);
}

TEST_F(BlobStoreTest, CommittingAnExistingBlobIsFine) {
    auto d1 = store.put("same");
    auto d2 = store.put("same");
    EXPECT_EQ(d1, d2);
    EXPECT_EQ(store.read(d1), "same");
    EXPECT_EQ(store.list().size(), 1u);
    EXPECT_EQ(count_entries(store.ingest_dir()), 0u);
}

TEST_F(BlobStoreTest, ConcurrentIdenticalCommitsAllSucceed) {
    std::string data(1 << 20, '\0');
    for (size_t i = 0; i < data.size(); i++)
        data[i] = static_cast<char>(i * 7 + 3);
    auto expected = oci::Digest::sha256_of(data);
    constexpr int kThreads = 8;
    std::vector<std::thread> threads;
    std::vector<std::string> errors(kThreads);
    std::vector<oci::Digest> results(kThreads);
    for (int t = 0; t < kThreads; t++)
        threads.emplace_back([&, t] {
            try {
                for (int round = 0; round < 5; round++) {
                    BlobWriter w = store.begin();
                    for (size_t off = 0; off < data.size(); off += 65536)
                        w.write(data.data() + off, 65536);
                    results[t] = w.commit(expected, static_cast<int64_t>(data.size()));
                }
            } catch (const std::exception& e) {
                errors[t] = e.what();
            }
        });
    for (auto& th : threads)
        th.join();
    for (int t = 0; t < kThreads; t++) {
        EXPECT_EQ(errors[t], "") << "thread " << t;
        EXPECT_EQ(results[t], expected);
    }
    EXPECT_EQ(store.list(), std::vector<oci::Digest>{expected});
    EXPECT_EQ(store.read(expected), data);
    EXPECT_EQ(count_entries(store.ingest_dir()), 0u);
}

TEST_F(BlobStoreTest, PutFileVerifiesExpectedDigest) {
    auto file = tmp.path() / "input";
    fs::write_file_atomic(file, "file content");
    auto d = store.put_file(file);
    EXPECT_EQ(d, oci::Digest::sha256_of("file content"));
    EXPECT_TRUE(store.has(d));
    EXPECT_TRUE(stdfs::exists(file)) << "put_file copies, the source stays";

    fs::write_file_atomic(file, "other content");
    EXPECT_THROW(store.put_file(file, d), Error);
    EXPECT_FALSE(store.has(oci::Digest::sha256_of("other content")));
    EXPECT_EQ(count_entries(store.ingest_dir()), 0u);
}

TEST_F(BlobStoreTest, AdoptFileMovesItIn) {
    auto file = store.ingest_dir() / "prepared";
    fs::write_file_atomic(file, "adopted bytes");
    auto d = oci::Digest::sha256_of("adopted bytes");
    store.adopt_file(file, d);
    EXPECT_FALSE(stdfs::exists(file));
    EXPECT_EQ(store.read(d), "adopted bytes");

    // Adopting a blob that is already there drops the new copy.
    fs::write_file_atomic(file, "adopted bytes");
    store.adopt_file(file, d);
    EXPECT_FALSE(stdfs::exists(file));
    EXPECT_EQ(store.list().size(), 1u);
}

TEST_F(BlobStoreTest, RemoveAndList) {
    auto a = store.put("a");
    auto b = store.put("b");
    auto listed = store.list();
    EXPECT_EQ(std::set<oci::Digest>(listed.begin(), listed.end()), (std::set<oci::Digest>{a, b}));
    EXPECT_TRUE(store.remove(a));
    EXPECT_FALSE(store.remove(a));
    EXPECT_FALSE(store.has(a));
    EXPECT_EQ(store.list(), std::vector<oci::Digest>{b});
    EXPECT_THROW(store.read(a), Error);
    EXPECT_FALSE(store.size(a).has_value());
}

TEST_F(BlobStoreTest, CleanupIngestRemovesOnlyOldFiles) {
    auto old_file = store.ingest_dir() / "blob-old";
    auto old_dir = store.ingest_dir() / "upload-old";
    fs::write_file_atomic(old_file, "stale");
    fs::make_dirs(old_dir);
    fs::write_file_atomic(old_dir / "data", "stale");
    struct timespec times[2] = {{::time(nullptr) - 7200, 0}, {::time(nullptr) - 7200, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, old_file.c_str(), times, 0), 0);
    ASSERT_EQ(::utimensat(AT_FDCWD, (old_dir / "data").c_str(), times, 0), 0);
    ASSERT_EQ(::utimensat(AT_FDCWD, old_dir.c_str(), times, 0), 0);

    BlobWriter fresh = store.begin();
    fresh.write("in flight");

    store.cleanup_ingest(3600);
    EXPECT_FALSE(stdfs::exists(old_file));
    EXPECT_FALSE(stdfs::exists(old_dir));
    EXPECT_TRUE(stdfs::exists(fresh.temp_path()));

    store.cleanup_ingest();
    EXPECT_EQ(count_entries(store.ingest_dir()), 0u);
}

TEST_F(BlobStoreTest, ReopeningSeesCommittedBlobs) {
    auto d = store.put("durable");
    BlobStore again(tmp.path() / "root");
    EXPECT_TRUE(again.has(d));
    EXPECT_EQ(again.read(d), "durable");
}

}  // namespace
}  // namespace cascade::registry
