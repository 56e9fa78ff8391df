// cascade::Error — the one exception type every module throws.
//
// Messages say what was wrong, where (path, file:line, repo, digest) and, when
// there is one, what to do about it. `errno_message` appends strerror(errno).
#pragma once

#include <stdexcept>
#include <string>

namespace cascade {

class Error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// "<what> <path>: <strerror(err)>"; e.g. sys_error("open", "/x", errno).
Error sys_error(const std::string& operation, const std::string& path, int err);

}  // namespace cascade
