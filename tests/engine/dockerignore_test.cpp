// .dockerignore: reading the file, Docker's pattern semantics (the examples
// of Docker's documentation, patternmatcher's cases), and the context a
// build sees through match_sources and copy_into.
#include "engine/dockerignore.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/copy.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"

namespace cascade::engine {
namespace {

namespace stdfs = std::filesystem;
using Strings = std::vector<std::string>;

bool excluded(const Strings& patterns, const std::string& path) {
    return DockerIgnore(patterns).excluded(path);
}

std::string parse_error(std::string_view text) {
    try {
        DockerIgnore::parse(text);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// ---------------------------------------------------------------------------
// Reading the file

TEST(DockerIgnoreRead, CommentsBlankLinesTrimmingAndCleaning) {
    auto lines = DockerIgnore::read_lines(
        "\xEF\xBB\xBF# comment\n"
        "\n"
        "   \n"
        "  *.log  \n"
        "/abs/path\n"
        "a//b/./c/../d/\n"
        "! keep.log\r\n"
        "  # not a comment: it does not start the line\n"
        "!/root.log\n"
        "/\n"
        "..\n");
    std::vector<std::pair<int, std::string>> want = {
        {4, "*.log"},
        {5, "abs/path"},
        {6, "a/b/d"},
        {7, "!keep.log"},
        {8, "# not a comment: it does not start the line"},
        {9, "!root.log"},
        {10, "/"},
        {11, ".."},
    };
    EXPECT_EQ(lines, want);
}

TEST(DockerIgnoreRead, InvalidPatternsNameTheLine) {
    EXPECT_EQ(parse_error("ok\n[z\n"),
              ".dockerignore:2: invalid pattern \"[z\": malformed character class (use [abc], "
              "[a-z] or [^abc]; escape a literal [ as \\[)");
    EXPECT_NE(parse_error("a\nb\n!\n").find(".dockerignore:3: invalid pattern \"!\""),
              std::string::npos);
    EXPECT_NE(parse_error("x\\").find("unescaped backslash"), std::string::npos);
    EXPECT_NE(parse_error("[]a]").find("malformed character class"), std::string::npos);
    EXPECT_NE(parse_error("[a-]").find("malformed character class"), std::string::npos);
    EXPECT_NE(parse_error("[z-a]").find("backwards"), std::string::npos);
    EXPECT_EQ(parse_error("[a-z]\n[^/]\n\\[x\\]\n*.[ch]\n"), "");
    auto ignore = DockerIgnore::parse("# c\n\n*.log\n!keep.log\n");
    ASSERT_EQ(ignore.patterns().size(), 2u);
    EXPECT_EQ(ignore.patterns()[1].line, 4);
    EXPECT_TRUE(ignore.patterns()[1].exclusion);
    EXPECT_EQ(ignore.patterns()[1].text, "keep.log");
}

// ---------------------------------------------------------------------------
// Docker's documented examples

TEST(DockerIgnoreMatch, DocumentationExamples) {
    const Strings patterns = {"*/temp*", "*/*/temp*", "temp?"};
    // */temp*: names starting with temp one level below the root.
    EXPECT_TRUE(excluded(patterns, "somedir/temporary.txt"));
    EXPECT_TRUE(excluded(patterns, "somedir/temp"));
    EXPECT_FALSE(excluded(patterns, "temporary.txt"));
    // */*/temp*: two levels below.
    EXPECT_TRUE(excluded(patterns, "somedir/subdir/temporary.txt"));
    EXPECT_FALSE(excluded(patterns, "a/b/c/temporary.txt"));
    // temp?: one character after temp, at the root.
    EXPECT_TRUE(excluded(patterns, "tempa"));
    EXPECT_TRUE(excluded(patterns, "tempb"));
    EXPECT_FALSE(excluded(patterns, "temp"));
    EXPECT_FALSE(excluded(patterns, "tempab"));
    EXPECT_FALSE(excluded({"temp?"}, "sub/tempa"));
}

TEST(DockerIgnoreMatch, DoubleStarMatchesAnyNumberOfDirectories) {
    const Strings go = {"**/*.go"};
    EXPECT_TRUE(excluded(go, "main.go"));
    EXPECT_TRUE(excluded(go, "a/main.go"));
    EXPECT_TRUE(excluded(go, "a/b/c/main.go"));
    EXPECT_FALSE(excluded(go, "main.go.txt"));
    EXPECT_FALSE(excluded(go, "a/main.gox"));
    // In the middle: zero or more directories.
    const Strings mid = {"a/**/z"};
    EXPECT_TRUE(excluded(mid, "a/z"));
    EXPECT_TRUE(excluded(mid, "a/b/z"));
    EXPECT_TRUE(excluded(mid, "a/b/c/z"));
    EXPECT_FALSE(excluded(mid, "b/z"));
    // At the end: everything below.
    const Strings tail = {"build/**"};
    EXPECT_TRUE(excluded(tail, "build/x"));
    EXPECT_TRUE(excluded(tail, "build/x/y"));
    EXPECT_FALSE(excluded(tail, "build"));
    EXPECT_FALSE(excluded(tail, "builder/x"));
    // Alone: everything.
    EXPECT_TRUE(excluded({"**"}, "anything/at/all"));
    // "**" without a slash is a suffix match (patternmatcher's suffixMatch).
    EXPECT_TRUE(excluded({"**foo"}, "a/barfoo"));
    EXPECT_TRUE(excluded({"**/foo"}, "foo"));
    EXPECT_TRUE(excluded({"**/foo"}, "x/y/foo"));
    EXPECT_FALSE(excluded({"**/foo"}, "x/barfoo"));
}

TEST(DockerIgnoreMatch, ExceptionsAndOrdering) {
    // The last matching pattern wins.
    const Strings md = {"*.md", "!README.md"};
    EXPECT_TRUE(excluded(md, "CHANGES.md"));
    EXPECT_FALSE(excluded(md, "README.md"));
    EXPECT_FALSE(excluded(md, "docs/x.md"));  // *.md is for the root only

    const Strings secret_last = {"*.md", "!README*.md", "README-secret.md"};
    EXPECT_TRUE(excluded(secret_last, "CHANGES.md"));
    EXPECT_FALSE(excluded(secret_last, "README.md"));
    EXPECT_FALSE(excluded(secret_last, "README-public.md"));
    EXPECT_TRUE(excluded(secret_last, "README-secret.md"));

    const Strings secret_middle = {"*.md", "README-secret.md", "!README*.md"};
    EXPECT_FALSE(excluded(secret_middle, "README-secret.md"));
    EXPECT_FALSE(excluded(secret_middle, "README.md"));
    EXPECT_TRUE(excluded(secret_middle, "CHANGES.md"));
    // An exception before the exclusion has no effect.
    EXPECT_TRUE(excluded({"!README.md", "*.md"}, "README.md"));
}

TEST(DockerIgnoreMatch, ParentDirectoriesExcludeTheirContents) {
    const Strings patterns = {"node_modules", "logs/*"};
    EXPECT_TRUE(excluded(patterns, "node_modules"));
    EXPECT_TRUE(excluded(patterns, "node_modules/a/b.js"));
    EXPECT_FALSE(excluded(patterns, "src/node_modules"));
    EXPECT_TRUE(excluded(patterns, "logs/today/x.log"));
    EXPECT_FALSE(excluded(patterns, "logs"));
    // An exception inside an excluded directory.
    const Strings keep = {"docs", "!docs/keep.md"};
    EXPECT_TRUE(excluded(keep, "docs/other.md"));
    EXPECT_FALSE(excluded(keep, "docs/keep.md"));
    EXPECT_TRUE(excluded(keep, "docs"));
}

TEST(DockerIgnoreMatch, WildcardsClassesAndEscapes) {
    EXPECT_TRUE(excluded({"*"}, "anything"));
    EXPECT_TRUE(excluded({"*"}, "a/b"));  // through the parent "a"
    EXPECT_FALSE(excluded({"a*b"}, "a/b"));
    EXPECT_TRUE(excluded({"a?c"}, "abc"));
    EXPECT_FALSE(excluded({"a?c"}, "a/c"));
    EXPECT_TRUE(excluded({"a?c"},
                         "a\xC3\xA9"
                         "c"));  // ? is one character, not one byte
    EXPECT_TRUE(excluded({"file[0-9].txt"}, "file7.txt"));
    EXPECT_FALSE(excluded({"file[0-9].txt"}, "filex.txt"));
    EXPECT_TRUE(excluded({"file[^0-9].txt"}, "filex.txt"));
    EXPECT_FALSE(excluded({"file[^0-9].txt"}, "file7.txt"));
    EXPECT_TRUE(excluded({"[ab]c"}, "bc"));
    EXPECT_TRUE(excluded({"\\*star"}, "*star"));
    EXPECT_FALSE(excluded({"\\*star"}, "xstar"));
    EXPECT_TRUE(excluded({"q\\?"}, "q?"));
    EXPECT_FALSE(excluded({"q\\?"}, "qx"));
    EXPECT_TRUE(excluded({"\\[x\\]"}, "[x]"));
    // Regexp characters are literal.
    EXPECT_TRUE(excluded({"a.b+(c)|{d}$"}, "a.b+(c)|{d}$"));
    EXPECT_FALSE(excluded({"a.b"}, "axb"));
    // Leading "/" and "./" mean the root; cleaning applies.
    EXPECT_TRUE(excluded(Strings{DockerIgnore::read_lines("/secret\n").at(0).second}, "secret"));
    EXPECT_TRUE(excluded(Strings{"./a/../b"}, "b"));
}

TEST(DockerIgnoreMatch, NoBlowUpOnManyStars) {
    std::string pattern;
    for (int i = 0; i < 40; i++)
        pattern += "*a";
    pattern += "*b";
    std::string path(5000, 'a');
    EXPECT_FALSE(excluded({pattern}, path));
    EXPECT_TRUE(excluded({pattern}, path + "b"));
}

TEST(DockerIgnoreMatch, WalkIntoExcludedDirectories) {
    DockerIgnore prefix({"docs", "vendor", "!docs/keep/**"});
    EXPECT_TRUE(prefix.walks_into("docs"));
    EXPECT_TRUE(prefix.walks_into("docs/keep"));
    EXPECT_FALSE(prefix.walks_into("vendor"));
    EXPECT_FALSE(prefix.walks_into("docs/other"));
    DockerIgnore none({"docs"});
    EXPECT_FALSE(none.walks_into("docs"));
    // An exception with wildcards could match anywhere: every excluded
    // directory is looked into.
    DockerIgnore wild({"vendor", "!**/LICENSE"});
    EXPECT_TRUE(wild.walks_into("vendor"));
}

// Inputs dockerignore_fuzz found.
TEST(DockerIgnoreRegression, LineThatCleansToBlankIsNoPattern) {
    // "/\r/" cleans to "\r", which PatternMatcher trims away.
    const std::string input("/\r/\nW(\xa5\xa4mc", 10);
    auto ignore = DockerIgnore::parse(input);
    ASSERT_EQ(ignore.patterns().size(), 1u);
    EXPECT_EQ(ignore.patterns()[0].text, "W(\xa5\xa4mc");
    EXPECT_EQ(ignore.patterns()[0].line, 2);
    EXPECT_TRUE(ignore.excluded("W(\xa5\xa4mc"));
}

// ---------------------------------------------------------------------------
// The context a build sees

class ContextFilterTest : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-dockerignore-"};
    stdfs::path context = tmp.path() / "context";

    void write(const std::string& rel, const std::string& text = "x") {
        auto path = context / rel;
        stdfs::create_directories(path.parent_path());
        std::ofstream(path) << text;
    }

    // match_sources over `pattern` through a root filtered by `ignore`.
    Strings matched(const std::string& ignore, const std::string& pattern) {
        RootDir root(context, "the build context");
        auto filter = std::make_shared<ContextFilter>(DockerIgnore::parse(ignore));
        root.set_filter(
            [filter, &root](const std::string& rel) { return filter->hidden(root, rel); });
        return match_sources(root, pattern);
    }

    // Every path copy_into(".") writes, relative and sorted.
    Strings copied(const std::string& ignore) {
        auto out = tmp.path() / "out";
        stdfs::remove_all(out);
        stdfs::create_directories(out);
        RootDir root(context, "the build context");
        auto filter = std::make_shared<ContextFilter>(DockerIgnore::parse(ignore));
        root.set_filter(
            [filter, &root](const std::string& rel) { return filter->hidden(root, rel); });
        RootDir to(out, "the output");
        for (const auto& source : match_sources(root, "."))
            copy_into(root, source, to, "/", true, CopyOptions{});
        Strings paths;
        for (const auto& entry : stdfs::recursive_directory_iterator(out))
            paths.push_back(stdfs::relative(entry.path(), out).string());
        std::sort(paths.begin(), paths.end());
        return paths;
    }

    void SetUp() override {
        write("Dockerfile", "FROM scratch\n");
        write(".dockerignore");
        write("README.md");
        write("CHANGES.md");
        write("main.go");
        write("src/app.go");
        write("src/app.c");
        write("docs/keep.md");
        write("docs/other.md");
        write("docs/deep/x.md");
        write("vendor/lib/LICENSE");
        write("vendor/lib/code.c");
        write("logs/today/a.log");
        stdfs::create_directories(context / "empty");
    }
};

TEST_F(ContextFilterTest, CopyOfTheWholeContextSkipsIgnoredFiles) {
    EXPECT_EQ(
        copied("*.md\n!README.md\n**/*.go\nvendor\nlogs/*\n"),
        (Strings{".dockerignore", "Dockerfile", "README.md", "docs", "docs/deep", "docs/deep/x.md",
                 "docs/keep.md", "docs/other.md", "empty", "logs", "src", "src/app.c"}));
}

TEST_F(ContextFilterTest, ExcludedDirectoryWithAnExceptionInside) {
    // docs stays (with keep.md only); vendor is never looked into.
    EXPECT_EQ(copied("docs\nvendor\n!docs/keep.md\n"),
              (Strings{".dockerignore", "CHANGES.md", "Dockerfile", "README.md", "docs",
                       "docs/keep.md", "empty", "logs", "logs/today", "logs/today/a.log", "main.go",
                       "src", "src/app.c", "src/app.go"}));
    // A wildcard exception is looked for in every excluded directory.
    EXPECT_EQ(copied("vendor\ndocs\nsrc\nlogs\n!**/LICENSE\n"),
              (Strings{".dockerignore", "CHANGES.md", "Dockerfile", "README.md", "empty", "main.go",
                       "vendor", "vendor/lib", "vendor/lib/LICENSE"}));
    // An excluded directory whose exception matches nothing there is gone.
    EXPECT_EQ(copied("*\n!docs/nothing\n!main.go\n"), (Strings{"main.go"}));
}

TEST_F(ContextFilterTest, DockerfileAndDockerignoreCanBeIgnoredToo) {
    EXPECT_EQ(copied("Dockerfile\n.dockerignore\n*.md\ndocs\nvendor\nlogs\nsrc\nempty\n"),
              (Strings{"main.go"}));
}

TEST_F(ContextFilterTest, MatchSourcesSeesOnlyTheContext) {
    EXPECT_EQ(matched("*.md\n!README.md\n", "*.md"), (Strings{"README.md"}));
    EXPECT_EQ(matched("docs\n!docs/keep.md\n", "docs/*"), (Strings{"docs/keep.md"}));
    EXPECT_EQ(matched("docs\n", "*"),
              (Strings{".dockerignore", "CHANGES.md", "Dockerfile", "README.md", "empty", "logs",
                       "main.go", "src", "vendor"}));
    // A named source that is ignored is an error that says why.
    try {
        matched("src/app.go\n", "src/app.go");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("is excluded from the build context by .dockerignore"),
                  std::string::npos)
            << e.what();
    }
    try {
        matched("vendor\n", "vendor/lib/LICENSE");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("excluded"), std::string::npos) << e.what();
    }
    // A missing file is still "not found".
    try {
        matched("vendor\n", "nope.txt");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos) << e.what();
    }
}

TEST_F(ContextFilterTest, LoadPrefersTheDockerfileSpecificFile) {
    EXPECT_FALSE(load_dockerignore(tmp.path() / "nowhere", "Dockerfile"));
    write(".dockerignore", "*.md\n");
    auto common = load_dockerignore(context, "Dockerfile");
    ASSERT_TRUE(common);
    EXPECT_TRUE(common->excluded("README.md"));
    write("build/app.Dockerfile", "FROM scratch\n");
    write("build/app.Dockerfile.dockerignore", "*.go\n");
    auto specific = load_dockerignore(context, "build/app.Dockerfile");
    ASSERT_TRUE(specific);
    EXPECT_FALSE(specific->excluded("README.md"));
    EXPECT_TRUE(specific->excluded("main.go"));
    write(".dockerignore", "[\n");
    try {
        load_dockerignore(context, "Dockerfile");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()).rfind(".dockerignore:1: invalid pattern \"[\"", 0), 0u)
            << e.what();
    }
}

}  // namespace
}  // namespace cascade::engine
