// HEALTHCHECK pieces: Go durations both ways, Go's %q, and the config a
// parsed instruction gives.
#include "engine/healthcheck.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "engine/dockerfile.hpp"
#include "oci/error.hpp"

namespace cascade::engine {
namespace {

std::string duration_error(std::string_view text) {
    try {
        parse_go_duration(text);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(GoDuration, ParsesWhatGoParses) {
    EXPECT_EQ(parse_go_duration("0"), 0);
    EXPECT_EQ(parse_go_duration("30s"), 30'000'000'000);
    EXPECT_EQ(parse_go_duration("1m30s"), 90'000'000'000);
    EXPECT_EQ(parse_go_duration("1.5h"), 5'400'000'000'000);
    EXPECT_EQ(parse_go_duration("500ms"), 500'000'000);
    EXPECT_EQ(parse_go_duration("10us"), 10'000);
    EXPECT_EQ(parse_go_duration("10\xC2\xB5s"), 10'000);
    EXPECT_EQ(parse_go_duration("7ns"), 7);
    EXPECT_EQ(parse_go_duration(".5s"), 500'000'000);
    EXPECT_EQ(parse_go_duration("-2s"), -2'000'000'000);
    EXPECT_EQ(parse_go_duration("+1h1m1s"), 3'661'000'000'000);
    EXPECT_EQ(duration_error("10"), "time: missing unit in duration \"10\"");
    EXPECT_EQ(duration_error(""), "time: invalid duration \"\"");
    EXPECT_EQ(duration_error("1d"), "time: unknown unit \"d\" in duration \"1d\"");
    EXPECT_EQ(duration_error("."), "time: invalid duration \".\"");
    EXPECT_EQ(duration_error("9999999999h"), "time: invalid duration \"9999999999h\"");
}

TEST(GoDuration, PrintsAsGoPrintsIt) {
    EXPECT_EQ(go_duration(0), "0s");
    EXPECT_EQ(go_duration(3'000'000'000), "3s");
    EXPECT_EQ(go_duration(300'000'000'000), "5m0s");
    EXPECT_EQ(go_duration(3'600'000'000'000), "1h0m0s");
    EXPECT_EQ(go_duration(1'500'000'000), "1.5s");
    EXPECT_EQ(go_duration(500'000'000), "500ms");
    EXPECT_EQ(go_duration(1'500'000), "1.5ms");
    EXPECT_EQ(go_duration(10'000), "10\xC2\xB5s");
    EXPECT_EQ(go_duration(7), "7ns");
    EXPECT_EQ(go_duration(-90'000'000'000), "-1m30s");
    for (int64_t d : {int64_t{1}, int64_t{999'999'999}, int64_t{86'400'000'000'123},
                      std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()})
        EXPECT_EQ(parse_go_duration(go_duration(d)), d) << go_duration(d);
}

TEST(GoQuote, StringsAndRunes) {
    EXPECT_EQ(go_quote("curl -f \"x\"\\\n\t\x01\xC3\xA9\xFF"),
              "\"curl -f \\\"x\\\"\\\\\\n\\t\\x01\xC3\xA9\\xff\"");
    EXPECT_EQ(go_quote_rune(0), "'\\x00'");
    EXPECT_EQ(go_quote_rune(3), "'\\x03'");
    EXPECT_EQ(go_quote_rune(10), "'\\n'");
    EXPECT_EQ(go_quote_rune(39), "'\\''");
    EXPECT_EQ(go_quote_rune(65), "'A'");
    EXPECT_EQ(go_quote_rune(0x80), "'\\u0080'");
}

TEST(Healthcheck, FromParsedInstructions) {
    auto df = Dockerfile::parse(
        "FROM a\n"
        "HEALTHCHECK --interval=30s --retries=5 CMD [\"/check\"]\n"
        "HEALTHCHECK none\n"
        "HEALTHCHECK --interval=0 --timeout= CMD exit 0\n");
    const auto& ins = df.stages.at(0).instructions;
    auto exec = parse_healthcheck(ins[0], "Dockerfile:2");
    EXPECT_EQ(exec.test, (std::vector<std::string>{"CMD", "/check"}));
    EXPECT_EQ(exec.interval_ns, 30'000'000'000);
    EXPECT_EQ(exec.retries, 5);
    EXPECT_EQ(healthcheck_history(exec),
              "HEALTHCHECK &{[\"CMD\" \"/check\"] \"30s\" \"0s\" \"0s\" \"0s\" '\\x05'}");
    EXPECT_EQ(parse_healthcheck(ins[1], "Dockerfile:3").test, (std::vector<std::string>{"NONE"}));
    auto shell = parse_healthcheck(ins[2], "Dockerfile:4");
    EXPECT_EQ(shell.test, (std::vector<std::string>{"CMD-SHELL", "exit 0"}));
    EXPECT_EQ(shell.interval_ns, 0);
}

}  // namespace
}  // namespace cascade::engine
