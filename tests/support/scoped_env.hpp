#pragma once

#include <stdlib.h>  // setenv, unsetenv (POSIX)

#include <cstdlib>
#include <optional>
#include <string>

namespace stagelog::test {

// Sets (value non-null) or unsets (value null) an environment variable for the life of the
// object, then puts back what was there: the old value, or no variable at all. Not thread-safe
// (setenv is not): make it before the threads that read the environment start.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value == nullptr) {
      ::unsetenv(name);
    } else {
      ::setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace stagelog::test
