#include "runtime/volumes.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "oci/error.hpp"
#include "tests/runtime/runtime_support.hpp"

namespace cascade::runtime {
namespace {

using testing::read_text;
using testing::write_text;
namespace stdfs = std::filesystem;

class VolumeStoreTest : public testing::RuntimeTest {
  protected:
    stdfs::path root() const { return dir() / "volumes"; }
};

TEST_F(VolumeStoreTest, EnsureCreatesDataDirectoryOnce) {
    VolumeStore store(root());
    EXPECT_TRUE(store.list().empty());  // the root does not exist yet
    auto data = store.ensure("db-data");
    EXPECT_EQ(data, root() / "db-data" / "_data");
    struct stat st {};
    ASSERT_EQ(::stat(data.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0755u);
    write_text(data / "file", "kept");
    // A second ensure keeps the content.
    EXPECT_EQ(store.ensure("db-data"), data);
    EXPECT_EQ(read_text(data / "file"), "kept");
}

TEST_F(VolumeStoreTest, ListIsSortedAndRemoveDeletes) {
    VolumeStore store(root());
    store.ensure("b.vol");
    store.ensure("a_vol");
    store.ensure("0");
    stdfs::create_directories(root() / "Not-A-Volume");  // ignored
    EXPECT_EQ(store.list(), (std::vector<std::string>{"0", "a_vol", "b.vol"}));
    write_text(store.ensure("a_vol") / "x", "x");
    store.remove("a_vol");
    EXPECT_FALSE(stdfs::exists(root() / "a_vol"));
    EXPECT_EQ(store.list(), (std::vector<std::string>{"0", "b.vol"}));
    store.remove("never-existed");  // fine
}

TEST_F(VolumeStoreTest, InvalidNamesAreRefused) {
    VolumeStore store(root());
    for (const char* bad : {"", "..", ".hidden", "-x", "_x", "Upper", "a/b", "a b", "../etc"}) {
        try {
            store.ensure(bad);
            ADD_FAILURE() << "accepted \"" << bad << "\"";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("invalid volume name"), std::string::npos)
                << e.what();
        }
        EXPECT_THROW(store.remove(bad), Error) << bad;
    }
    EXPECT_THROW(store.ensure(std::string(129, 'a')), Error);
    EXPECT_NO_THROW(store.ensure(std::string(128, 'a')));
    EXPECT_FALSE(stdfs::exists(dir() / "etc"));
}

TEST_F(VolumeStoreTest, AFileInTheWayIsAClearError) {
    VolumeStore store(root());
    write_text(root() / "clash", "not a directory");
    try {
        store.ensure("clash");
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("not a directory"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace cascade::runtime
