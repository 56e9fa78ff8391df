// The Dockerfile front end: parser, expansion, ENV/LABEL/ARG forms.
#include "engine/dockerfile.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "oci/error.hpp"

namespace cascade::engine {
namespace {

using Strings = std::vector<std::string>;
using Pairs = std::vector<std::pair<std::string, std::string>>;

Lookup vars(std::map<std::string, std::string> values) {
    return [values = std::move(values)](const std::string& name) -> std::optional<std::string> {
        auto it = values.find(name);
        if (it == values.end()) return std::nullopt;
        return it->second;
    };
}

const Lookup kNoVars = vars({});

// The message of the cascade::Error that parsing `text` throws ("" if none).
std::string parse_error(std::string_view text, const std::string& file = "Dockerfile") {
    try {
        Dockerfile::parse(text, file);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

std::string expand_error(std::string_view text, const Lookup& lookup = kNoVars) {
    try {
        expand_word(text, lookup, "Dockerfile:7");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

const Instruction& only_instruction(const Dockerfile& df) {
    EXPECT_EQ(df.stages.size(), 1u);
    EXPECT_EQ(df.stages.at(0).instructions.size(), 1u);
    return df.stages.at(0).instructions.at(0);
}

// ---------------------------------------------------------------------------
// Stages, keywords, grouping

TEST(DockerfileParse, SingleStage) {
    auto df = Dockerfile::parse("FROM alpine:3.19\nRUN echo hi\n");
    EXPECT_EQ(df.file_name, "Dockerfile");
    EXPECT_EQ(df.escape, '\\');
    EXPECT_TRUE(df.global_args.empty());
    ASSERT_EQ(df.stages.size(), 1u);
    const auto& stage = df.stages[0];
    EXPECT_EQ(stage.index, 0);
    EXPECT_EQ(stage.line, 1);
    EXPECT_EQ(stage.base, "alpine:3.19");
    EXPECT_EQ(stage.name, "");
    EXPECT_EQ(stage.platform, "");
    ASSERT_EQ(stage.instructions.size(), 1u);
    const auto& run = stage.instructions[0];
    EXPECT_EQ(run.line, 2);
    EXPECT_EQ(run.keyword, "RUN");
    EXPECT_EQ(run.original, "RUN echo hi");
    EXPECT_EQ(run.raw, "echo hi");
    EXPECT_FALSE(run.exec_form);
    EXPECT_TRUE(run.exec_args.empty());
    EXPECT_TRUE(run.flags.empty());
    EXPECT_TRUE(run.heredocs.empty());
}

TEST(DockerfileParse, KeywordsAreCaseInsensitiveAndStageNamesLowerCased) {
    auto df = Dockerfile::parse("from golang:1.22 As Build\nrUn go build\nCopy a b\n");
    ASSERT_EQ(df.stages.size(), 1u);
    EXPECT_EQ(df.stages[0].name, "build");
    EXPECT_EQ(df.stages[0].base, "golang:1.22");
    EXPECT_EQ(df.stages[0].instructions[0].keyword, "RUN");
    EXPECT_EQ(df.stages[0].instructions[1].keyword, "COPY");
    EXPECT_EQ(df.stages[0].instructions[1].original, "Copy a b");
}

TEST(DockerfileParse, AllKnownInstructions) {
    auto df = Dockerfile::parse(R"(FROM scratch
RUN a
CMD b
LABEL k=v
MAINTAINER someone <x@example.com>
EXPOSE 80/tcp 443
ENV k=v
ADD a b
COPY a b
ENTRYPOINT e
VOLUME /data
USER app:app
WORKDIR /app
ARG x
ONBUILD RUN make
STOPSIGNAL SIGTERM
HEALTHCHECK NONE
SHELL ["/bin/bash", "-c"]
)");
    Strings keywords;
    for (const auto& ins : df.stages.at(0).instructions)
        keywords.push_back(ins.keyword);
    EXPECT_EQ(keywords, (Strings{"RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD",
                                 "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG",
                                 "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}));
    const auto& ins = df.stages[0].instructions;
    EXPECT_EQ(ins[3].raw, "someone <x@example.com>");
    EXPECT_EQ(ins[4].raw, "80/tcp 443");
    EXPECT_EQ(ins[10].raw, "app:app");
    EXPECT_EQ(ins[13].raw, "RUN make");
    EXPECT_EQ(ins[14].raw, "SIGTERM");
}

TEST(DockerfileParse, FromWithPlatformAndName) {
    auto df = Dockerfile::parse(
        "FROM --platform=$BUILDPLATFORM golang:1.22 AS builder\nFROM --platform=linux/arm64 "
        "alpine\n");
    ASSERT_EQ(df.stages.size(), 2u);
    EXPECT_EQ(df.stages[0].platform, "$BUILDPLATFORM");
    EXPECT_EQ(df.stages[0].base, "golang:1.22");
    EXPECT_EQ(df.stages[0].name, "builder");
    EXPECT_EQ(df.stages[1].platform, "linux/arm64");
    EXPECT_EQ(df.stages[1].index, 1);
    EXPECT_EQ(df.stages[1].line, 2);
}

TEST(DockerfileParse, MultiStageGroupingAndGlobalArgs) {
    auto df = Dockerfile::parse(R"(# build arguments
ARG VERSION=1.0
ARG BASE
FROM ${BASE:-alpine} AS build
ARG VERSION
RUN make VERSION=$VERSION

FROM scratch
COPY --from=build /out /app
CMD ["/app"]
)");
    ASSERT_EQ(df.global_args.size(), 2u);
    EXPECT_EQ(df.global_args[0].raw, "VERSION=1.0");
    EXPECT_EQ(df.global_args[0].line, 2);
    EXPECT_EQ(df.global_args[1].raw, "BASE");
    ASSERT_EQ(df.stages.size(), 2u);
    EXPECT_EQ(df.stages[0].base, "${BASE:-alpine}");
    EXPECT_EQ(df.stages[0].line, 4);
    ASSERT_EQ(df.stages[0].instructions.size(), 2u);
    EXPECT_EQ(df.stages[0].instructions[0].keyword, "ARG");
    EXPECT_EQ(df.stages[0].instructions[1].line, 6);
    EXPECT_EQ(df.stages[1].index, 1);
    EXPECT_EQ(df.stages[1].line, 8);
    ASSERT_EQ(df.stages[1].instructions.size(), 2u);
    EXPECT_EQ(df.stages[1].instructions[0].flag("from"), "build");
    EXPECT_EQ(df.stages[1].instructions[1].exec_args, Strings{"/app"});
}

TEST(DockerfileParse, StageWithoutInstructions) {
    auto df = Dockerfile::parse("FROM a AS one\nFROM one\n");
    ASSERT_EQ(df.stages.size(), 2u);
    EXPECT_TRUE(df.stages[0].instructions.empty());
    EXPECT_EQ(df.stages[1].base, "one");
}

TEST(DockerfileParse, CommentsBlankLinesAndIndentation) {
    auto df = Dockerfile::parse(
        "\n# leading comment\n\n   FROM alpine\n\t# indented comment\n    RUN echo a # not a "
        "comment\n\n");
    ASSERT_EQ(df.stages.size(), 1u);
    EXPECT_EQ(df.stages[0].line, 4);
    const auto& run = df.stages[0].instructions.at(0);
    EXPECT_EQ(run.line, 6);
    EXPECT_EQ(run.raw, "echo a # not a comment");
}

TEST(DockerfileParse, CrlfLineEndingsAndByteOrderMark) {
    auto df = Dockerfile::parse(
        "\xEF\xBB\xBF"
        "FROM alpine\r\nRUN echo a \\\r\n  b\r\n");
    const auto& run = only_instruction(df);
    EXPECT_EQ(df.stages[0].base, "alpine");
    EXPECT_EQ(run.raw, "echo a   b");
}

TEST(DockerfileParse, NoTrailingNewline) {
    auto df = Dockerfile::parse("FROM alpine\nRUN true");
    EXPECT_EQ(only_instruction(df).raw, "true");
}

// ---------------------------------------------------------------------------
// Line continuations

TEST(DockerfileContinuation, JoinsLinesWithoutTheEscape) {
    auto df = Dockerfile::parse(
        "FROM debian\nRUN apt-get update && \\\n    apt-get install -y curl \\\n    && rm -rf "
        "/var/lib/apt/lists/*\nUSER nobody\n");
    const auto& ins = df.stages.at(0).instructions;
    ASSERT_EQ(ins.size(), 2u);
    EXPECT_EQ(ins[0].line, 2);
    EXPECT_EQ(ins[0].raw,
              "apt-get update &&     apt-get install -y curl     && rm -rf /var/lib/apt/lists/*");
    EXPECT_EQ(ins[0].original, "RUN " + ins[0].raw);
    EXPECT_EQ(ins[1].line, 5);
}

TEST(DockerfileContinuation, NoSpaceIsInserted) {
    auto df = Dockerfile::parse("FROM a\nRUN echo hel\\\nlo\n");
    EXPECT_EQ(only_instruction(df).raw, "echo hello");
}

TEST(DockerfileContinuation, TrailingBlanksAfterTheEscape) {
    auto df = Dockerfile::parse("FROM a\nRUN echo a \\  \t\n  b\n");
    EXPECT_EQ(only_instruction(df).raw, "echo a   b");
}

TEST(DockerfileContinuation, CommentLinesInsideAreSkipped) {
    auto df = Dockerfile::parse(
        "FROM a\nRUN echo one \\\n# a comment \\\n    # an indented comment\n    two\nUSER x\n");
    const auto& ins = df.stages.at(0).instructions;
    ASSERT_EQ(ins.size(), 2u);
    EXPECT_EQ(ins[0].raw, "echo one     two");
    EXPECT_EQ(ins[1].line, 6);
}

TEST(DockerfileContinuation, EmptyLinesInsideAreSkipped) {
    // BuildKit skips empty continuation lines (with a warning), so the next
    // non-empty line still belongs to the instruction.
    auto df = Dockerfile::parse("FROM a\nRUN echo one \\\n\n   \nUSER x\nWORKDIR /w\n");
    const auto& ins = df.stages.at(0).instructions;
    ASSERT_EQ(ins.size(), 2u);
    EXPECT_EQ(ins[0].raw, "echo one USER x");
    EXPECT_EQ(ins[1].keyword, "WORKDIR");
    EXPECT_EQ(ins[1].line, 6);
}

TEST(DockerfileContinuation, EscapeAloneOnALine) {
    auto df = Dockerfile::parse("FROM a\nRUN echo a \\\n\\\n b\n");
    EXPECT_EQ(only_instruction(df).raw, "echo a  b");
}

TEST(DockerfileContinuation, EscapedEscapeAtTheEndIsNotAContinuation) {
    auto df = Dockerfile::parse("FROM a\nRUN echo foo\\\\\nUSER x\n");
    const auto& ins = df.stages.at(0).instructions;
    ASSERT_EQ(ins.size(), 2u);
    EXPECT_EQ(ins[0].raw, "echo foo\\\\");
    EXPECT_EQ(ins[1].keyword, "USER");
}

TEST(DockerfileContinuation, ContinuationAtEndOfFile) {
    auto df = Dockerfile::parse("FROM a\nRUN echo a \\\n");
    EXPECT_EQ(only_instruction(df).raw, "echo a");
}

TEST(DockerfileContinuation, InsideExecForm) {
    auto df =
        Dockerfile::parse("FROM a\nCMD [\"nginx\", \\\n     \"-g\", \\\n     \"daemon off;\"]\n");
    const auto& cmd = only_instruction(df);
    EXPECT_TRUE(cmd.exec_form);
    EXPECT_EQ(cmd.exec_args, (Strings{"nginx", "-g", "daemon off;"}));
}

TEST(DockerfileContinuation, KeywordSplitAcrossLines) {
    auto df = Dockerfile::parse("FROM a\nRU\\\nN true\n");
    EXPECT_EQ(only_instruction(df).keyword, "RUN");
}

// ---------------------------------------------------------------------------
// Parser directives

TEST(DockerfileDirectives, EscapeBacktickWithWindowsPaths) {
    // The example of docs.docker.com/reference/dockerfile/#escape.
    auto df = Dockerfile::parse(
        "# escape=`\n\nFROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\n");
    EXPECT_EQ(df.escape, '`');
    const auto& ins = df.stages.at(0).instructions;
    ASSERT_EQ(ins.size(), 2u);
    EXPECT_EQ(ins[0].raw, "testfile.txt c:\\");
    EXPECT_EQ(ins[1].raw, "dir c:\\");
    EXPECT_EQ(ins[1].line, 5);
    EXPECT_EQ(expand_words(ins[0].raw, kNoVars, "Dockerfile:4", df.escape),
              (Strings{"testfile.txt", "c:\\"}));
}

TEST(DockerfileDirectives, WithoutTheDirectiveABackslashContinuesTheLine) {
    auto df = Dockerfile::parse("FROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\n");
    const auto& copy = only_instruction(df);
    EXPECT_EQ(copy.raw, "testfile.txt c:RUN dir c:");
}

TEST(DockerfileDirectives, BacktickContinuation) {
    auto df = Dockerfile::parse(
        "# escape=`\nFROM windows\nRUN powershell -Command `\n    Write-Host C:\\temp\\x\n");
    EXPECT_EQ(only_instruction(df).raw, "powershell -Command     Write-Host C:\\temp\\x");
}

TEST(DockerfileDirectives, CaseAndWhitespaceVariants) {
    for (const char* directive :
         {"# escape=`", "#escape=`", "# ESCAPE = `", "#\tEscape=  `  ", "  # escape=`"}) {
        auto df = Dockerfile::parse(std::string(directive) + "\nFROM a\n");
        EXPECT_EQ(df.escape, '`') << directive;
    }
}

TEST(DockerfileDirectives, SyntaxAndEscapeTogether) {
    auto df = Dockerfile::parse("# syntax=docker/dockerfile:1\n# escape=`\n# a comment\nFROM a\n");
    EXPECT_EQ(df.syntax, "docker/dockerfile:1");
    EXPECT_EQ(df.escape, '`');
    EXPECT_EQ(df.stages.at(0).line, 4);
}

TEST(DockerfileDirectives, OnlyAtTheVeryTop) {
    EXPECT_EQ(Dockerfile::parse("# a comment\n# escape=`\nFROM a\n").escape, '\\');
    EXPECT_EQ(Dockerfile::parse("\n# escape=`\nFROM a\n").escape, '\\');
    EXPECT_EQ(Dockerfile::parse("FROM a\n# escape=`\nRUN x\n").escape, '\\');
    // An unknown directive is a comment and ends the directives.
    EXPECT_EQ(Dockerfile::parse("# unknown=x\n# escape=`\nFROM a\n").escape, '\\');
}

TEST(DockerfileDirectives, DuplicateDirectiveIsAnError) {
    EXPECT_EQ(parse_error("# escape=`\n# escape=\\\nFROM a\n"),
              "Dockerfile:2: only one escape parser directive can be used: # escape=\\");
    EXPECT_EQ(parse_error("# syntax=a\n# SYNTAX=b\nFROM a\n"),
              "Dockerfile:2: only one syntax parser directive can be used: # SYNTAX=b");
}

TEST(DockerfileDirectives, InvalidEscapeToken) {
    EXPECT_EQ(parse_error("# escape=x\nFROM a\n"),
              "Dockerfile:1: invalid escape token 'x' (use ` or \\): # escape=x");
}

// ---------------------------------------------------------------------------
// Exec form and shell form

TEST(DockerfileExecForm, JsonArrayIsExecForm) {
    auto df = Dockerfile::parse(R"(FROM a
RUN ["/bin/sh", "-c", "echo \"quoted\" $HOME"]
CMD [ "nginx" , "-g","daemon off;" ]
ENTRYPOINT ["/entry.sh"]
SHELL ["powershell", "-command"]
VOLUME ["/data", "/logs"]
COPY ["a file.txt", "/dst/"]
ADD ["x", "y"]
CMD []
)");
    const auto& ins = df.stages.at(0).instructions;
    for (const auto& i : ins)
        EXPECT_TRUE(i.exec_form) << i.original;
    EXPECT_EQ(ins[0].exec_args, (Strings{"/bin/sh", "-c", "echo \"quoted\" $HOME"}));
    EXPECT_EQ(ins[1].exec_args, (Strings{"nginx", "-g", "daemon off;"}));
    EXPECT_EQ(ins[2].exec_args, Strings{"/entry.sh"});
    EXPECT_EQ(ins[3].exec_args, (Strings{"powershell", "-command"}));
    EXPECT_EQ(ins[4].exec_args, (Strings{"/data", "/logs"}));
    EXPECT_EQ(ins[5].exec_args, (Strings{"a file.txt", "/dst/"}));
    EXPECT_TRUE(ins[7].exec_args.empty());
    EXPECT_EQ(ins[0].raw, R"(["/bin/sh", "-c", "echo \"quoted\" $HOME"])");
}

TEST(DockerfileExecForm, InvalidJsonFallsBackToShellForm) {
    auto df = Dockerfile::parse(R"(FROM a
CMD ['single', 'quotes']
RUN ["c:\windows\system32\tasklist.exe"]
RUN ["unterminated"
ENTRYPOINT ["a"] trailing
CMD [not json]
)");
    const auto& ins = df.stages.at(0).instructions;
    ASSERT_EQ(ins.size(), 5u);
    for (const auto& i : ins) {
        EXPECT_FALSE(i.exec_form) << i.original;
        EXPECT_TRUE(i.exec_args.empty()) << i.original;
    }
    EXPECT_EQ(ins[0].raw, "['single', 'quotes']");
    EXPECT_EQ(ins[1].raw, R"(["c:\windows\system32\tasklist.exe"])");
}

TEST(DockerfileExecForm, JsonEscapesAreDecoded) {
    auto df = Dockerfile::parse(R"(FROM a
RUN ["c:\\windows\\system32\\tasklist.exe", "tab\there", "\u00e9"]
)");
    const auto& run = only_instruction(df);
    ASSERT_TRUE(run.exec_form);
    EXPECT_EQ(run.exec_args,
              (Strings{"c:\\windows\\system32\\tasklist.exe", "tab\there", "\xC3\xA9"}));
}

TEST(DockerfileExecForm, OnlyForInstructionsThatTakeIt) {
    auto df = Dockerfile::parse("FROM a\nUSER [\"root\"]\nWORKDIR [\"/x\"]\n");
    for (const auto& i : df.stages.at(0).instructions)
        EXPECT_FALSE(i.exec_form);
    EXPECT_EQ(df.stages[0].instructions[0].raw, "[\"root\"]");
}

TEST(DockerfileExecForm, NonStringElementsAreAnError) {
    EXPECT_EQ(parse_error("FROM a\n\nCMD [\"a\", 1]\n"),
              "Dockerfile:3: when using JSON array syntax, arrays must be comprised of strings "
              "only: CMD [\"a\", 1]");
}

TEST(DockerfileExecForm, ShellRequiresJson) {
    EXPECT_EQ(parse_error("FROM a\nSHELL /bin/bash -c\n"),
              "Dockerfile:2: SHELL requires the arguments to be a JSON array of strings: SHELL "
              "/bin/bash -c");
    EXPECT_EQ(parse_error("FROM a\nSHELL []\n"),
              "Dockerfile:2: SHELL needs at least one argument: SHELL []");
}

TEST(DockerfileExecForm, EmptyRunArrayIsAnError) {
    EXPECT_EQ(parse_error("FROM a\nRUN []\n"),
              "Dockerfile:2: RUN needs a command: the JSON array is empty: RUN []");
}

// ---------------------------------------------------------------------------
// Flags

TEST(DockerfileFlags, CopyFlagsInOrder) {
    auto df = Dockerfile::parse(
        "FROM a\nCOPY --from=build --chown=1000:1000 --chmod=755 --link src/ /app/\n");
    const auto& copy = only_instruction(df);
    EXPECT_EQ(
        copy.flags,
        (Pairs{{"from", "build"}, {"chown", "1000:1000"}, {"chmod", "755"}, {"link", "true"}}));
    EXPECT_EQ(copy.flag("from"), "build");
    EXPECT_EQ(copy.flag("chown"), "1000:1000");
    EXPECT_EQ(copy.flag("parents"), std::nullopt);
    EXPECT_EQ(copy.raw, "src/ /app/");
    EXPECT_EQ(copy.original, "COPY --from=build --chown=1000:1000 --chmod=755 --link src/ /app/");
}

TEST(DockerfileFlags, QuotesAndEscapesInFlagValues) {
    auto df = Dockerfile::parse(
        "FROM a\nRUN --mount=type=secret,id=\"my secret\" --network='none' echo\n");
    const auto& run = only_instruction(df);
    EXPECT_EQ(run.flags, (Pairs{{"mount", "type=secret,id=my secret"}, {"network", "none"}}));
    EXPECT_EQ(run.raw, "echo");
}

TEST(DockerfileFlags, RepeatableFlags) {
    auto df = Dockerfile::parse(
        "FROM a\nRUN --mount=type=cache,target=/root/.cache --mount=type=bind,target=/src make\n");
    const auto& run = only_instruction(df);
    ASSERT_EQ(run.flags.size(), 2u);
    EXPECT_EQ(run.flags[1].second, "type=bind,target=/src");
    EXPECT_EQ(run.flag("mount"), "type=cache,target=/root/.cache");
}

TEST(DockerfileFlags, BooleanFlagValues) {
    auto df = Dockerfile::parse("FROM a\nCOPY --link=FALSE --parents=true a b\n");
    EXPECT_EQ(only_instruction(df).flags, (Pairs{{"link", "false"}, {"parents", "true"}}));
}

TEST(DockerfileFlags, EmptyStringValueIsAllowed) {
    auto df = Dockerfile::parse("FROM a\nCOPY --chown= a b\n");
    EXPECT_EQ(only_instruction(df).flag("chown"), "");
}

TEST(DockerfileFlags, OnlyLeadingWordsAreFlags) {
    auto df = Dockerfile::parse("FROM a\nCOPY src --from=x dst\nRUN -- --version\n");
    const auto& ins = df.stages.at(0).instructions;
    EXPECT_TRUE(ins[0].flags.empty());
    EXPECT_EQ(ins[0].raw, "src --from=x dst");
    EXPECT_TRUE(ins[1].flags.empty());
    EXPECT_EQ(ins[1].raw, "--version");
}

TEST(DockerfileFlags, HealthcheckFlags) {
    auto df = Dockerfile::parse(
        "FROM a\nHEALTHCHECK --interval=5m --timeout=3s --retries=3 \\\n  CMD curl -f "
        "http://localhost/ || exit 1\n");
    const auto& hc = only_instruction(df);
    EXPECT_EQ(hc.flags, (Pairs{{"interval", "5m"}, {"timeout", "3s"}, {"retries", "3"}}));
    EXPECT_EQ(hc.raw, "CMD curl -f http://localhost/ || exit 1");
    EXPECT_FALSE(hc.exec_form);
}

TEST(DockerfileFlags, Errors) {
    EXPECT_EQ(parse_error("FROM a\nCOPY --form=build a b\n"),
              "Dockerfile:2: unknown flag --form for COPY (known: --from --chown --chmod --link "
              "--parents --exclude): COPY --form=build a b");
    EXPECT_EQ(parse_error("FROM a\nCMD --help\n"),
              "Dockerfile:2: unknown flag --help for CMD (CMD takes no flags): CMD --help");
    EXPECT_EQ(parse_error("FROM a\nCOPY --from a b\n"),
              "Dockerfile:2: flag --from needs a value (--from=<value>): COPY --from a b");
    EXPECT_EQ(parse_error("FROM a\nCOPY --link=yes a b\n"),
              "Dockerfile:2: flag --link expects true or false, not \"yes\": COPY --link=yes a b");
    EXPECT_EQ(parse_error("FROM a\nCOPY --from=x --from=y a b\n"),
              "Dockerfile:2: duplicate flag --from: COPY --from=x --from=y a b");
    EXPECT_EQ(parse_error("FROM a\nRUN --=x true\n"),
              "Dockerfile:2: malformed flag --=x (flags are --name=value): RUN --=x true");
    EXPECT_EQ(parse_error("FROM a\nRUN --mount=\"type=cache true\n"),
              "Dockerfile:2: unterminated quote in flag --mount=type=cache true: RUN "
              "--mount=\"type=cache true");
    EXPECT_EQ(parse_error("FROM --plat=x a\n"),
              "Dockerfile:1: unknown flag --plat for FROM (known: --platform): FROM --plat=x a");
}

// ---------------------------------------------------------------------------
// HEALTHCHECK and ONBUILD

TEST(DockerfileHealthcheck, Forms) {
    auto df = Dockerfile::parse(
        "FROM a\nHEALTHCHECK CMD [\"curl\", \"-f\", \"http://x/\"]\nHEALTHCHECK none\n");
    const auto& ins = df.stages.at(0).instructions;
    EXPECT_TRUE(ins[0].exec_form);
    EXPECT_EQ(ins[0].exec_args, (Strings{"curl", "-f", "http://x/"}));
    EXPECT_EQ(ins[0].raw, "CMD [\"curl\", \"-f\", \"http://x/\"]");
    EXPECT_FALSE(ins[1].exec_form);
    EXPECT_EQ(ins[1].raw, "none");
}

TEST(DockerfileHealthcheck, Errors) {
    EXPECT_EQ(parse_error("FROM a\nHEALTHCHECK NONE x\n"),
              "Dockerfile:2: HEALTHCHECK NONE takes no arguments: HEALTHCHECK NONE x");
    EXPECT_EQ(parse_error("FROM a\nHEALTHCHECK CMD\n"),
              "Dockerfile:2: missing command after HEALTHCHECK CMD: HEALTHCHECK CMD");
    EXPECT_EQ(parse_error("FROM a\nHEALTHCHECK CMD []\n"),
              "Dockerfile:2: missing command after HEALTHCHECK CMD: HEALTHCHECK CMD []");
    EXPECT_EQ(parse_error("FROM a\nHEALTHCHECK RUN true\n"),
              "Dockerfile:2: unknown HEALTHCHECK type \"RUN\" (use CMD or NONE): HEALTHCHECK RUN "
              "true");
}

TEST(DockerfileOnbuild, TriggerIsKeptAsWritten) {
    auto df = Dockerfile::parse("FROM a\nONBUILD COPY --chown=app . /src\nonbuild run make\n");
    const auto& ins = df.stages.at(0).instructions;
    EXPECT_EQ(ins[0].raw, "COPY --chown=app . /src");
    EXPECT_TRUE(ins[0].flags.empty());
    EXPECT_EQ(ins[1].keyword, "ONBUILD");
    EXPECT_EQ(ins[1].raw, "run make");
}

TEST(DockerfileOnbuild, Errors) {
    EXPECT_EQ(parse_error("FROM a\nONBUILD ONBUILD RUN x\n"),
              "Dockerfile:2: chaining ONBUILD via ONBUILD ONBUILD isn't allowed: ONBUILD ONBUILD "
              "RUN x");
    EXPECT_EQ(parse_error("FROM a\nONBUILD FROM x\n"),
              "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger: ONBUILD FROM x");
    EXPECT_EQ(parse_error("FROM a\nONBUILD MAINTAINER x\n"),
              "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger: ONBUILD MAINTAINER x");
    EXPECT_EQ(parse_error("FROM a\nONBUILD FETCH x\n"),
              "Dockerfile:2: unknown instruction FETCH: FETCH x");
    EXPECT_EQ(parse_error("FROM a\nONBUILD COPY --bogus=1 a b\n"),
              "Dockerfile:2: unknown flag --bogus for COPY (known: --from --chown --chmod --link "
              "--parents --exclude): COPY --bogus=1 a b");
    EXPECT_EQ(parse_error("FROM a\nONBUILD COPY a\n"),
              "Dockerfile:2: COPY requires at least two arguments: source(s) and destination: "
              "COPY a");
}

// ---------------------------------------------------------------------------
// Heredocs

TEST(DockerfileHeredoc, RunScript) {
    auto df = Dockerfile::parse(R"(FROM debian
RUN <<EOF
apt-get update
# not a comment, not a continuation \
FROM not-an-instruction
EOF
USER app
)");
    const auto& ins = df.stages.at(0).instructions;
    ASSERT_EQ(ins.size(), 2u);
    const auto& run = ins[0];
    EXPECT_EQ(run.line, 2);
    EXPECT_EQ(run.raw, "<<EOF");
    EXPECT_EQ(run.original, "RUN <<EOF");
    ASSERT_EQ(run.heredocs.size(), 1u);
    EXPECT_EQ(run.heredocs[0].name, "EOF");
    EXPECT_EQ(run.heredocs[0].content,
              "apt-get update\n# not a comment, not a continuation \\\nFROM "
              "not-an-instruction\n");
    EXPECT_TRUE(run.heredocs[0].expand);
    EXPECT_EQ(ins[1].keyword, "USER");
    EXPECT_EQ(ins[1].line, 7);
}

TEST(DockerfileHeredoc, CopyInlineFile) {
    auto df = Dockerfile::parse(
        "FROM nginx\nCOPY --chmod=644 <<EOF /usr/share/nginx/html/index.html\n<h1>$TITLE</h1>\n"
        "EOF\n");
    const auto& copy = only_instruction(df);
    EXPECT_EQ(copy.raw, "<<EOF /usr/share/nginx/html/index.html");
    EXPECT_EQ(copy.flag("chmod"), "644");
    ASSERT_EQ(copy.heredocs.size(), 1u);
    EXPECT_EQ(copy.heredocs[0].content, "<h1>$TITLE</h1>\n");
    EXPECT_TRUE(copy.heredocs[0].expand);
}

TEST(DockerfileHeredoc, QuotedDelimiterDisablesExpansion) {
    auto df = Dockerfile::parse(
        "FROM a\nRUN <<\"EOF\"\necho $HOME\nEOF\nRUN <<'END'\nx\nEND\nRUN <<E\"O\"F\ny\nEOF\n");
    const auto& ins = df.stages.at(0).instructions;
    ASSERT_EQ(ins.size(), 3u);
    EXPECT_EQ(ins[0].heredocs.at(0).name, "EOF");
    EXPECT_FALSE(ins[0].heredocs[0].expand);
    EXPECT_EQ(ins[0].heredocs[0].content, "echo $HOME\n");
    EXPECT_EQ(ins[1].heredocs.at(0).name, "END");
    EXPECT_FALSE(ins[1].heredocs[0].expand);
    EXPECT_EQ(ins[2].heredocs.at(0).name, "EOF");
    EXPECT_FALSE(ins[2].heredocs[0].expand);
}

TEST(DockerfileHeredoc, DashStripsLeadingTabs) {
    auto df = Dockerfile::parse("FROM a\nRUN <<-EOF\n\t\techo a\n\t  echo b\n  \tc\n\tEOF\n");
    const auto& run = only_instruction(df);
    ASSERT_EQ(run.heredocs.size(), 1u);
    EXPECT_EQ(run.heredocs[0].content, "echo a\n  echo b\n  \tc\n");
}

TEST(DockerfileHeredoc, WithoutDashTabsStayAndIndentedDelimiterIsContent) {
    auto df = Dockerfile::parse("FROM a\nRUN <<EOF\n\tx\n\tEOF\n  EOF\nEOF\n");
    const auto& run = only_instruction(df);
    EXPECT_EQ(run.heredocs.at(0).content, "\tx\n\tEOF\n  EOF\n");
}

TEST(DockerfileHeredoc, SeveralInOneInstruction) {
    // The example of docs.docker.com/reference/dockerfile/#here-documents.
    auto df = Dockerfile::parse(R"(FROM alpine
RUN <<FILE1 cat > file1 && <<FILE2 cat > file2
I am
first
FILE1
I am
second
FILE2
RUN true
)");
    const auto& ins = df.stages.at(0).instructions;
    ASSERT_EQ(ins.size(), 2u);
    EXPECT_EQ(ins[0].raw, "<<FILE1 cat > file1 && <<FILE2 cat > file2");
    ASSERT_EQ(ins[0].heredocs.size(), 2u);
    EXPECT_EQ(ins[0].heredocs[0].name, "FILE1");
    EXPECT_EQ(ins[0].heredocs[0].content, "I am\nfirst\n");
    EXPECT_EQ(ins[0].heredocs[1].name, "FILE2");
    EXPECT_EQ(ins[0].heredocs[1].content, "I am\nsecond\n");
    EXPECT_EQ(ins[1].line, 9);
}

TEST(DockerfileHeredoc, MidLineAndFileDescriptor) {
    auto df = Dockerfile::parse(
        "FROM a\nRUN python3 - <<PY > /out\nprint(1)\nPY\nRUN 3<<X cat /dev/fd/3\ndata\nX\n");
    const auto& ins = df.stages.at(0).instructions;
    ASSERT_EQ(ins.size(), 2u);
    EXPECT_EQ(ins[0].heredocs.at(0).name, "PY");
    EXPECT_EQ(ins[0].heredocs[0].content, "print(1)\n");
    EXPECT_EQ(ins[1].heredocs.at(0).name, "X");
    EXPECT_EQ(ins[1].heredocs[0].content, "data\n");
}

TEST(DockerfileHeredoc, EmptyBodyAndCrlf) {
    auto df = Dockerfile::parse("FROM a\r\nRUN <<EOF\r\nEOF\r\nCOPY <<A /x\r\nline\r\nA\r\n");
    const auto& ins = df.stages.at(0).instructions;
    ASSERT_EQ(ins.size(), 2u);
    EXPECT_EQ(ins[0].heredocs.at(0).content, "");
    EXPECT_EQ(ins[1].heredocs.at(0).content, "line\r\n");
}

TEST(DockerfileHeredoc, NotAHeredoc) {
    auto df = Dockerfile::parse(R"(FROM a
RUN ["cat", "<<EOF"]
RUN echo "<<EOF" '<<X'
RUN echo a<<b
RUN cat << EOF
)");
    for (const auto& ins : df.stages.at(0).instructions) {
        EXPECT_TRUE(ins.heredocs.empty()) << ins.original;
    }
    EXPECT_EQ(df.stages[0].instructions.size(), 4u);
}

TEST(DockerfileHeredoc, OnbuildCarriesHeredocs) {
    auto df = Dockerfile::parse("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\nUSER x\n");
    const auto& ins = df.stages.at(0).instructions;
    ASSERT_EQ(ins.size(), 2u);
    EXPECT_EQ(ins[0].raw, "RUN <<EOF");
    ASSERT_EQ(ins[0].heredocs.size(), 1u);
    EXPECT_EQ(ins[0].heredocs[0].content, "echo hi\n");
}

TEST(DockerfileHeredoc, Errors) {
    EXPECT_EQ(parse_error("FROM a\n\nRUN <<EOF\necho hi\nEOFX\n"),
              "Dockerfile:3: unterminated heredoc: no line \"EOF\" ends <<EOF before the end of "
              "the file: RUN <<EOF");
    EXPECT_EQ(parse_error("FROM a\nRUN <<A <<B\na\nA\nb\n"),
              "Dockerfile:2: unterminated heredoc: no line \"B\" ends <<B before the end of the "
              "file: RUN <<A <<B");
    EXPECT_EQ(parse_error("FROM a\nCOPY a.txt <<EOF\nx\nEOF\n"),
              "Dockerfile:2: COPY cannot accept a heredoc as a destination: COPY a.txt <<EOF");
}

TEST(DockerfileHeredoc, BodyIsRawText) {
    // Comment-like, blank and escape-ending lines inside a body are content;
    // the instruction's own line may continue before the body starts.
    auto df = Dockerfile::parse(
        "FROM a\n"
        "RUN <<EOF \\\n"
        "  && echo after\n"
        "# not a comment\n"
        "\n"
        "line \\\n"
        "EOF\n"
        "ENV A=1\n");
    const auto& ins = df.stages.at(0).instructions;
    ASSERT_EQ(ins.size(), 2u);
    EXPECT_EQ(ins[0].raw, "<<EOF   && echo after");
    ASSERT_EQ(ins[0].heredocs.size(), 1u);
    EXPECT_EQ(ins[0].heredocs[0].content, "# not a comment\n\nline \\\n");
    EXPECT_EQ(ins[1].line, 8);
    // With escape=` the backtick ends the line inside a body as written.
    auto tick = Dockerfile::parse("# escape=`\nFROM a\nRUN <<EOF\ndir c:\\ `\nEOF\n");
    EXPECT_EQ(only_instruction(tick).heredocs.at(0).content, "dir c:\\ `\n");
}

TEST(DockerfileOnbuild, TriggersOfABaseImage) {
    auto triggers = parse_onbuild_triggers(
        {"RUN make", "copy --chown=app . /src", "ENV A=1 B=\"x y\""}, "Dockerfile:3: FROM base", 3);
    ASSERT_EQ(triggers.size(), 3u);
    EXPECT_EQ(triggers[0].keyword, "RUN");
    EXPECT_EQ(triggers[0].raw, "make");
    EXPECT_EQ(triggers[1].keyword, "COPY");
    EXPECT_EQ(triggers[1].flag("chown"), "app");
    EXPECT_EQ(triggers[2].keyword, "ENV");
    for (const auto& t : triggers)
        EXPECT_EQ(t.line, 3);
    auto error = [](std::vector<std::string> t) {
        try {
            parse_onbuild_triggers(t, "Dockerfile:3: FROM base", 3);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_EQ(error({"ONBUILD RUN x"}),
              "Dockerfile:3: FROM base: chaining ONBUILD via ONBUILD ONBUILD isn't allowed "
              "(ONBUILD trigger): ONBUILD RUN x");
    EXPECT_EQ(error({"RUN ok", "from x"}),
              "Dockerfile:3: FROM base: FROM isn't allowed as an ONBUILD trigger: from x");
    EXPECT_EQ(error({"MAINTAINER me"}),
              "Dockerfile:3: FROM base: MAINTAINER isn't allowed as an ONBUILD trigger: "
              "MAINTAINER me");
    EXPECT_EQ(error({""}),
              "Dockerfile:3: FROM base: an ONBUILD trigger must be a single instruction: ");
    EXPECT_EQ(error({"RUN a\nRUN b"}),
              "Dockerfile:3: FROM base: an ONBUILD trigger must be a single instruction: RUN a …");
    EXPECT_EQ(error({"BOGUS x"}),
              "Dockerfile:3: FROM base: the base image's ONBUILD trigger does not parse "
              "(ONBUILD trigger:2: unknown instruction BOGUS: BOGUS x): BOGUS x");
    EXPECT_NE(error({"RUN <<EOF"}).find("unterminated heredoc"), std::string::npos);
}

// ---------------------------------------------------------------------------
// Parse errors, each with its line

TEST(DockerfileErrors, UnknownInstruction) {
    EXPECT_EQ(parse_error("FROM a\n\n# c\nRUNN echo\n"),
              "Dockerfile:4: unknown instruction RUNN (did you mean RUN?): RUNN echo");
    EXPECT_EQ(parse_error("FROM a\nexpos 80\n"),
              "Dockerfile:2: unknown instruction expos (did you mean EXPOSE?): expos 80");
    EXPECT_EQ(parse_error("FROM a\nCP a b\n"), "Dockerfile:2: unknown instruction CP: CP a b");
    EXPECT_EQ(parse_error("FROM a\nWORKDIRR /x\nENTRYPONT x\n"),
              "Dockerfile:2: unknown instruction WORKDIRR (did you mean WORKDIR?): WORKDIRR /x");
    EXPECT_EQ(parse_error("FROM a\nFETCH http://x\n"),
              "Dockerfile:2: unknown instruction FETCH: FETCH http://x");
}

TEST(DockerfileErrors, FileNameIsUsed) {
    EXPECT_EQ(parse_error("FROM a\nBOGUS\n", "app/Dockerfile.dev"),
              "app/Dockerfile.dev:2: unknown instruction BOGUS: BOGUS");
}

TEST(DockerfileErrors, ErrorLineIsWhereTheInstructionStarts) {
    EXPECT_EQ(parse_error("FROM a\nBOGUS one \\\n  two\n"),
              "Dockerfile:2: unknown instruction BOGUS: BOGUS one   two");
}

TEST(DockerfileErrors, NoFrom) {
    EXPECT_EQ(parse_error(""),
              "Dockerfile:1: no FROM instruction: the file has no instructions (a Dockerfile "
              "needs FROM <image>)");
    EXPECT_EQ(parse_error("# only\n\n# comments\n"),
              "Dockerfile:1: no FROM instruction: the file has no instructions (a Dockerfile "
              "needs FROM <image>)");
    EXPECT_EQ(parse_error("\nARG A=1\nARG B\n"),
              "Dockerfile:2: no FROM instruction (a Dockerfile needs FROM <image>): ARG A=1");
}

TEST(DockerfileErrors, InstructionBeforeFrom) {
    EXPECT_EQ(parse_error("ARG X\n# c\nRUN echo\nFROM a\n"),
              "Dockerfile:3: RUN before the first FROM (only ARG may come before FROM): RUN echo");
    EXPECT_EQ(parse_error("ENV A=1\nFROM a\n"),
              "Dockerfile:1: ENV before the first FROM (only ARG may come before FROM): ENV A=1");
}

TEST(DockerfileErrors, MissingArguments) {
    EXPECT_EQ(parse_error("FROM a\nRUN\n"), "Dockerfile:2: RUN needs arguments: RUN");
    EXPECT_EQ(parse_error("FROM a\nWORKDIR   \n"),
              "Dockerfile:2: WORKDIR needs arguments: WORKDIR");
    EXPECT_EQ(parse_error("FROM\n"), "Dockerfile:1: FROM needs arguments: FROM");
    EXPECT_EQ(parse_error("FROM a\nCOPY --from=b\n"),
              "Dockerfile:2: COPY needs arguments: COPY --from=b");
    EXPECT_EQ(parse_error("FROM a\nRUN \\\n\n"), "Dockerfile:2: RUN needs arguments: RUN");
}

TEST(DockerfileErrors, FromArguments) {
    EXPECT_EQ(parse_error("FROM a b\n"),
              "Dockerfile:1: FROM requires either one or three arguments (FROM image [AS name]): "
              "FROM a b");
    EXPECT_EQ(parse_error("FROM a TO b\n"),
              "Dockerfile:1: FROM requires either one or three arguments (FROM image [AS name]): "
              "FROM a TO b");
    EXPECT_EQ(parse_error("FROM a AS 1st\n"),
              "Dockerfile:1: invalid stage name \"1st\": it must start with a letter and contain "
              "only letters, digits, '-', '_' and '.': FROM a AS 1st");
    EXPECT_EQ(parse_error("FROM a AS x$y\n"),
              "Dockerfile:1: invalid stage name \"x$y\": it must start with a letter and contain "
              "only letters, digits, '-', '_' and '.': FROM a AS x$y");
    EXPECT_EQ(parse_error("FROM a AS build\nRUN x\nFROM b AS Build\n"),
              "Dockerfile:3: duplicate stage name \"build\": FROM b AS Build");
}

TEST(DockerfileErrors, CopyAddNeedSourceAndDestination) {
    EXPECT_EQ(parse_error("FROM a\nADD onlyone\n"),
              "Dockerfile:2: ADD requires at least two arguments: source(s) and destination: ADD "
              "onlyone");
    EXPECT_EQ(parse_error("FROM a\nCOPY [\"a\"]\n"),
              "Dockerfile:2: COPY requires at least two arguments: source(s) and destination: "
              "COPY [\"a\"]");
}

TEST(DockerfileErrors, EnvLabelArgShapes) {
    EXPECT_EQ(parse_error("FROM a\nENV ONLYKEY\n"),
              "Dockerfile:2: \"ONLYKEY\" has no value (use key=value or key value): ONLYKEY");
    EXPECT_EQ(parse_error("FROM a\nLABEL a=1 b\n"),
              "Dockerfile:2: can't find = in \"b\"; the form is key=value (quote values with "
              "spaces): a=1 b");
    EXPECT_EQ(parse_error("FROM a\nENV =x\n"),
              "Dockerfile:2: a key can not be blank in \"=x\": =x");
    EXPECT_EQ(parse_error("ARG =x\nFROM a\n"), "Dockerfile:1: ARG names can not be blank: =x");
}

// ---------------------------------------------------------------------------
// Expansion

TEST(Expand, PlainVariables) {
    auto env = vars({{"HOME", "/root"}, {"EMPTY", ""}, {"X", "x"}});
    EXPECT_EQ(expand_word("$HOME/bin", env, "f:1"), "/root/bin");
    EXPECT_EQ(expand_word("${HOME}bin", env, "f:1"), "/rootbin");
    EXPECT_EQ(expand_word("$X$X${X}", env, "f:1"), "xxx");
    EXPECT_EQ(expand_word("a${UNSET}b$UNSET", env, "f:1"), "ab");
    EXPECT_EQ(expand_word("[$EMPTY]", env, "f:1"), "[]");
    EXPECT_EQ(expand_word("cost: 5$", env, "f:1"), "cost: 5$");
    EXPECT_EQ(expand_word("$-x $/", env, "f:1"), "x $/");
    EXPECT_EQ(expand_word("no variables at all", env, "f:1"), "no variables at all");
}

TEST(Expand, DefaultAndAlternativeForms) {
    auto env = vars({{"SET", "value"}, {"EMPTY", ""}});
    EXPECT_EQ(expand_word("${SET:-d}", env, "f"), "value");
    EXPECT_EQ(expand_word("${EMPTY:-d}", env, "f"), "d");
    EXPECT_EQ(expand_word("${UNSET:-d}", env, "f"), "d");
    EXPECT_EQ(expand_word("${SET-d}", env, "f"), "value");
    EXPECT_EQ(expand_word("${EMPTY-d}", env, "f"), "");
    EXPECT_EQ(expand_word("${UNSET-d}", env, "f"), "d");
    EXPECT_EQ(expand_word("${SET:+alt}", env, "f"), "alt");
    EXPECT_EQ(expand_word("${EMPTY:+alt}", env, "f"), "");
    EXPECT_EQ(expand_word("${UNSET:+alt}", env, "f"), "");
    EXPECT_EQ(expand_word("${SET+alt}", env, "f"), "alt");
    EXPECT_EQ(expand_word("${EMPTY+alt}", env, "f"), "alt");
    EXPECT_EQ(expand_word("${UNSET+alt}", env, "f"), "");
    EXPECT_EQ(expand_word("${UNSET:-}", env, "f"), "");
    EXPECT_EQ(expand_word("${UNSET:-two words}", env, "f"), "two words");
}

TEST(Expand, Nested) {
    auto env = vars({{"B", "bee"},
                     {"TARGETOS", "linux"},
                     {"TARGETARCH", "arm"},
                     {"TARGETVARIANT", "v7"},
                     {"VERSION", "v1.2.3"}});
    EXPECT_EQ(expand_word("${A:-${B}}", env, "f"), "bee");
    EXPECT_EQ(expand_word("${A:-${C:-deep}}", env, "f"), "deep");
    EXPECT_EQ(expand_word("${B:+prefix-${B}}", env, "f"), "prefix-bee");
    EXPECT_EQ(expand_word("${A:-\"quoted ${B}\"}", env, "f"), "quoted bee");
    EXPECT_EQ(expand_word("${A:-'${B}'}", env, "f"), "${B}");
    EXPECT_EQ(expand_word("something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${"
                          "TARGETVARIANT}}.tar.gz",
                          env, "f"),
              "something-v1.2.3.linux-arm-v7.tar.gz");
}

TEST(Expand, RequiredVariables) {
    auto env = vars({{"VAR", "plain"}, {"EMPTY", ""}, {"ARG", "x"}});
    EXPECT_EQ(expand_word("${VAR:?message}", env, "f"), "plain");
    EXPECT_EQ(expand_word("${VAR?message}", env, "f"), "plain");
    EXPECT_EQ(expand_word("${EMPTY?message}", env, "f"), "");
    EXPECT_EQ(expand_error("${UNSET:?message here$ARG}", env),
              "Dockerfile:7: UNSET: message herex: ${UNSET:?message here$ARG}");
    EXPECT_EQ(expand_error("${EMPTY:?must be set}", env),
              "Dockerfile:7: EMPTY: must be set: ${EMPTY:?must be set}");
    EXPECT_EQ(expand_error("${UNSET?}", env),
              "Dockerfile:7: UNSET: is not allowed to be unset: ${UNSET?}");
    EXPECT_EQ(expand_error("${EMPTY:?}", env),
              "Dockerfile:7: EMPTY: is not allowed to be empty: ${EMPTY:?}");
}

TEST(Expand, Quotes) {
    auto env = vars({{"X", "ex"}});
    EXPECT_EQ(expand_word("'$X'", env, "f"), "$X");
    EXPECT_EQ(expand_word("\"$X\"", env, "f"), "ex");
    EXPECT_EQ(expand_word("\"it's\"", env, "f"), "it's");
    EXPECT_EQ(expand_word("'say \"hi\"'", env, "f"), "say \"hi\"");
    EXPECT_EQ(expand_word("a'b c'd\"e f\"g", env, "f"), "ab cde fg");
    EXPECT_EQ(expand_word("''\"\"", env, "f"), "");
    EXPECT_EQ(expand_word("'a\\b'", env, "f"), "a\\b");
}

TEST(Expand, EscapeCharacter) {
    auto env = vars({{"X", "ex"}});
    EXPECT_EQ(expand_word("\\$X", env, "f"), "$X");
    EXPECT_EQ(expand_word("\\${X}", env, "f"), "${X}");
    EXPECT_EQ(expand_word("a\\\\b", env, "f"), "a\\b");
    EXPECT_EQ(expand_word("a\\ b", env, "f"), "a b");
    EXPECT_EQ(expand_word("\\'$X\\'", env, "f"), "'ex'");
    EXPECT_EQ(expand_word("trailing\\", env, "f"), "trailing");
    // Inside double quotes only " $ and the escape itself are escaped.
    EXPECT_EQ(expand_word("\"\\$X \\\" \\\\ \\n \\a\"", env, "f"), "$X \" \\ \\n \\a");
}

TEST(Expand, BacktickEscapeKeepsBackslashes) {
    auto env = vars({{"DIR", "app"}});
    EXPECT_EQ(expand_word("C:\\Users\\$DIR\\bin", env, "f", '`'), "C:\\Users\\app\\bin");
    EXPECT_EQ(expand_word("`$DIR C:\\`\"x`\"", env, "f", '`'), "$DIR C:\\\"x\"");
    EXPECT_EQ(expand_word("\"C:\\$DIR `$DIR\"", env, "f", '`'), "C:\\app $DIR");
    EXPECT_EQ(expand_words("a` b c:\\d", env, "f", '`'), (Strings{"a b", "c:\\d"}));
}

TEST(Expand, ExpandWordKeepsWhitespace) {
    auto env = vars({{"X", "1  2"}});
    EXPECT_EQ(expand_word("  a  b  ", env, "f"), "  a  b  ");
    EXPECT_EQ(expand_word("\"a  b\" c $X", env, "f"), "a  b c 1  2");
}

TEST(Expand, ExpandWordsSplitsOnUnquotedWhitespace) {
    auto env = vars({{"X", "1  2"}, {"EMPTY", ""}});
    EXPECT_EQ(expand_words("  a \t b\nc  ", env, "f"), (Strings{"a", "b", "c"}));
    EXPECT_EQ(expand_words("a \"b c\" 'd  e' f\\ g", env, "f"),
              (Strings{"a", "b c", "d  e", "f g"}));
    EXPECT_EQ(expand_words("$X", env, "f"), (Strings{"1", "2"}));
    EXPECT_EQ(expand_words("\"$X\"", env, "f"), (Strings{"1  2"}));
    EXPECT_EQ(expand_words("pre$X", env, "f"), (Strings{"pre1", "2"}));
    EXPECT_EQ(expand_words("$EMPTY", env, "f"), Strings{});
    EXPECT_EQ(expand_words("", env, "f"), Strings{});
    // As in BuildKit, an empty quoted word does not make a word.
    EXPECT_EQ(expand_words("a '' b", env, "f"), (Strings{"a", "b"}));
    EXPECT_EQ(expand_words("80/tcp ${PORT:-443}/udp", env, "f"), (Strings{"80/tcp", "443/udp"}));
}

TEST(Expand, PatternRemoval) {
    auto env = vars({{"FOO", "xxyy"},
                     {"PATHV", "/usr/local/bin/tool.tar.gz"},
                     {"BAR", "x"},
                     {"STARS", "a***yy*"},
                     {"Q", "???y"},
                     {"E", "\xC3\xA9t\xC3\xA9"}});
    EXPECT_EQ(expand_word("${FOO#*x*y}", env, "f"), "y");
    EXPECT_EQ(expand_word("${FOO#*}", env, "f"), "xxyy");
    EXPECT_EQ(expand_word("${FOO#$BAR}", env, "f"), "xyy");
    EXPECT_EQ(expand_word("${FOO#}", env, "f"), "xxyy");
    EXPECT_EQ(expand_word("${FOO##*x}", env, "f"), "yy");
    EXPECT_EQ(expand_word("${FOO##}", env, "f"), "xxyy");
    EXPECT_EQ(expand_word("${FOO%y*}", env, "f"), "xxy");
    EXPECT_EQ(expand_word("${FOO%%y*}", env, "f"), "xx");
    EXPECT_EQ(expand_word("${FOO%}", env, "f"), "xxyy");
    EXPECT_EQ(expand_word("${PATHV##*/}", env, "f"), "tool.tar.gz");
    EXPECT_EQ(expand_word("${PATHV%/*}", env, "f"), "/usr/local/bin");
    EXPECT_EQ(expand_word("${PATHV%.*}", env, "f"), "/usr/local/bin/tool.tar");
    EXPECT_EQ(expand_word("${PATHV%%.*}", env, "f"), "/usr/local/bin/tool");
    EXPECT_EQ(expand_word("${STARS%%\\**\\*}", env, "f"), "a");
    EXPECT_EQ(expand_word("${Q#?\\?}", env, "f"), "?y");
    EXPECT_EQ(expand_word("${ABC:-.}${FOO%x}${ABC:-.}", env, "f"), ".xxyy.");
    EXPECT_EQ(expand_word("${UNSET#x}", env, "f"), "");
    EXPECT_EQ(expand_word("${E#?}", env, "f"), "t\xC3\xA9");
    EXPECT_EQ(expand_word("${E%?}", env, "f"), "\xC3\xA9t");
    auto special = vars({{"FOO", "()[]{}^$.*?|\\x"}});
    EXPECT_EQ(expand_word("${FOO#()[]{\\}^$.\\*\\?|\\\\}", special, "f"), "x");
}

TEST(Expand, PatternReplacement) {
    auto env = vars({{"FOO", "/foo*/*/*.txt"},
                     {"NEEDLE", "\\*/"},
                     {"T", "/tmp/tmp/bar.txt"},
                     {"TMP", "/tmp"},
                     {"P", "/a/foo/b/c.txt"},
                     {"ONE", "/?/"},
                     {"SLASH", "/"},
                     {"URL", "http://google.de"},
                     {"XY", "xxyy"},
                     {"EMPTY", ""}});
    EXPECT_EQ(expand_word("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", env, "f"),
              "/foo.*/*.txt - /foo..*.txt");
    EXPECT_EQ(expand_word("${T/$TMP/} - ${T//$TMP/}", env, "f"), "/tmp/bar.txt - /bar.txt");
    EXPECT_EQ(expand_word("${P/$ONE/$SLASH} - ${P//$ONE/$SLASH}", env, "f"),
              "/foo/b/c.txt - /foo/c.txt");
    EXPECT_EQ(expand_word("${URL/http:\\/\\//https://}", env, "f"), "https://google.de");
    EXPECT_EQ(expand_word("${T//\\//\\/}", env, "f"), "\\/tmp\\/tmp\\/bar.txt");
    EXPECT_EQ(expand_word("${XY/$EMPTY/ww}", env, "f"), "wwxxyy");
    EXPECT_EQ(expand_word("${XY///}", env, "f"), "xxyy");
    EXPECT_EQ(expand_word("${XY/y*/Z}", env, "f"), "xxZ");
    EXPECT_EQ(expand_word("${UNSET/a/b}", env, "f"), "");
}

TEST(Expand, Errors) {
    EXPECT_EQ(expand_error("\"unterminated"),
              "Dockerfile:7: unexpected end of statement while looking for matching double-quote: "
              "\"unterminated");
    EXPECT_EQ(expand_error("'unterminated"),
              "Dockerfile:7: unexpected end of statement while looking for matching single-quote: "
              "'unterminated");
    EXPECT_EQ(expand_error("${VAR"), "Dockerfile:7: syntax error: missing '}': ${VAR");
    EXPECT_EQ(expand_error("${VAR:-x"), "Dockerfile:7: syntax error: missing '}': ${VAR:-x");
    EXPECT_EQ(expand_error("${"), "Dockerfile:7: syntax error: missing '}': ${");
    EXPECT_EQ(expand_error("${}"), "Dockerfile:7: syntax error: bad substitution: ${}");
    EXPECT_EQ(expand_error("${:x}"), "Dockerfile:7: syntax error: bad substitution: ${:x}");
    EXPECT_EQ(expand_error("${{x}}"), "Dockerfile:7: syntax error: bad substitution: ${{x}}");
    EXPECT_EQ(expand_error("${VAR=x}"),
              "Dockerfile:7: unsupported modifier (=) in substitution: ${VAR=x}");
    EXPECT_EQ(expand_error("${VAR:=x}"),
              "Dockerfile:7: unsupported modifier (:=) in substitution: ${VAR:=x}");
    EXPECT_EQ(expand_error("${VAR//x}"),
              "Dockerfile:7: syntax error: missing '/' in ${}: ${VAR//x}");
    EXPECT_EQ(expand_error("${VAR#\\x}"),
              "Dockerfile:7: invalid escape in pattern \"\\x\" (only \\*, \\? and \\\\ are "
              "allowed): ${VAR#\\x}");
    EXPECT_EQ(expand_error("\"a ${X:-\"}"),
              "Dockerfile:7: unexpected end of statement while looking for matching double-quote: "
              "\"a ${X:-\"}");
    std::string multi_line_error;
    try {
        expand_words("\"unterminated\nsecond line", kNoVars, "Dockerfile:2");
    } catch (const Error& e) {
        multi_line_error = e.what();
    }
    EXPECT_EQ(multi_line_error,
              "Dockerfile:2: unexpected end of statement while looking for matching double-quote: "
              "\"unterminated …");
}

TEST(Expand, HeredocBodyKeepsQuotes) {
    auto env = vars({{"NAME", "web"}, {"EMPTY", ""}});
    EXPECT_EQ(expand_heredoc("server_name \"$NAME\";\necho '${NAME}' \\$HOME ${EMPTY:-d}\n", env,
                             "Dockerfile:3"),
              "server_name \"web\";\necho 'web' $HOME d\n");
    EXPECT_EQ(expand_heredoc("it's \"open\n", env, "f"), "it's \"open\n");
}

// ---------------------------------------------------------------------------
// ENV / LABEL / ARG forms

TEST(KeyValues, ModernForm) {
    auto env = vars({{"PATH", "/usr/bin"}});
    EXPECT_EQ(parse_key_values("k=v k2=\"v 2\" k3=v\\ 3", env, "f", true),
              (Pairs{{"k", "v"}, {"k2", "v 2"}, {"k3", "v 3"}}));
    EXPECT_EQ(parse_key_values("PATH=/app/bin:$PATH", env, "f", false),
              (Pairs{{"PATH", "/app/bin:/usr/bin"}}));
    EXPECT_EQ(parse_key_values("a= b=\"\" c='$PATH'", env, "f", false),
              (Pairs{{"a", ""}, {"b", ""}, {"c", "$PATH"}}));
    EXPECT_EQ(parse_key_values("url=http://x/?a=b", env, "f", false),
              (Pairs{{"url", "http://x/?a=b"}}));
    EXPECT_EQ(parse_key_values("MY_NAME=\"John Doe\" MY_DOG=Rex\\ The\\ Dog MY_CAT=fluffy", env,
                               "f", true),
              (Pairs{{"MY_NAME", "John Doe"}, {"MY_DOG", "Rex The Dog"}, {"MY_CAT", "fluffy"}}));
    EXPECT_EQ(parse_key_values("\"com.example.vendor\"=\"ACME Inc\" version=1.0", env, "f", true),
              (Pairs{{"com.example.vendor", "ACME Inc"}, {"version", "1.0"}}));
}

TEST(KeyValues, ValuesSeeTheVariablesBeforeTheInstruction) {
    // docs: ENV abc=bye def=$abc gives def=hello when abc was hello before.
    auto env = vars({{"abc", "hello"}});
    EXPECT_EQ(parse_key_values("abc=bye def=$abc", env, "f", false),
              (Pairs{{"abc", "bye"}, {"def", "hello"}}));
}

TEST(KeyValues, KeysAreExpandedToo) {
    // BuildKit's expandKvpsInPlace expands (and unquotes) keys as well.
    auto env = vars({{"K", "key"}});
    EXPECT_EQ(parse_key_values("$K=$K", env, "f", false), (Pairs{{"key", "key"}}));
    EXPECT_EQ(parse_key_values("'$K'=1", env, "f", false), (Pairs{{"$K", "1"}}));
}

TEST(KeyValues, LegacyForm) {
    auto env = vars({{"USER", "root"}});
    EXPECT_EQ(parse_key_values("key value with  spaces", env, "f", true),
              (Pairs{{"key", "value with  spaces"}}));
    EXPECT_EQ(parse_key_values("MY_NAME \"John Doe\"", env, "f", true),
              (Pairs{{"MY_NAME", "John Doe"}}));
    EXPECT_EQ(parse_key_values("HOME_DIR /home/$USER", env, "f", true),
              (Pairs{{"HOME_DIR", "/home/root"}}));
    EXPECT_EQ(parse_key_values("JAVA_OPTS -Da=b -Dc=d", env, "f", true),
              (Pairs{{"JAVA_OPTS", "-Da=b -Dc=d"}}));
}

TEST(KeyValues, FromAParsedDockerfile) {
    auto df = Dockerfile::parse("FROM a\nENV A=1 \\\n    B=\"two words\" \\\n    C=3\n");
    EXPECT_EQ(parse_key_values(only_instruction(df).raw, kNoVars, "Dockerfile:2", true),
              (Pairs{{"A", "1"}, {"B", "two words"}, {"C", "3"}}));
}

TEST(KeyValues, BacktickEscape) {
    EXPECT_EQ(parse_key_values("dir=C:\\app k=a` b", kNoVars, "f", true, '`'),
              (Pairs{{"dir", "C:\\app"}, {"k", "a b"}}));
}

TEST(KeyValues, Errors) {
    auto message = [](std::string_view raw, bool legacy) {
        try {
            parse_key_values(raw, kNoVars, "Dockerfile:5", legacy);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_EQ(message("key value", false),
              "Dockerfile:5: expected key=value, \"key\" has no '=': key value");
    EXPECT_EQ(message("key", true),
              "Dockerfile:5: \"key\" has no value (use key=value or key value): key");
    EXPECT_EQ(message("a=1 b", true),
              "Dockerfile:5: can't find = in \"b\"; the form is key=value (quote values with "
              "spaces): a=1 b");
    EXPECT_EQ(message("", true), "Dockerfile:5: missing arguments, expected key=value: ");
    EXPECT_EQ(message("a=${X:?needed}", true), "Dockerfile:5: X: needed: ${X:?needed}");
    EXPECT_EQ(message("a=\"open", true),
              "Dockerfile:5: unexpected end of statement while looking for matching double-quote: "
              "\"open");
}

TEST(Args, NameAndDefault) {
    auto env = vars({{"BASE", "alpine"}});
    EXPECT_EQ(parse_arg("VERSION", env, "f"),
              (std::pair<std::string, std::optional<std::string>>{"VERSION", std::nullopt}));
    EXPECT_EQ(parse_arg("VERSION=1.2", env, "f").second, "1.2");
    EXPECT_EQ(parse_arg("EMPTY=", env, "f").second, "");
    EXPECT_EQ(parse_arg("MSG=\"hello world\"", env, "f").second, "hello world");
    EXPECT_EQ(parse_arg("IMG=${BASE:-debian}:latest", env, "f").second, "alpine:latest");
    EXPECT_EQ(parse_arg("IMG=$UNSET", env, "f").second, "");
    EXPECT_EQ(parse_arg("  PAD=1  ", env, "f").first, "PAD");
}

TEST(Args, SeveralNames) {
    auto env = vars({{"X", "ex"}});
    auto args = parse_args("a b=2 c=\"x y\" d=$X", env, "f");
    ASSERT_EQ(args.size(), 4u);
    EXPECT_EQ(args[0].first, "a");
    EXPECT_EQ(args[0].second, std::nullopt);
    EXPECT_EQ(args[1].second, "2");
    EXPECT_EQ(args[2].second, "x y");
    EXPECT_EQ(args[3].second, "ex");
}

TEST(Args, Errors) {
    auto message = [](std::string_view raw) {
        try {
            parse_arg(raw, kNoVars, "Dockerfile:9");
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_EQ(message("a b"), "Dockerfile:9: ARG declares 2 names, expected one: a b");
    EXPECT_EQ(message("=x"), "Dockerfile:9: ARG names can not be blank: =x");
    EXPECT_EQ(message(""), "Dockerfile:9: ARG needs a name (ARG name or ARG name=default): ");
    EXPECT_EQ(message("a=\"${B:?no B}\""), "Dockerfile:9: B: no B: \"${B:?no B}\"");
}

// Arbitrary input either parses or throws cascade::Error: no other exception,
// no crash (the sanitizer build checks memory). Deterministic pseudo-random.
TEST(DockerfileRobustness, ArbitraryInputOnlyThrowsCascadeErrors) {
    const std::vector<std::string> pieces = {
        "FROM a",     "RUN ",     "COPY ",  "ENV ", "ARG ", "ONBUILD ", "HEALTHCHECK ",
        "\\",         "`",        "\n",     "\r\n", "\t",   " ",        "#",
        "# escape=`", "<<EOF",    "<<-'X'", "EOF",  "X",    "[\"a\"",   "]",
        "\"",         "'",        "$",      "${",   "}",    ":-",       ":?",
        "#",          "%%",       "/",      "//",   "=",    "--from=",  "--link",
        "--",         "\xC3\xA9", "*",      "?",    "AS b"};
    uint64_t state = 42;
    auto next = [&state]() {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        return static_cast<size_t>(state >> 33);
    };
    for (int round = 0; round < 3000; ++round) {
        std::string text;
        size_t n = next() % 24;
        for (size_t i = 0; i < n; ++i)
            text += pieces[next() % pieces.size()];
        try {
            auto df = Dockerfile::parse(text);
            for (const auto& stage : df.stages) {
                for (const auto& ins : stage.instructions) {
                    try {
                        expand_words(ins.raw, kNoVars, "f", df.escape);
                        if (ins.keyword == "ENV") parse_key_values(ins.raw, kNoVars, "f", true);
                        if (ins.keyword == "ARG") parse_args(ins.raw, kNoVars, "f");
                        for (const auto& doc : ins.heredocs)
                            expand_heredoc(doc.content, kNoVars, "f");
                    } catch (const Error&) {
                    }
                }
            }
        } catch (const Error&) {
        }
    }
}

// The whole path the builder takes: parse, then expand what it needs.
TEST(DockerfileEndToEnd, ParseThenExpand) {
    auto df = Dockerfile::parse(R"(# syntax=docker/dockerfile:1
ARG BASE=httpd-base
ARG TAG=latest
FROM ${BASE}:${TAG}
ENV DOCROOT=/var/www \
    GREETING="hello world"
COPY index.html ${DOCROOT}/
EXPOSE 8080
CMD ["httpd", "-f"]
)");
    std::map<std::string, std::string> args;
    for (const auto& ins : df.global_args) {
        auto [name, value] =
            parse_arg(ins.raw, vars(args), "Dockerfile:" + std::to_string(ins.line));
        args[name] = value.value_or("");
    }
    const auto& stage = df.stages.at(0);
    EXPECT_EQ(expand_word(stage.base, vars(args), "Dockerfile:4"), "httpd-base:latest");
    std::map<std::string, std::string> env;
    for (const auto& [k, v] :
         parse_key_values(stage.instructions.at(0).raw, vars(env), "Dockerfile:5", true)) {
        env[k] = v;
    }
    EXPECT_EQ(env["GREETING"], "hello world");
    EXPECT_EQ(expand_words(stage.instructions.at(1).raw, vars(env), "Dockerfile:7"),
              (Strings{"index.html", "/var/www/"}));
    EXPECT_EQ(stage.instructions.at(3).exec_args, (Strings{"httpd", "-f"}));
}

}  // namespace
}  // namespace cascade::engine
