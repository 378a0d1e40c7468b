#pragma once

#include <array>
#include <span>
#include <string>
#include <string_view>

namespace stagelog::detail {

using Sha256 = std::array<unsigned char, 32>;

// SHA-256 of the bytes (OpenSSL EVP): output hashes (hash_output) and the tokens file's
// hashes. Throws Error if OpenSSL fails.
Sha256 sha256(std::string_view data);

// Lowercase hex, two digits per byte.
std::string to_hex(std::span<const unsigned char> bytes);

}  // namespace stagelog::detail
