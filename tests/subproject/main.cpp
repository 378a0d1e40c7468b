// Built by a project that includes stagelog with add_subdirectory: only <stagelog/...> headers.
#include <stagelog/stagelog.hpp>

int main() {
  stagelog::Recorder recorder;
  recorder.add_sink(std::make_shared<stagelog::ConsoleSink>());
  recorder.set_worker("parent");
  { stagelog::StageScope stage(recorder, "SUBPROJECT"); }
  return 0;
}
