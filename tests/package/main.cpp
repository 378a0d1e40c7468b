// Built against the installed package: only <stagelog/...> headers, no third-party ones.
#include <stagelog/stagelog.hpp>
#include <stagelog/version.hpp>
#include <string_view>

// The CMake package's version (its version file) is the header's: one version source.
#ifdef STAGELOG_PACKAGE_VERSION
static_assert(std::string_view(STAGELOG_VERSION_STRING) == STAGELOG_PACKAGE_VERSION,
              "stagelogConfigVersion.cmake and stagelog/version.hpp disagree");
#endif

int main() {
  stagelog::Recorder recorder;
  recorder.add_sink(std::make_shared<stagelog::ConsoleSink>());
  recorder.set_worker("consumer");
  { stagelog::StageScope stage(recorder, "INSTALLED"); }
  return 0;
}
