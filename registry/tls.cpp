#include "registry/tls.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <memory>

#include "oci/error.hpp"

namespace cascade::registry {

namespace {

struct BioFree {
    void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
    void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

const char* kMakeOne =
    "; make a self-signed pair with `openssl req -x509 -newkey rsa:2048 -nodes -days 365 "
    "-subj /CN=HOST -keyout tls.key -out tls.crt`";

std::unique_ptr<BIO, BioFree> open_pem(const std::filesystem::path& file, const std::string& what) {
    std::error_code ec;
    if (!std::filesystem::exists(file, ec))
        throw Error(what + " " + file.string() + ": no such file" + kMakeOne);
    errno = 0;
    std::unique_ptr<BIO, BioFree> bio(BIO_new_file(file.c_str(), "r"));
    if (!bio) {
        int err = errno ? errno : EACCES;
        ERR_clear_error();
        throw sys_error("open " + what, file.string(), err);
    }
    return bio;
}

// No passphrase prompt: the daemon runs unattended.
int no_passphrase(char*, int, int, void*) {
    return -1;
}

}  // namespace

void check_tls_files(const std::filesystem::path& certificate, const std::filesystem::path& key) {
    auto cert_bio = open_pem(certificate, "tls.certificate");
    std::unique_ptr<X509, X509Free> cert(
        PEM_read_bio_X509(cert_bio.get(), nullptr, no_passphrase, nullptr));
    ERR_clear_error();
    if (!cert)
        throw Error("tls.certificate " + certificate.string() +
                    ": not a PEM certificate (expected -----BEGIN CERTIFICATE-----)");

    auto key_bio = open_pem(key, "tls.key");
    std::unique_ptr<EVP_PKEY, KeyFree> pkey(
        PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_passphrase, nullptr));
    ERR_clear_error();
    if (!pkey)
        throw Error("tls.key " + key.string() +
                    ": not an unencrypted PEM private key (remove a passphrase with `openssl pkey "
                    "-in KEY -out KEY.plain`)");
    if (X509_check_private_key(cert.get(), pkey.get()) != 1) {
        ERR_clear_error();
        throw Error("tls.key " + key.string() + " does not belong to tls.certificate " +
                    certificate.string() + ": configure the key the certificate was made with");
    }
}

}  // namespace cascade::registry
