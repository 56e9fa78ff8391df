// A build config's git source (OpenShift's spec.source.git): the repository
// is cloned with the git command into a scratch directory, at a branch, tag or
// commit, and the commit that was checked out is recorded with the build.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace cascade::engine {

struct GitSource {
    std::string uri;  // anything `git clone` takes: URL, file://, a local path
    std::string ref;  // branch, tag or commit; "" = the remote's default branch
};

// What a build was built from (OpenShift's SourceRevision).
struct GitRevision {
    std::string commit;   // full hash
    std::string author;   // "Name <email>"
    std::string message;  // the subject line
    nlohmann::json to_json(const GitSource& source) const;
};

// Clones `source` into `dir` (which must not exist; its parent must) and
// checks out the ref: a branch or tag is cloned shallow (--depth 1), a commit
// with a full clone and a detached checkout. `who` names the build config in
// errors, which also carry git's own message. Progress lines go to `log`.
GitRevision git_checkout(const GitSource& source, const std::filesystem::path& dir,
                         const std::string& who,
                         const std::function<void(const std::string&)>& log = {});

}  // namespace cascade::engine
