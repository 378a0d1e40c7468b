// stagelog._stagelog: the C++ recorder for Python (pybind11). The pure-Python layer in
// python/stagelog/ builds the user-facing API (stage(), run(), Handler) on these types.
//
// GIL: every call that records an event or waits on the backend releases the GIL once its
// Python arguments are converted, so a thread blocked on a full ring buffer or in flush()
// never stops the other Python threads. Sinks are all C++: the backend thread never needs
// the GIL, so a recorder can flush and be destroyed during interpreter shutdown.

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stagelog/agent.hpp"
#include "stagelog/error.hpp"
#include "stagelog/hash.hpp"
#include "stagelog/recorder.hpp"
#include "stagelog/sinks/console_sink.hpp"
#include "stagelog/sinks/jsonl_sink.hpp"
#include "stagelog/sinks/network_sink.hpp"
#include "stagelog/sinks/text_sink.hpp"
#include "stagelog/sinks/worker_file_sink.hpp"
#include "stagelog/stage.hpp"
#include "stagelog/worker_logging.hpp"
#include "stagelog/workflow.hpp"

namespace py = pybind11;

namespace {

using stagelog::Kv;
using stagelog::Level;

// Released: the GIL released for the rest of the scope, like py::gil_scoped_release, except
// at interpreter shutdown. Python ends a daemon thread that asks for the GIL back during
// finalization with pthread_exit(), whose unwinding through a destructor (noexcept) would
// abort the whole process; a thread other than the main one that finds the interpreter
// finalizing parks instead, until the process exits. Finalization can still begin between
// that check and taking the GIL back: the destructor is noexcept(false) so that the forced
// unwind of pthread_exit() then goes on through it (pybind11 lets it pass) instead of
// terminating the process.
unsigned long g_main_thread = 0;

bool finalizing() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

class Released {
 public:
  Released() noexcept : state_(PyEval_SaveThread()) {}
  ~Released() noexcept(false) {
    if (finalizing() && PyThread_get_thread_ident() != g_main_thread) {
      for (;;) pause();
    }
    PyEval_RestoreThread(state_);
  }
  Released(const Released&) = delete;
  Released& operator=(const Released&) = delete;

 private:
  PyThreadState* state_;
};

// The C++ recorder behind a Python Recorder. Stages, runs, loggers and agents hold a
// shared_ptr to it, so it lives as long as anything that logs into it.
using RecorderPtr = std::shared_ptr<stagelog::Recorder>;

// Keyword fields as Kv values. String views point into the Python objects kept in `keep`
// (a str's UTF-8 buffer lives as long as the str), so the Kvs are valid while this lives.
class Fields {
 public:
  Fields() = default;
  explicit Fields(const py::dict& fields) {
    if (fields.empty()) return;
    kvs_.reserve(fields.size());
    keep_.reserve(fields.size() * 2);
    for (auto item : fields)
      add(py::reinterpret_borrow<py::object>(item.first),
          py::reinterpret_borrow<py::object>(item.second));
  }
  void add(const py::object& key, const py::object& value) {
    std::string_view k = text(key);
    PyObject* v = value.ptr();
    if (PyBool_Check(v)) {
      kvs_.push_back(stagelog::kv(k, v == Py_True));
    } else if (PyLong_Check(v)) {
      int overflow = 0;
      long long i = PyLong_AsLongLongAndOverflow(v, &overflow);
      if (overflow == 0) {
        kvs_.push_back(stagelog::kv(k, static_cast<std::int64_t>(i)));
      } else if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (PyErr_Occurred() != nullptr) {
          PyErr_Clear();
          kvs_.push_back(stagelog::kv(k, text(value)));  // Beyond 64 bits: its digits.
        } else {
          kvs_.push_back(stagelog::kv(k, static_cast<std::uint64_t>(u)));
        }
      } else {
        kvs_.push_back(stagelog::kv(k, text(value)));
      }
    } else if (PyFloat_Check(v)) {
      kvs_.push_back(stagelog::kv(k, PyFloat_AS_DOUBLE(v)));
    } else {
      kvs_.push_back(stagelog::kv(k, text(value)));
    }
  }
  std::span<const Kv> span() const noexcept { return {kvs_.data(), kvs_.size()}; }

 private:
  // The UTF-8 text of str(obj), kept alive in keep_.
  std::string_view text(const py::object& obj) {
    PyObject* s = obj.ptr();
    py::object owned;
    if (!PyUnicode_Check(s)) {
      owned = py::str(obj);
      s = owned.ptr();
    }
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(s, &size);
    if (data == nullptr) {
      // Lone surrogates cannot be UTF-8: keep the text with them replaced.
      PyErr_Clear();
      owned = py::reinterpret_steal<py::object>(
          PyUnicode_AsEncodedString(s, "utf-8", "backslashreplace"));
      if (!owned) throw py::error_already_set();
      keep_.push_back(owned);
      return {PyBytes_AS_STRING(owned.ptr()),
              static_cast<std::size_t>(PyBytes_GET_SIZE(owned.ptr()))};
    }
    if (owned) keep_.push_back(std::move(owned));
    return {data, static_cast<std::size_t>(size)};
  }

  std::vector<Kv> kvs_;
  std::vector<py::object> keep_;
};

std::string utf8(const py::handle& obj) {
  py::str s(obj);
  return s.cast<std::string>();
}

Level to_level(const py::object& level) {
  if (py::isinstance<Level>(level)) return level.cast<Level>();
  if (PyLong_Check(level.ptr()) && !PyBool_Check(level.ptr())) {
    // Python logging's numbers: 5 TRACE-ish, 10 DEBUG, 20 INFO, 30 WARNING, 40 ERROR, 50.
    long n = level.cast<long>();
    if (n < 10) return Level::Trace;
    if (n < 20) return Level::Debug;
    if (n < 30) return Level::Info;
    if (n < 40) return Level::Warning;
    if (n < 50) return Level::Error;
    return Level::Critical;
  }
  if (PyUnicode_Check(level.ptr())) {
    std::string text = level.cast<std::string>();
    if (auto parsed = stagelog::parse_level(text)) return *parsed;
    throw py::value_error("unknown level '" + text +
                          "': use TRACE, DEBUG, INFO, WARNING, ERROR, CRITICAL or OFF");
  }
  throw py::type_error("a level is a stagelog.Level, a name such as 'INFO' or a logging number");
}

// "ValueError: bad input" and the formatted traceback of an exception being handled.
struct ExceptionText {
  std::string type;
  std::string message;
  std::string traceback;
};

ExceptionText describe(const py::handle& type, const py::handle& value, const py::handle& tb) {
  ExceptionText out;
  out.type = py::str(type.attr("__qualname__")).cast<std::string>();
  out.message = utf8(value);
  if (!tb.is_none()) {
    py::object lines = py::module_::import("traceback").attr("format_exception")(type, value, tb);
    out.traceback = py::str("").attr("join")(lines).cast<std::string>();
  }
  return out;
}

// A stage: begun by enter(), ended by complete/fail/skip or exit(). One Python object may be
// entered again after it ended (a decorator's stage is a new object per call anyway).
class Stage {
 public:
  Stage(RecorderPtr recorder, stagelog::Logger logger, std::string name, py::dict fields)
      : recorder_(std::move(recorder)),
        logger_(logger),
        name_(std::move(name)),
        fields_(std::move(fields)) {}

  void enter() {
    if (scope_ && !scope_->ended()) throw py::value_error("stage '" + name_ + "' already begun");
    Fields fields(fields_);
    Released release;
    scope_.emplace(logger_, name_, fields.span());
  }
  bool exit(const py::handle& type, const py::handle& value, const py::handle& tb) {
    if (!scope_ || scope_->ended()) return false;
    if (type.is_none()) {
      Released release;
      scope_->complete(std::span<const Kv>{});
      return false;
    }
    ExceptionText e = describe(type, value, tb);
    std::string message = e.message.empty() ? e.type : e.type + ": " + e.message;
    const Kv kvs[] = {stagelog::kv("exception", e.type), stagelog::kv("error", e.message),
                      stagelog::kv("traceback", e.traceback)};
    std::span<const Kv> span(kvs, e.traceback.empty() ? 2 : 3);
    Released release;
    scope_->fail(message, span);
    return false;
  }
  void complete(const py::kwargs& kwargs) {
    Fields fields(kwargs);
    Released release;
    if (begun()) scope_->complete(fields.span());
  }
  void fail(const std::string& message, const py::kwargs& kwargs) {
    Fields fields(kwargs);
    Released release;
    if (begun()) scope_->fail(message, fields.span());
  }
  void skip(const std::string& reason, const py::kwargs& kwargs) {
    Fields fields(kwargs);
    Released release;
    if (begun()) scope_->skip(reason, fields.span());
  }
  const std::string& name() const noexcept { return name_; }
  bool ended() const noexcept { return scope_ && scope_->ended(); }
  double elapsed() const noexcept { return scope_ ? scope_->elapsed_seconds() : 0.0; }

 private:
  bool begun() const noexcept { return scope_.has_value(); }

  RecorderPtr recorder_;
  stagelog::Logger logger_;
  std::string name_;
  py::dict fields_;
  std::optional<stagelog::StageScope> scope_;
};

// One run (an item through every stage): sets the thread's run id while it lasts and ends
// with the COMPLETE line.
class Run {
 public:
  Run(RecorderPtr recorder, stagelog::Logger logger, std::string id)
      : recorder_(std::move(recorder)), logger_(logger), id_(std::move(id)) {}
  void enter() {
    if (scope_) throw py::value_error("run '" + id_ + "' already begun");
    Released release;
    scope_.emplace(logger_, id_);
  }
  bool exit(const py::handle& type, const py::handle& value, const py::handle& tb) {
    if (!scope_) return false;
    if (!type.is_none()) {
      ExceptionText e = describe(type, value, tb);
      std::string message = e.message.empty() ? e.type : e.type + ": " + e.message;
      Released release;
      scope_->fail(message);
    }
    Released release;
    scope_.reset();  // Restores the thread's previous run id.
    return false;
  }
  void fail(const std::string& message) {
    Released release;
    if (scope_) scope_->fail(message);
  }
  const std::string& id() const noexcept { return id_; }

 private:
  RecorderPtr recorder_;
  stagelog::Logger logger_;
  std::string id_;
  std::optional<stagelog::RunScope> scope_;
};

// A component's logger, keeping its recorder alive.
struct Logger {
  RecorderPtr recorder;
  stagelog::Logger logger;

  void log(const py::object& level, const py::str& message, const py::dict& fields) const {
    Level l = to_level(level);
    if (!logger.enabled(l)) return;
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(message.ptr(), &size);
    std::string replaced;
    if (data == nullptr) {
      PyErr_Clear();
      replaced = py::reinterpret_steal<py::bytes>(
                     PyUnicode_AsEncodedString(message.ptr(), "utf-8", "backslashreplace"))
                     .cast<std::string>();
      data = replaced.data();
      size = static_cast<Py_ssize_t>(replaced.size());
    }
    Fields f(fields);
    Released release;
    logger.log(l, std::string_view(data, static_cast<std::size_t>(size)), f.span());
  }
};

// seed 001's agent, on the thread that made it.
class Agent {
 public:
  Agent(RecorderPtr recorder, const std::string& name, const std::string& component,
        bool seed_wording, std::vector<std::string> meta_classes)
      : recorder_(std::move(recorder)) {
    stagelog::AgentOptions options;
    options.component = component;
    options.seed_wording = seed_wording;
    if (!meta_classes.empty()) options.meta_classes = std::move(meta_classes);
    Released release;
    agent_ = std::make_unique<stagelog::Agent>(*recorder_, name, options);
  }
  stagelog::Agent& get() {
    if (!agent_) throw py::value_error("the agent was closed");
    return *agent_;
  }
  void close() {
    Released release;
    agent_.reset();  // Records the shutdown if shutdown() was not called.
  }

 private:
  RecorderPtr recorder_;
  std::unique_ptr<stagelog::Agent> agent_;
};

std::vector<std::string_view> views(const std::vector<std::string>& items) {
  return {items.begin(), items.end()};
}

// ---- hash_output: json.dumps(obj, sort_keys=True) of a dict, str() of anything else --------

void append_json_string(std::string& out, const py::handle& text) {
  // Python's encoder with ensure_ascii: its own C function gives the exact bytes.
  // Leaked on purpose: a static py::object would be released after the interpreter is gone.
  static auto* encode =
      new py::object(py::module_::import("json.encoder").attr("encode_basestring_ascii"));
  out += (*encode)(text).cast<std::string>();
}

void append_json(std::string& out, const py::handle& obj, int depth);

std::string json_key(const py::handle& key) {
  // json.dumps turns keys that are not str into str as Python writes them in JSON.
  PyObject* k = key.ptr();
  if (PyUnicode_Check(k)) return key.cast<std::string>();
  if (k == Py_True) return "true";
  if (k == Py_False) return "false";
  if (k == Py_None) return "null";
  if (PyLong_Check(k)) return utf8(py::int_(py::reinterpret_borrow<py::object>(key)));
  if (PyFloat_Check(k)) {
    std::string out;
    double d = PyFloat_AS_DOUBLE(k);
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
    return stagelog::python_float_repr(d);
  }
  throw py::type_error("keys must be str, int, float, bool or None, not " +
                       py::str(key.get_type().attr("__name__")).cast<std::string>());
}

void append_json(std::string& out, const py::handle& obj, int depth) {
  if (depth > 900) throw py::value_error("hash_output: nested too deeply");
  PyObject* o = obj.ptr();
  if (o == Py_None) {
    out += "null";
  } else if (o == Py_True) {
    out += "true";
  } else if (o == Py_False) {
    out += "false";
  } else if (PyUnicode_Check(o)) {
    append_json_string(out, obj);
  } else if (PyLong_Check(o)) {
    out += utf8(py::int_(py::reinterpret_borrow<py::object>(obj)));
  } else if (PyFloat_Check(o)) {
    double d = PyFloat_AS_DOUBLE(o);
    if (std::isnan(d)) {
      out += "NaN";
    } else if (std::isinf(d)) {
      out += d > 0 ? "Infinity" : "-Infinity";
    } else {
      out += stagelog::python_float_repr(d);
    }
  } else if (PyDict_Check(o)) {
    // sort_keys sorts the original keys (so mixed types raise TypeError, as in Python).
    py::list keys = py::reinterpret_borrow<py::dict>(obj).attr("keys")();
    keys.attr("sort")();
    out += '{';
    bool first = true;
    for (auto key : keys) {
      if (!first) out += ", ";
      first = false;
      append_json_string(out, py::str(json_key(key)));
      out += ": ";
      append_json(out, py::reinterpret_borrow<py::dict>(obj)[key], depth + 1);
    }
    out += '}';
  } else if (PyList_Check(o) || PyTuple_Check(o)) {
    out += '[';
    bool first = true;
    for (auto item : obj) {
      if (!first) out += ", ";
      first = false;
      append_json(out, item, depth + 1);
    }
    out += ']';
  } else {
    throw py::type_error("Object of type " +
                         py::str(obj.get_type().attr("__name__")).cast<std::string>() +
                         " is not JSON serializable");
  }
}

std::string hash_output(const py::object& data) {
  if (PyDict_Check(data.ptr())) {
    std::string text;
    append_json(text, data, 0);
    return stagelog::hash_output(std::string_view(text));
  }
  // str(data), encoded as str.encode() would (strict UTF-8).
  py::object bytes = py::str(data).attr("encode")();
  return stagelog::hash_output(std::string_view(bytes.cast<std::string_view>()));
}

}  // namespace

PYBIND11_MODULE(_stagelog, m) {
  m.doc() = "The stagelog C++ recorder (use the stagelog package, not this module)";

  g_main_thread =
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
  py::register_exception<stagelog::Error>(m, "Error", PyExc_RuntimeError);

  py::enum_<Level>(m, "Level")
      .value("TRACE", Level::Trace)
      .value("DEBUG", Level::Debug)
      .value("INFO", Level::Info)
      .value("WARNING", Level::Warning)
      .value("ERROR", Level::Error)
      .value("CRITICAL", Level::Critical)
      .value("OFF", Level::Off);
  m.def(
      "to_level", [](const py::object& level) { return to_level(level); }, py::arg("level"));

  py::class_<stagelog::Recorder, RecorderPtr>(m, "Recorder")
      .def(py::init([](std::size_t queue_capacity, bool drop, std::string host, std::string run,
                       bool watchdog, bool crash_handlers) {
             stagelog::Options options;
             options.queue_capacity = queue_capacity;
             options.full_policy = drop ? stagelog::FullPolicy::Drop : stagelog::FullPolicy::Block;
             options.host = std::move(host);
             options.run = std::move(run);
             options.install_crash_handlers = crash_handlers;
             if (!watchdog) options.watchdog.reset();
             Released release;
             return std::make_shared<stagelog::Recorder>(std::move(options));
           }),
           py::arg("queue_capacity") = std::size_t{1} << 20, py::arg("drop") = false,
           py::arg("host") = "", py::arg("run") = "", py::arg("watchdog") = true,
           py::arg("crash_handlers") = true)
      .def(
          "add_text_sink",
          [](stagelog::Recorder& r, const std::filesystem::path& path, const py::object& level,
             std::uint64_t rotate_bytes) {
            r.add_sink(std::make_shared<stagelog::TextSink>(path, to_level(level),
                                                            stagelog::Rotation{rotate_bytes, 5}));
          },
          py::arg("path"), py::arg("level") = Level::Trace, py::arg("rotate_bytes") = 0)
      .def(
          "add_jsonl_sink",
          [](stagelog::Recorder& r, const std::filesystem::path& path, const py::object& level,
             std::uint64_t rotate_bytes) {
            r.add_sink(std::make_shared<stagelog::JsonlSink>(path, to_level(level),
                                                             stagelog::Rotation{rotate_bytes, 5}));
          },
          py::arg("path"), py::arg("level") = Level::Trace, py::arg("rotate_bytes") = 0)
      .def(
          "add_console_sink",
          [](stagelog::Recorder& r, const py::object& level, int fd, const std::string& color) {
            stagelog::ConsoleOptions options;
            options.level = to_level(level);
            if (fd != 1 && fd != 2) throw py::value_error("console fd must be 1 or 2");
            options.fd = fd;
            if (color == "auto") {
              options.color = stagelog::ColorMode::Auto;
            } else if (color == "always") {
              options.color = stagelog::ColorMode::Always;
            } else if (color == "never") {
              options.color = stagelog::ColorMode::Never;
            } else {
              throw py::value_error("color must be 'auto', 'always' or 'never', not '" + color +
                                    "'");
            }
            r.add_sink(std::make_shared<stagelog::ConsoleSink>(options));
          },
          py::arg("level") = Level::Info, py::arg("fd") = 2, py::arg("color") = "auto")
      .def(
          "add_worker_file_sink",
          [](stagelog::Recorder& r, const std::filesystem::path& log_dir, const std::string& rank,
             const py::object& level) {
            stagelog::WorkerFileOptions options;
            options.level = to_level(level);
            auto sink = std::make_shared<stagelog::WorkerFileSink>(log_dir, rank, options);
            r.add_sink(sink);
            return sink->path();
          },
          py::arg("log_dir"), py::arg("rank"), py::arg("level") = Level::Info)
      .def(
          "setup_worker_logging",
          [](stagelog::Recorder& r, const std::filesystem::path& log_dir, const std::string& rank,
             const py::object& file_level, const py::object& console_level) {
            stagelog::WorkerLoggingOptions options;
            options.file_level = to_level(file_level);
            options.console_level = to_level(console_level);
            return stagelog::setup_worker_logging(r, log_dir, rank, options)->path();
          },
          py::arg("log_dir"), py::arg("rank"), py::arg("file_level") = Level::Info,
          py::arg("console_level") = Level::Warning)
      .def(
          "add_network_sink",
          [](stagelog::Recorder& r, const std::string& url, const std::string& token,
             const py::object& level, const std::string& spool) {
            stagelog::NetworkSinkOptions options;
            options.level = to_level(level);
            std::shared_ptr<stagelog::NetworkSink> sink;
            if (url.empty()) {
              sink = stagelog::network_sink_from_env(options);
              if (!sink) return false;
            } else {
              options.url = url;
              options.token = token;
              options.spool_path = spool;
              sink = std::make_shared<stagelog::NetworkSink>(options);
            }
            r.add_sink(sink);
            return true;
          },
          py::arg("url") = "", py::arg("token") = "", py::arg("level") = Level::Trace,
          py::arg("spool") = "")
      .def("component",
           [](const RecorderPtr& r, const std::string& name) {
             return Logger{r, r->component(name)};
           })
      .def(
          "set_worker",
          [](stagelog::Recorder& r, const std::string& worker) {
            Released release;
            r.set_worker(worker);
          },
          py::arg("worker"))
      .def(
          "set_run",
          [](stagelog::Recorder& r, const std::string& run) {
            Released release;
            r.set_run(run);
          },
          py::arg("run"))
      .def("flush",
           [](stagelog::Recorder& r) {
             Released release;
             r.flush();
           })
      .def_property_readonly("dropped", &stagelog::Recorder::dropped)
      .def_property_readonly("pid", &stagelog::Recorder::pid)
      .def_property_readonly("host", &stagelog::Recorder::host);

  py::class_<Logger>(m, "Logger")
      .def_property_readonly("name", [](const Logger& l) { return std::string(l.logger.name()); })
      .def_property(
          "level", [](const Logger& l) { return l.logger.level(); },
          [](Logger& l, const py::object& level) { l.logger.set_level(to_level(level)); })
      .def("enabled", [](const Logger& l,
                         const py::object& level) { return l.logger.enabled(to_level(level)); })
      .def("log", &Logger::log, py::arg("level"), py::arg("message"),
           py::arg("fields") = py::dict());

  py::class_<Stage>(m, "Stage")
      .def(py::init([](const Logger& logger, std::string name, py::dict fields) {
             return std::make_unique<Stage>(logger.recorder, logger.logger, std::move(name),
                                            std::move(fields));
           }),
           py::arg("logger"), py::arg("name"), py::arg("fields") = py::dict())
      .def("__enter__",
           [](py::object self) {
             self.cast<Stage&>().enter();
             return self;
           })
      .def("__exit__", &Stage::exit)
      .def("complete", &Stage::complete)
      .def("fail", &Stage::fail, py::arg("message"))
      .def("skip", &Stage::skip, py::arg("reason"))
      .def_property_readonly("name", &Stage::name)
      .def_property_readonly("ended", &Stage::ended)
      .def_property_readonly("elapsed", &Stage::elapsed);

  py::class_<Run>(m, "Run")
      .def(py::init([](const Logger& logger, std::string id) {
             return std::make_unique<Run>(logger.recorder, logger.logger, std::move(id));
           }),
           py::arg("logger"), py::arg("run_id"))
      .def("__enter__",
           [](py::object self) {
             self.cast<Run&>().enter();
             return self;
           })
      .def("__exit__", &Run::exit)
      .def("fail", &Run::fail, py::arg("message"))
      .def_property_readonly("id", &Run::id);

  py::class_<Agent>(m, "Agent")
      .def(py::init([](const Logger& logger, const std::string& name, bool seed_wording,
                       std::vector<std::string> meta_classes) {
             return std::make_unique<Agent>(logger.recorder, name,
                                            std::string(logger.logger.name()), seed_wording,
                                            std::move(meta_classes));
           }),
           py::arg("logger"), py::arg("name"), py::arg("seed_wording") = true,
           py::arg("meta_classes") = std::vector<std::string>{})
      .def("initialized",
           [](Agent& a, const py::kwargs& kwargs) {
             Fields f(kwargs);
             Released release;
             a.get().initialized(f.span());
           })
      .def("starting", [](Agent& a) { a.get().starting(); })
      .def(
          "crashed",
          [](Agent& a, const std::string& type, const std::string& message,
             const std::string& stack) { a.get().crashed(type, message, stack); },
          py::arg("exception_type"), py::arg("message"), py::arg("stack") = "")
      .def("shutdown", [](Agent& a) { a.get().shutdown(); })
      .def("heartbeat",
           [](Agent& a, const py::kwargs& kwargs) {
             Fields f(kwargs);
             Released release;
             a.get().heartbeat(f.span());
           })
      .def_property(
          "model_loaded", [](Agent& a) { return a.get().model_loaded(); },
          [](Agent& a, bool loaded) { a.get().set_model_loaded(loaded); })
      .def(
          "claimed",
          [](Agent& a, const std::string& id, const std::string& cls, const std::string& name) {
            a.get().claimed(id, cls, name);
          },
          py::arg("task_id"), py::arg("task_class"), py::arg("task_name") = "")
      .def("completed", [](Agent& a, const std::string& id) { a.get().completed(id); })
      .def("failed", [](Agent& a, const std::string& id,
                        const std::string& error) { a.get().failed(id, error); })
      .def("attempt", [](Agent& a, const std::string& id) { a.get().attempt(id); })
      .def("lost_race", [](Agent& a, const std::string& id) { a.get().lost_race(id); })
      .def("lock_timeout", [](Agent& a, const std::string& id) { a.get().lock_timeout(id); })
      .def(
          "nothing_claimed",
          [](Agent& a, const std::vector<std::pair<std::string, int>>& queue,
             const std::vector<std::string>& preferred, bool model_loaded) {
            std::vector<std::pair<std::string_view, int>> q(queue.begin(), queue.end());
            auto p = views(preferred);
            a.get().nothing_claimed(q, p, model_loaded);
          },
          py::arg("queue"), py::arg("preferred"), py::arg("model_loaded"))
      .def(
          "all_claimed_by_others",
          [](Agent& a, std::uint64_t available, const std::vector<std::string>& preferred) {
            auto p = views(preferred);
            a.get().all_claimed_by_others(available, p);
          },
          py::arg("available"), py::arg("preferred"))
      .def(
          "request",
          [](Agent& a, const std::string& id, const std::string& what,
             const std::vector<std::string>& waiting, std::optional<std::uint64_t> tasks_waiting,
             const std::string& task_class) {
            auto w = views(waiting);
            if (tasks_waiting) {
              a.get().request(id, what, w, *tasks_waiting, task_class);
            } else {
              a.get().request(id, what, w);
            }
          },
          py::arg("request_id"), py::arg("what"), py::arg("waiting_workers"),
          py::arg("tasks_waiting") = py::none(), py::arg("task_class") = "")
      .def("fulfilled", [](Agent& a, const std::string& id) { a.get().fulfilled(id); })
      .def_property_readonly("name", [](Agent& a) { return a.get().name(); })
      .def_property_readonly("tasks_completed", [](Agent& a) { return a.get().tasks_completed(); })
      .def_property_readonly("tasks_failed", [](Agent& a) { return a.get().tasks_failed(); })
      .def("close", &Agent::close);

  py::class_<stagelog::Workflow>(m, "Workflow")
      .def(py::init([](std::string id, const std::filesystem::path& output_dir, int total_nodes,
                       const RecorderPtr& recorder, bool print) {
             stagelog::WorkflowOptions options;
             options.recorder = recorder.get();
             options.print = print;
             return std::make_unique<stagelog::Workflow>(std::move(id), output_dir, total_nodes,
                                                         options);
           }),
           py::arg("workflow_id"), py::arg("output_dir"), py::arg("total_nodes"),
           py::arg("recorder") = RecorderPtr{}, py::arg("print") = true, py::keep_alive<1, 5>())
      .def("node_start", &stagelog::Workflow::node_start, py::arg("node_id"), py::arg("node_index"))
      .def("node_success", &stagelog::Workflow::node_success, py::arg("node_id"),
           py::arg("duration_seconds"), py::arg("output_hash") = "", py::arg("output_summary") = "")
      .def("node_failure", &stagelog::Workflow::node_failure, py::arg("node_id"), py::arg("error"),
           py::arg("duration_seconds"))
      .def("complete", &stagelog::Workflow::complete, py::arg("cumulative_cost_usd") = 0.0)
      .def("error", &stagelog::Workflow::error, py::arg("message"))
      .def_property_readonly("workflow_id", &stagelog::Workflow::workflow_id)
      .def_property_readonly("step_number", &stagelog::Workflow::step_number)
      .def_property_readonly("log_file", &stagelog::Workflow::log_file)
      .def_property_readonly("trace_file", &stagelog::Workflow::trace_file)
      .def_property_readonly("audit_dir", &stagelog::Workflow::audit_dir)
      .def_property_readonly("metadata_file", &stagelog::Workflow::metadata_file)
      .def_property_readonly("nodes_completed", &stagelog::Workflow::nodes_completed)
      .def_property_readonly("nodes_failed", &stagelog::Workflow::nodes_failed);

  m.def("hash_output", &hash_output, py::arg("data"));
}
