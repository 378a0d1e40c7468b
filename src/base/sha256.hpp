#pragma once

#include <array>
#include <string_view>

namespace stagelog::detail {

using Sha256 = std::array<unsigned char, 32>;

// SHA-256 of the bytes (OpenSSL EVP): output hashes (hash_output), the tokens file's hashes,
// the server's ETags. Throws Error if OpenSSL fails.
Sha256 sha256(std::string_view data);

}  // namespace stagelog::detail
