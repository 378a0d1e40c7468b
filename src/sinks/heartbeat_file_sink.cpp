#include "stagelog/sinks/heartbeat_file_sink.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "base/fd_io.hpp"
#include "base/time_text.hpp"
#include "format/format.hpp"
#include "stagelog/error.hpp"

namespace stagelog {

namespace {

// A worker id as a file name: path separators and leading dots replaced.
std::string file_safe(std::string_view worker) {
  std::string name(worker.empty() ? std::string_view("unnamed") : worker);
  for (char& c : name) {
    if (c == '/' || c == '\0') c = '_';
  }
  if (name.front() == '.') name.front() = '_';
  return name;
}

}  // namespace

HeartbeatFileSink::HeartbeatFileSink(const std::filesystem::path& dir) : dir_(dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) throw Error("cannot create " + dir_.string() + ": " + ec.message());
}

std::filesystem::path HeartbeatFileSink::path_for(std::string_view worker) const {
  return dir_ / (file_safe(worker) + ".heartbeat.json");
}

void HeartbeatFileSink::write(const Event& e) {
  if (e.kind != Kind::Heartbeat) return;
  buffer_.clear();
  buffer_ += "{\"worker\":";
  detail::append_json_string(buffer_, e.worker);
  buffer_ += ",\"timestamp\":\"";
  detail::append_iso_timestamp(buffer_, e.ts_ns);
  buffer_ += "\",\"ts_ns\":";
  buffer_ += std::to_string(e.ts_ns);
  for (const auto& f : e.fields) {
    buffer_ += ',';
    detail::append_json_string(buffer_, f.key);
    buffer_ += ':';
    switch (f.value.index()) {
      case 0:
        buffer_ += std::to_string(std::get<0>(f.value));
        break;
      case 1:
        buffer_ += std::to_string(std::get<1>(f.value));
        break;
      case 2:
        detail::append_json_double(buffer_, std::get<2>(f.value));
        break;
      case 3:
        buffer_ += std::get<3>(f.value) ? "true" : "false";
        break;
      case 4:
        detail::append_json_string(buffer_, std::get<4>(f.value));
        break;
    }
  }
  buffer_ += ",\"pid\":";
  buffer_ += std::to_string(e.pid);
  buffer_ += ",\"host\":";
  detail::append_json_string(buffer_, e.host);
  buffer_ += "}\n";

  detail::write_file_atomically(path_for(e.worker), buffer_);
}

}  // namespace stagelog
