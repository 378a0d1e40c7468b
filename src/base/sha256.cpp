#include "base/sha256.hpp"

#include <openssl/evp.h>

#include "stagelog/error.hpp"

namespace stagelog::detail {

Sha256 sha256(std::string_view data) {
  Sha256 digest{};
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != digest.size()) {
    throw Error("SHA-256 failed (OpenSSL EVP_Digest)");
  }
  return digest;
}

}  // namespace stagelog::detail
