#pragma once

#include <stdexcept>
#include <string>

namespace stagelog {

// Thrown by setup calls (constructing a sink, bad options) with the path or value that was
// wrong in the message. The hot path never throws.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace stagelog
