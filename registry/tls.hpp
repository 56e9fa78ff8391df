// TLS material for the daemon's listener: a PEM certificate (chain) and its
// unencrypted PEM private key, checked before the server loads them so that a
// wrong path, an unreadable file or a key of another certificate is reported
// as such instead of as a listener that does not start.
#pragma once

#include <filesystem>

namespace cascade::registry {

// Throws cascade::Error naming the file and what to do: missing, unreadable,
// not PEM, an encrypted key, or a key that does not match the certificate.
void check_tls_files(const std::filesystem::path& certificate, const std::filesystem::path& key);

}  // namespace cascade::registry
