#pragma once

// stagelog: which stage is every worker in, for how long, is it alive, and where and why did
// it fail. Start with Recorder (recorder.hpp) and StageScope (stage.hpp).

#include "stagelog/agent.hpp"
#include "stagelog/error.hpp"
#include "stagelog/event.hpp"
#include "stagelog/field.hpp"
#include "stagelog/hash.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/recorder.hpp"
#include "stagelog/sink.hpp"
#include "stagelog/sinks/console_sink.hpp"
#include "stagelog/sinks/file_sink.hpp"
#include "stagelog/sinks/heartbeat_file_sink.hpp"
#include "stagelog/sinks/jsonl_sink.hpp"
#include "stagelog/sinks/network_sink.hpp"
#include "stagelog/sinks/progress_sink.hpp"
#include "stagelog/sinks/text_sink.hpp"
#include "stagelog/sinks/worker_file_sink.hpp"
#include "stagelog/stage.hpp"
#include "stagelog/watchdog.hpp"
#include "stagelog/worker_logging.hpp"
#include "stagelog/workflow.hpp"
