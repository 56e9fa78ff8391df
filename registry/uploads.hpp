// Blob upload sessions of the Distribution API (POST … PATCH … PUT ?digest=).
//
// A session is a directory <ingest>/upload-<uuid>/ holding the repository name
// and the data received so far. Nothing in it is visible as a blob until
// `finish` verified the digest and moved the data into the BlobStore. The
// running hash lives in memory and is recomputed from the data file when the
// process restarted, so uploads survive a daemon restart.
//
// A session's last activity is its data file's modification time: writes
// move it, and so does every request that finds the session (a status GET).
// `expire` removes sessions idle for longer than a limit; it is safe to run
// while requests are served (a session in use is never removed).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "oci/digest.hpp"
#include "oci/error.hpp"
#include "registry/blob_store.hpp"

namespace cascade::registry {

class UploadSessions {
  public:
    explicit UploadSessions(BlobStore& blobs) : blobs_(blobs) {}

    class Session;

    // Starts a session for `repository`; returns its id (a UUID).
    std::string create(const std::string& repository);
    // The session, or null when there is none with this id for this repository.
    std::shared_ptr<Session> find(const std::string& repository, const std::string& id);
    // Removes a session and its data; false when it did not exist.
    bool cancel(const std::string& repository, const std::string& id);

    // Appends everything `read` produces (a callback that feeds chunks to the
    // receiver it is given, like httplib's ContentReader). Returns false when
    // the reader failed (connection lost): what arrived stays in the session.
    // Throws when the session is gone or on I/O errors.
    // With `expected_offset`, the data must continue the upload exactly there
    // (a chunk's Content-Range); otherwise UploadOffsetMismatch is thrown and
    // nothing is read.
    using Receiver = std::function<bool(const char*, size_t)>;
    bool append(Session& s, const std::function<bool(const Receiver&)>& read,
                std::optional<int64_t> expected_offset = std::nullopt);
    int64_t size(Session& s);
    // Verifies that the data has `expected` as digest, moves it into the blob
    // store and ends the session. Throws DigestMismatch (and ends the session)
    // when the data does not match.
    void finish(const std::string& id, Session& s, const oci::Digest& expected);

    // Removes sessions whose last activity is more than `max_idle_seconds`
    // ago; returns how many.
    size_t expire(int64_t max_idle_seconds);

    // Upload ids are UUIDs in lower-case hex; anything else never names a session.
    static bool valid_id(const std::string& id);

  private:
    std::shared_ptr<Session> load(const std::string& repository, const std::string& id);
    std::filesystem::path dir_of(const std::string& id) const;
    void forget(const std::string& id);

    BlobStore& blobs_;
    std::mutex mu_;
    std::map<std::string, std::shared_ptr<Session>> sessions_;
};

struct DigestMismatch : Error {
    using Error::Error;
};

// Thrown by append when a chunk does not start where the upload stands.
struct UploadOffsetMismatch : Error {
    UploadOffsetMismatch(const std::string& message, int64_t current)
        : Error(message), current_size(current) {}
    int64_t current_size;
};

}  // namespace cascade::registry
