#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "fake_clock.hpp"
#include "memory_sink.hpp"
#include "stagelog/recorder.hpp"

namespace stagelog::test {

// A recorder on a FakeClock with a MemorySink attached: what most recorder tests start from.
struct Recording {
  explicit Recording(Options options = {}) : recorder(with_clock(std::move(options), clock)) {
    recorder.add_sink(sink);
  }
  // Everything recorded so far, after a flush.
  std::vector<OwnedEvent> events() {
    recorder.flush();
    return sink->events();
  }

  FakeClock clock;
  std::shared_ptr<MemorySink> sink = std::make_shared<MemorySink>();
  Recorder recorder;

 private:
  static Options with_clock(Options options, FakeClock& clock) {
    if (!options.clock) options.clock = clock.fn();
    return options;
  }
};

}  // namespace stagelog::test
