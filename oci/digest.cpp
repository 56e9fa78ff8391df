#include "oci/digest.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>

#include "oci/error.hpp"
#include "oci/fs.hpp"

namespace cascade::oci {

namespace {

bool is_lower_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool is_lower_hex(char c) {
    return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9');
}

// algorithm ::= algorithm-component (algorithm-separator algorithm-component)*
// algorithm-component ::= [a-z0-9]+ ; algorithm-separator ::= [+._-]
bool valid_algorithm_grammar(std::string_view a) {
    if (a.empty()) return false;
    bool need_component = true;
    for (char c : a) {
        if (is_lower_alnum(c)) {
            need_component = false;
        } else if (c == '+' || c == '.' || c == '_' || c == '-') {
            if (need_component) return false;
            need_component = true;
        } else {
            return false;
        }
    }
    return !need_component;
}

// encoded ::= [a-zA-Z0-9=_-]+
bool valid_encoded_grammar(std::string_view e) {
    if (e.empty()) return false;
    for (char c : e) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '=' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

// Returns an empty string when valid, else what is wrong.
std::string digest_problem(std::string_view text) {
    if (text.empty()) return "it is empty";
    auto colon = text.find(':');
    if (colon == std::string_view::npos) return "it has no ':' between algorithm and hex";
    std::string_view algorithm = text.substr(0, colon);
    std::string_view encoded = text.substr(colon + 1);
    if (!valid_algorithm_grammar(algorithm))
        return "the algorithm \"" + std::string(algorithm) +
               "\" is not lower-case letters/digits separated by one of +._-";
    if (!valid_encoded_grammar(encoded))
        return "the encoded part is empty or has characters outside [a-zA-Z0-9=_-]";
    size_t expected_len = 0;
    if (algorithm == "sha256") {
        expected_len = 64;
    } else if (algorithm == "sha512") {
        expected_len = 128;
    } else {
        return "the algorithm \"" + std::string(algorithm) +
               "\" is not supported (use sha256 or sha512)";
    }
    if (encoded.size() != expected_len)
        return std::string(algorithm) + " needs " + std::to_string(expected_len) +
               " hex characters, got " + std::to_string(encoded.size());
    for (char c : encoded)
        if (!is_lower_hex(c)) return "the hex part must be lower-case hexadecimal";
    return {};
}

std::string hex(const unsigned char* data, size_t size) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    out.reserve(size * 2);
    for (size_t i = 0; i < size; i++) {
        out += digits[data[i] >> 4];
        out += digits[data[i] & 15];
    }
    return out;
}

}  // namespace

Digest Digest::parse(std::string_view text) {
    std::string problem = digest_problem(text);
    if (!problem.empty())
        throw Error("invalid digest \"" + std::string(text.substr(0, 200)) + "\": " + problem);
    auto colon = text.find(':');
    return Digest(std::string(text.substr(0, colon)), std::string(text.substr(colon + 1)));
}

std::optional<Digest> Digest::try_parse(std::string_view text) {
    if (!digest_problem(text).empty()) return std::nullopt;
    auto colon = text.find(':');
    return Digest(std::string(text.substr(0, colon)), std::string(text.substr(colon + 1)));
}

Digest Digest::sha256_of(std::string_view bytes) {
    Sha256 h;
    h.update(bytes);
    return h.digest();
}

Digest Digest::sha256_of_file(const std::string& path) {
    fs::Fd fd = fs::open_or_throw(path, O_RDONLY);
    return sha256_of_fd(fd.get(), path);
}

Digest Digest::sha256_of_fd(int fd, const std::string& where) {
    Sha256 h;
    thread_local std::string buf(1 << 16, '\0');
    while (true) {
        ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            throw sys_error("read", where, errno);
        }
        if (n == 0) break;
        h.update(buf.data(), static_cast<size_t>(n));
    }
    return h.digest();
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1) {
        EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
        throw Error("OpenSSL: cannot initialise a SHA-256 context");
    }
}

Sha256::~Sha256() {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
}

void Sha256::update(const void* data, size_t size) {
    if (finished_) throw Error("Sha256::update called after digest(); use a new Sha256");
    if (size == 0) return;
    if (EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, size) != 1)
        throw Error("OpenSSL: SHA-256 update failed");
    bytes_ += size;
}

Digest Sha256::digest() {
    if (finished_) throw Error("Sha256::digest called twice; use a new Sha256");
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), out, &len) != 1 || len != 32)
        throw Error("OpenSSL: SHA-256 final failed");
    finished_ = true;
    return Digest("sha256", hex(out, len));
}

}  // namespace cascade::oci
