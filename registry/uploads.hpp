// Blob upload sessions of the Distribution API (POST … PATCH … PUT ?digest=).
//
// A session is a directory <ingest>/upload-<uuid>/ holding the repository name
// and the data received so far. Nothing in it is visible as a blob until
// `finish` verified the digest and moved the data into the BlobStore. The
// running hash lives in memory and is recomputed from the data file when the
// process restarted, so uploads survive a daemon restart.
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
    using Receiver = std::function<bool(const char*, size_t)>;
    bool append(Session& s, const std::function<bool(const Receiver&)>& read);
    int64_t size(Session& s);
    // Verifies that the data has `expected` as digest, moves it into the blob
    // store and ends the session. Throws DigestMismatch (and ends the session)
    // when the data does not match.
    void finish(const std::string& id, Session& s, const oci::Digest& expected);

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

}  // namespace cascade::registry
