// The Dockerfile front end: text in, instructions out. Pure: no file system,
// no images. Every error is a cascade::Error "<file>:<line>: <what>: <text>".
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cascade::engine {

// A here-document attached to RUN, COPY or ADD (`<<EOF` … `EOF`).
struct Heredoc {
    std::string name;     // the delimiter with quotes removed: "EOF"
    std::string content;  // the lines between, each ending in "\n"; for
                          // `<<-EOF` leading tabs are already stripped
    // false when any part of the delimiter was quoted (`<<"EOF"`, `<<'EOF'`):
    // then the content is used literally. COPY/ADD expand it with
    // expand_heredoc() when true; RUN hands it to the shell either way.
    bool expand = true;
};

struct Instruction {
    int line = 0;          // 1-based line where the instruction starts
    std::string keyword;   // upper case: "RUN", "COPY", …
    std::string original;  // the instruction as written, continuations joined
    // "--name=value" flags before the arguments, in order ("--from", "stage").
    std::vector<std::pair<std::string, std::string>> flags;
    bool exec_form = false;  // arguments were a JSON array
    // exec form: the JSON array's strings. Shell form: see `raw`.
    std::vector<std::string> exec_args;
    // The argument text after the keyword and flags, unexpanded, continuations
    // joined (backslash-newline removed), leading/trailing space trimmed.
    // With heredocs: the first line's text only ("<<EOF", "cat <<EOF > /x").
    // HEALTHCHECK: "CMD curl -f http://x/" or "NONE"; exec_form/exec_args
    //   describe what follows CMD when that is a JSON array.
    // ONBUILD: the trigger as written ("RUN make"), validated as an
    //   instruction at parse time; its heredocs are in `heredocs`.
    std::string raw;
    // Here-documents in the order their delimiters appear (RUN, COPY, ADD
    // and ONBUILD of those, shell form only).
    std::vector<Heredoc> heredocs;

    std::optional<std::string> flag(std::string_view name) const;
};

struct Stage {
    int index = 0;
    int line = 0;
    std::string base;                       // FROM's image text, unexpanded
    std::string name;                       // "AS name", lower-cased; "" if none
    std::string platform;                   // --platform value, unexpanded
    std::vector<Instruction> instructions;  // after FROM
};

struct Dockerfile {
    std::string file_name = "Dockerfile";
    char escape = '\\';
    std::string syntax;  // "# syntax=" directive value, "" if none (informational)
    std::vector<Instruction> global_args;  // ARGs before the first FROM
    std::vector<Stage> stages;

    // Parses the text. Directives (# escape=, # syntax=) at the top, comments,
    // empty lines, line continuations (also across comment lines inside an
    // instruction), exec and shell forms (text that is not a valid JSON
    // array is the shell form, as in Docker), flags, heredocs. Throws
    // cascade::Error with file:line on an unknown instruction, a missing FROM,
    // an instruction other than ARG before FROM, missing arguments, bad or
    // unknown flags, a JSON array of non-strings, an unterminated heredoc …
    static Dockerfile parse(std::string_view text, std::string file_name = "Dockerfile");
};

// The instructions of a base image's ONBUILD triggers (its config's
// OnBuild), each parsed on its own with the default escape character, as
// Docker does; every instruction gets `line` (the FROM's) as its line.
// Throws cascade::Error "<where>: ..." for a trigger that does not parse, is
// not exactly one instruction, or is ONBUILD, FROM or MAINTAINER.
std::vector<Instruction> parse_onbuild_triggers(const std::vector<std::string>& triggers,
                                                const std::string& where, int line);

// Variable lookup for expansion; nullopt = unset.
using Lookup = std::function<std::optional<std::string>(const std::string&)>;

// Docker's word processing (BuildKit's shell lexer): $VAR, ${VAR},
// ${VAR:-word}, ${VAR:+word}, ${VAR-word}, ${VAR+word}, ${VAR:?msg} and
// ${VAR?msg} (throw), ${VAR#pat} ${VAR##pat} ${VAR%pat} ${VAR%%pat}
// ${VAR/pat/repl} ${VAR//pat/repl} (pat: * and ?); single quotes keep
// text literal, double quotes allow expansion, the escape character escapes.
// `expand_word` returns one string with quotes removed (for ENV values,
// WORKDIR, USER …); `expand_words` also splits on unquoted whitespace (COPY
// sources, EXPOSE ports …). Errors name `where` ("Dockerfile:7").
std::string expand_word(std::string_view text, const Lookup& lookup, const std::string& where,
                        char escape = '\\');
std::vector<std::string> expand_words(std::string_view text, const Lookup& lookup,
                                      const std::string& where, char escape = '\\');

// ENV / LABEL / ARG argument forms: "k=v k2=\"v 2\"" or legacy "k v w"
// (ENV/LABEL only). Keys and values are expanded with `lookup` (BuildKit's
// expandKvpsInPlace), so quotes around a key are removed too.
std::vector<std::pair<std::string, std::string>> parse_key_values(std::string_view raw,
                                                                  const Lookup& lookup,
                                                                  const std::string& where,
                                                                  bool allow_legacy,
                                                                  char escape = '\\');

// ARG's argument: "name" or "name=default" (default expanded with lookup).
// Throws when the ARG declares several names; use parse_args for those.
std::pair<std::string, std::optional<std::string>> parse_arg(std::string_view raw,
                                                             const Lookup& lookup,
                                                             const std::string& where,
                                                             char escape = '\\');

// ARG with one or more declarations: "a b=2 c=\"x y\"" (Docker allows several
// per instruction). Like ENV, every value sees the variables as they were
// before this instruction (`lookup`), not the names it declares itself.
std::vector<std::pair<std::string, std::optional<std::string>>> parse_args(std::string_view raw,
                                                                           const Lookup& lookup,
                                                                           const std::string& where,
                                                                           char escape = '\\');

// Variable expansion of a COPY/ADD heredoc body (BuildKit's raw expansion):
// $VAR and ${VAR…} are replaced, quotes are ordinary characters, a backslash
// escapes the next character (backslash-dollar gives a literal "$").
std::string expand_heredoc(std::string_view content, const Lookup& lookup,
                           const std::string& where);

// Go's unicode.IsSpace on ASCII: space, \t, \n, \r, \v, \f.
inline bool is_ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Go's strings.TrimSpace on ASCII white space (enough for Dockerfile words
// and file names).
inline std::string_view trim_space(std::string_view s) {
    while (!s.empty() && is_ascii_space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_ascii_space(s.back()))
        s.remove_suffix(1);
    return s;
}

}  // namespace cascade::engine
