// The daemon killed with SIGKILL in the middle of a garbage collection, at
// several points (during the mark, at the first removed file, half way
// through the files): after a restart no partial blob is visible, every tag
// points at a complete manifest, the history is intact, and a second
// collection finishes cleanly and leaves only what the tags use.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <future>
#include <set>
#include <thread>

#include "oci/fs.hpp"
#include "streams_push.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

class GcFault : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-gcfault-"};
    std::filesystem::path state = tmp.path() / "state";
    std::unique_ptr<test::Daemon> daemon;
    std::unique_ptr<test::Pusher> pusher;

    void SetUp() override {
        auto config = tmp.path() / "cascade.yaml";
        fs::write_file_atomic(config, "gc:\n  keepGenerations: 1\n  graceSeconds: 0\n");
        daemon = std::make_unique<test::Daemon>(
            state, 0, std::vector<std::string>{"--config", config.string()});
        pusher = std::make_unique<test::Pusher>(daemon->address(), tmp.path() / "push");
    }
    void TearDown() override {
        daemon.reset();
        test::cleanup_state_root(state);
    }
    std::filesystem::path blob_dir() const { return state / "blobs" / "blobs" / "sha256"; }
    size_t blob_files() const {
        size_t n = 0;
        std::error_code ec;
        for (auto it = std::filesystem::directory_iterator(blob_dir(), ec);
             !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
            n++;
        return n;
    }
    // Moves every tag of `repos` streams × `tags` to a new image: the old
    // generation becomes garbage (keepGenerations 1).
    void new_generation(int round, int repos, int tags) {
        std::vector<test::Pusher::Spec> specs;
        for (int r = 0; r < repos; r++)
            for (int t = 0; t < tags; t++)
                specs.push_back({"stream" + std::to_string(r), "t" + std::to_string(t),
                                 "round" + std::to_string(round) + "-" + std::to_string(r) + "-" +
                                     std::to_string(t),
                                 3, 2048});
        pusher->push(specs);
    }
    json streams() {
        auto r = test::http_get(daemon->port(), "/api/v1/imagestreams");
        EXPECT_TRUE(r && r->status == 200);
        auto list = json::parse(r->body);
        for (auto& item : list["items"])
            item.erase("metadata");  // only the tags and their history matter
        return list["items"];
    }
    // The invariants a kill at any point must keep.
    void check_consistent(const json& history_before) {
        // No partial blob: every file holds exactly the bytes its name says.
        for (const auto& e : std::filesystem::directory_iterator(blob_dir())) {
            auto name = "sha256:" + e.path().filename().string();
            EXPECT_EQ(oci::Digest::sha256_of_file(e.path().string()).str(), name)
                << "partial or corrupt blob file " << e.path();
        }
        // Every tag points at a complete manifest.
        auto now = streams();
        for (const auto& is : now)
            for (const auto& t : is["status"]["tags"]) {
                std::string repo = is["status"]["dockerImageRepository"];
                repo = repo.substr(repo.find('/') + 1);
                EXPECT_TRUE(test::image_complete(daemon->port(), repo, t["tag"]))
                    << repo << ":" << t["tag"];
            }
        // The history is intact.
        EXPECT_EQ(now, history_before);
    }
};

TEST_F(GcFault, SigkillDuringGcLeavesEveryTagCompleteAndTheNextGcFinishes) {
    const int repos = 8, tags = 10;  // 80 images of 4 blobs + manifest per generation
    new_generation(0, repos, tags);

    // Where each round kills: while the collection starts (the mark), at the
    // first removed file, half way through the files.
    struct Point {
        const char* name;
        size_t removed;  // kill once this many files are gone (0: at once)
    };
    const Point points[] = {{"mark", 0}, {"first file", 1}, {"half", repos * tags * 5 / 2}};
    int round = 1;
    for (const auto& point : points) {
        SCOPED_TRACE(point.name);
        new_generation(round++, repos, tags);  // the previous one is garbage now
        auto history = streams();
        size_t before = blob_files();
        auto gc = std::async(std::launch::async, [&] { return daemon->cli({"gc"}, 300s); });
        if (point.removed > 0)
            test::eventually([&] { return blob_files() + point.removed <= before; }, 60s);
        daemon->kill_hard();
        auto r = gc.get();
        daemon->start();
        std::printf("[ gc-fault ] kill at %s: %zu of %zu blob files were gone%s\n", point.name,
                    before - blob_files(), before,
                    r.exit_code == 0 ? " (the collection had finished)" : "");
        check_consistent(history);
    }

    // A full collection afterwards finishes, and a second one finds nothing.
    auto history = streams();
    auto r = daemon->cli({"gc"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    check_consistent(history);
    r = daemon->cli({"gc"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("freed: 0 manifests, 0 blobs"), std::string::npos) << r.out;
    // Only the current generation is left: 80 images × (3 layers + config + manifest).
    EXPECT_EQ(blob_files(), static_cast<size_t>(repos * tags * 5));
}

}  // namespace
