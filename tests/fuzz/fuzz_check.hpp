// The invariant checks of the libFuzzer targets: a violated invariant prints
// what and the detail (the input, the exception) and aborts, so that
// libFuzzer keeps the input as a crash.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace cascade::fuzz {

[[noreturn]] inline void violated(const char* what, std::string_view detail = {}) {
    std::fprintf(stderr, "invariant violated: %s\n%.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

inline void check(bool ok, const char* what, std::string_view detail = {}) {
    if (!ok) violated(what, detail);
}

}  // namespace cascade::fuzz
