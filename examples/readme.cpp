#include <stagelog/stagelog.hpp>
#include <thread>
enum class Stage { AGENT, JUDGE };
void work(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

int main() {
  stagelog::Recorder recorder;
  recorder.add_sink(std::make_shared<stagelog::ConsoleSink>());
  recorder.set_worker("T0_00");
  stagelog::RunScope run(recorder, "tier-T0");
  {
    stagelog::StageScope agent(recorder, Stage::AGENT);
    work(1300);
    agent.complete(stagelog::kv("tokens", 1247));
  }
  {
    stagelog::StageScope judge(recorder, Stage::JUDGE);
    work(420);
  }
}
