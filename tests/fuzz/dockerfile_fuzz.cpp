// libFuzzer target for engine/dockerfile.hpp and engine/healthcheck.hpp: the
// input is a Dockerfile. Dockerfile::parse, the word expansion of every
// instruction's text (expand_word, expand_words, parse_key_values,
// parse_args, expand_heredoc), ONBUILD trigger parsing and HEALTHCHECK
// parsing throw nothing but cascade::Error and terminate; a parsed file has
// its instructions in line order with known keywords; a HEALTHCHECK's
// durations print and parse back to themselves.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "engine/dockerfile.hpp"
#include "engine/healthcheck.hpp"
#include "fuzz_check.hpp"
#include "oci/error.hpp"

namespace {

using namespace cascade;
using namespace cascade::engine;

using fuzz::check;
using fuzz::violated;

// Variables with values that themselves look like syntax.
const Lookup kVars = [](const std::string& name) -> std::optional<std::string> {
    if (name == "A") return std::string("a b");
    if (name == "B") return std::string("${A}$C\\'\"");
    if (name == "EMPTY") return std::string();
    if (name == "HOME") return std::string("/root");
    return std::nullopt;
};

template <typename Fn>
void tolerate_errors(Fn&& fn) {
    try {
        fn();
    } catch (const Error&) {
    }
}

const std::set<std::string> kKeywords = {
    "FROM",    "RUN", "CMD",     "LABEL",      "MAINTAINER",  "EXPOSE",
    "ENV",     "ADD", "COPY",    "ENTRYPOINT", "VOLUME",      "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"};

void expand_all(std::string_view text, char escape) {
    tolerate_errors([&] { expand_word(text, kVars, "Dockerfile:1", escape); });
    tolerate_errors([&] { expand_words(text, kVars, "Dockerfile:1", escape); });
}

void check_instruction(const Instruction& ins, char escape, int& last_line) {
    check(kKeywords.count(ins.keyword) == 1, "a parsed instruction has a known keyword",
          ins.keyword);
    check(ins.line >= last_line, "instructions are in line order", ins.original);
    last_line = ins.line;
    expand_all(ins.raw, escape);
    for (const auto& [name, value] : ins.flags)
        expand_all(value, escape);
    for (const auto& arg : ins.exec_args)
        expand_all(arg, escape);
    for (const auto& doc : ins.heredocs)
        tolerate_errors([&] { expand_heredoc(doc.content, kVars, "Dockerfile:1"); });
    if (ins.keyword == "ENV" || ins.keyword == "LABEL")
        tolerate_errors([&] { parse_key_values(ins.raw, kVars, "Dockerfile:1", true, escape); });
    if (ins.keyword == "ARG")
        tolerate_errors([&] { parse_args(ins.raw, kVars, "Dockerfile:1", escape); });
    if (ins.keyword == "ONBUILD")
        tolerate_errors([&] { parse_onbuild_triggers({ins.raw}, "Dockerfile:1", ins.line); });
    if (ins.keyword == "HEALTHCHECK") {
        tolerate_errors([&] {
            auto health = parse_healthcheck(ins, "Dockerfile:1");
            check(!health.test.empty(), "a healthcheck has a test");
            healthcheck_history(health);
            for (int64_t d : {health.interval_ns, health.timeout_ns, health.start_period_ns,
                              health.start_interval_ns}) {
                auto text = go_duration(d);
                int64_t again = 0;
                try {
                    again = parse_go_duration(text);
                } catch (const Error& e) {
                    violated("a printed duration parses", text + ": " + e.what());
                }
                check(again == d, "a printed duration parses back to itself", text);
            }
        });
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);

    // The raw input as words and durations, too.
    expand_all(text.substr(0, 512), '\\');
    expand_all(text.substr(0, 512), '`');
    tolerate_errors([&] {
        auto d = parse_go_duration(text.substr(0, 64));
        check(parse_go_duration(go_duration(d)) == d, "durations round trip", go_duration(d));
    });

    std::optional<Dockerfile> df;
    try {
        df = Dockerfile::parse(text);
    } catch (const Error&) {
        return 0;
    }
    check(df->escape == '\\' || df->escape == '`', "the escape is \\ or `");
    check(!df->stages.empty(), "a parsed Dockerfile has a stage");
    int last_line = 0;
    for (const auto& ins : df->global_args) {
        check(ins.keyword == "ARG", "only ARG comes before FROM", ins.keyword);
        check_instruction(ins, df->escape, last_line);
    }
    for (const auto& stage : df->stages) {
        check(stage.line >= last_line, "stages are in line order");
        check(!stage.base.empty(), "a stage has a base");
        last_line = stage.line;
        expand_all(stage.base, df->escape);
        for (const auto& ins : stage.instructions)
            check_instruction(ins, df->escape, last_line);
    }
    return 0;
}
