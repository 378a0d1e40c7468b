// Built against the installed package: only <stagelog/...> headers, no third-party ones.
#include <stagelog/stagelog.hpp>

int main() {
  stagelog::Recorder recorder;
  recorder.add_sink(std::make_shared<stagelog::ConsoleSink>());
  recorder.set_worker("consumer");
  { stagelog::StageScope stage(recorder, "INSTALLED"); }
  return 0;
}
