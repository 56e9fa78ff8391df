// Content digests ("sha256:<64 hex>") and a streaming SHA-256 (OpenSSL EVP).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cascade::oci {

class Digest {
  public:
    Digest() = default;

    // Parses "algorithm:encoded" per the OCI image spec's digest grammar. Only
    // sha256 (64 lower-case hex) and sha512 (128 lower-case hex) are accepted.
    // Throws cascade::Error saying what is wrong with the text.
    static Digest parse(std::string_view text);
    static std::optional<Digest> try_parse(std::string_view text);

    // sha256 of exactly these bytes.
    static Digest sha256_of(std::string_view bytes);
    // sha256 of a file's bytes, streamed.
    static Digest sha256_of_file(const std::string& path);
    // The sha256 of what is left to read from `fd` (read to its end); errors
    // name `where`.
    static Digest sha256_of_fd(int fd, const std::string& where);

    const std::string& algorithm() const { return algorithm_; }
    const std::string& encoded() const { return encoded_; }  // hex part
    std::string str() const { return algorithm_ + ":" + encoded_; }
    bool empty() const { return encoded_.empty(); }

    // A short form for humans: first 12 hex characters.
    std::string short_hex() const { return encoded_.substr(0, 12); }

    auto operator<=>(const Digest&) const = default;

  private:
    friend class Sha256;
    Digest(std::string algorithm, std::string encoded)
        : algorithm_(std::move(algorithm)), encoded_(std::move(encoded)) {}
    std::string algorithm_;
    std::string encoded_;
};

// Incremental SHA-256; feed bytes with update(), then digest() once.
class Sha256 {
  public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;

    void update(const void* data, size_t size);
    void update(std::string_view s) { update(s.data(), s.size()); }
    Digest digest();  // finalizes; the object can't be updated afterwards
    uint64_t bytes() const { return bytes_; }

  private:
    void* ctx_;  // EVP_MD_CTX*
    uint64_t bytes_ = 0;
    bool finished_ = false;
};

}  // namespace cascade::oci

template <>
struct std::hash<cascade::oci::Digest> {
    size_t operator()(const cascade::oci::Digest& d) const noexcept {
        return std::hash<std::string>()(d.encoded());
    }
};
