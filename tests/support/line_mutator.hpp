#pragma once

// Inputs for the parsers' fuzz tests, from a fixed seed so a failure repeats: one time in ten a
// line of random bytes (from the alphabet, and one byte in four any byte at all), otherwise a
// seed line with one to three mutations (a bit flipped, a byte replaced, the line cut, bytes
// inserted, erased or repeated).

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stagelog::test {

class LineMutator {
 public:
  LineMutator(std::uint32_t seed, std::string alphabet)
      : rng_(seed), alphabet_(std::move(alphabet)) {}

  // A random whole number in [0, n).
  std::size_t pick(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }

  char random_char() {
    if (pick(4) == 0) return static_cast<char>(pick(256));
    return alphabet_[pick(alphabet_.size())];
  }

  // The next input. A random line starts with random_prefix half of the time (a "{" makes
  // the JSON readers go deeper than their first byte).
  std::string next(const std::vector<std::string>& seeds, std::string_view random_prefix = {}) {
    std::string line;
    if (pick(10) == 0) {
      std::size_t n = pick(80);
      if (!random_prefix.empty() && pick(2) == 0) line = random_prefix;
      for (std::size_t i = 0; i < n; ++i) line += random_char();
      return line;
    }
    line = seeds[pick(seeds.size())];
    std::size_t mutations = 1 + pick(3);
    for (std::size_t m = 0; m < mutations; ++m) {
      if (line.empty()) line += random_char();
      std::size_t pos = pick(line.size());
      switch (pick(7)) {
        case 0:
          line[pos] = static_cast<char>(line[pos] ^ (1 << pick(8)));  // A bit flipped.
          break;
        case 1:
          line[pos] = static_cast<char>(pick(256));
          break;
        case 2:
          line.resize(pos);  // Cut.
          break;
        case 3:
          line.insert(pos, 1 + pick(4), random_char());
          break;
        case 4:
          line.erase(pos, 1 + pick(6));
          break;
        case 5:
          line.insert(pos, line.substr(pick(line.size()), pick(12)));  // Repeated.
          break;
        case 6:
          line[pos] = random_char();
          break;
      }
    }
    return line;
  }

 private:
  std::mt19937 rng_;
  std::string alphabet_;
};

}  // namespace stagelog::test
