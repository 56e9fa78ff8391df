// The layers a step mounts: deletions of earlier steps stay deleted (each
// cached layer dir keeps overlayfs whiteouts), and a step's upper dir becomes
// its layer's cached dir without unpacking the blob again.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "engine/builder.hpp"
#include "oci/fs.hpp"
#include "oci/image.hpp"
#include "registry/blob_store.hpp"
#include "registry/database.hpp"
#include "registry/store.hpp"
#include "runtime/rootfs.hpp"
#include "runtime/runc.hpp"
#include "support.hpp"
#include "tests/engine/builder_fixture.hpp"

using namespace cascade;

namespace {

namespace stdfs = std::filesystem;

using builder_testing::BuilderTest;

TEST_F(BuilderTest, LaterStepsDoNotSeeWhatEarlierStepsDeleted) {
    build_base();
    build(
        "FROM httpd-base\n"
        "RUN rm /bin/vi && mkdir -p /d/sub && echo x > /d/f && echo y > /d/sub/g\n"
        "RUN rm -rf /d && mkdir /d && echo new-$((40+2)) > /d/new\n"
        // The log also holds the instruction: print what it does not contain.
        "RUN if [ -e /bin/vi ] || [ -e /d/f ] || [ -e /d/sub ]; then echo STILL-$((1+1)); "
        "else echo GONE-$((1+1)); fi; cat /d/new\n");
    EXPECT_TRUE(logged("GONE-2"));
    EXPECT_FALSE(logged("STILL-2"));
    EXPECT_TRUE(logged("new-42"));
}

TEST_F(BuilderTest, AStepsUpperDirBecomesItsCachedLayer) {
    build_base();
    auto result = build("FROM httpd-base\nRUN echo hello > /hello && touch -d @2000000000 /late\n");
    auto manifest = manifest_of("app", result.manifest_digest);
    auto config = config_of(manifest);
    auto dir = layers.root() / config.diff_ids.back().encoded();
    ASSERT_TRUE(stdfs::is_directory(dir));
    struct stat st {};
    ASSERT_EQ(::lstat((dir / "hello").c_str(), &st), 0);
    // As the tar has it: times clamped to the build's epoch (0 here).
    EXPECT_EQ(st.st_mtim.tv_sec, 0);
    ASSERT_EQ(::lstat((dir / "late").c_str(), &st), 0);
    EXPECT_EQ(st.st_mtim.tv_sec, 0);
    // The next build mounts it as a lower.
    build("FROM app\nRUN cat /hello /hello | tr '\\n' +\n", "app2");
    EXPECT_TRUE(logged("hello+hello+"));
}

}  // namespace
