#include "server/alerts.hpp"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>
#include <vector>

#include "base/duration.hpp"
#include "base/time_text.hpp"
#include "format/format.hpp"
#include "net/byte_stream.hpp"
#include "net/http_client.hpp"
#include "server/http_errors.hpp"
#include "server/report.hpp"
#include "stagelog/error.hpp"

namespace stagelog {

namespace server {

namespace {

using Json = nlohmann::ordered_json;

constexpr std::array<std::pair<AlertType, std::string_view>, 6> kTypes = {{
    {AlertType::RepeatedFailures, "repeated_failures"},
    {AlertType::Stuck, "stuck"},
    {AlertType::Silent, "silent"},
    {AlertType::Crashed, "crashed"},
    {AlertType::SlowStage, "slow_stage"},
    {AlertType::Report, "report"},
}};

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw Error("alerts: " + where + ": " + what);
}

void only_keys(const Json& object, const std::string& where,
               std::initializer_list<std::string_view> known) {
  for (const auto& [key, value] : object.items()) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string list;
    for (std::string_view k : known) {
      if (!list.empty()) list += ", ";
      list += k;
    }
    bad(where + "." + key, "unknown key (known here: " + list + ")");
  }
}

std::string text_of(const Json& v, const std::string& where) {
  if (!v.is_string() || v.get_ref<const std::string&>().empty()) {
    bad(where, "expected a non-empty string, got " + v.dump());
  }
  return v.get<std::string>();
}

std::chrono::nanoseconds duration_of(const Json& v, const std::string& where, bool zero_ok) {
  auto d = v.is_string() ? detail::parse_duration(v.get<std::string>()) : std::nullopt;
  if (!d || (!zero_ok && d->count() == 0)) {
    bad(where, std::string("expected a duration like \"10m\"") + (zero_ok ? "" : " above 0") +
                   ", got " + v.dump());
  }
  return *d;
}

std::int64_t count_of(const Json& v, const std::string& where, std::int64_t max) {
  if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > max) {
    bad(where, "expected a whole number from 1 to " + std::to_string(max) + ", got " + v.dump());
  }
  return v.get<std::int64_t>();
}

// A header as HTTP allows it: a token name, a value without line breaks.
void check_header(const std::string& name, const std::string& value, const std::string& where) {
  bool token = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
  if (!token) bad(where, "\"" + name + "\" is not a header name");
  if (value.find_first_of("\r\n") != std::string::npos) bad(where, "a value may not break lines");
}

// "08:00": minutes after midnight.
int time_of_day_of(const Json& v, const std::string& where) {
  const std::string text = v.is_string() ? v.get<std::string>() : std::string();
  bool ok = text.size() == 5 && text[2] == ':' &&
            std::isdigit(static_cast<unsigned char>(text[0])) &&
            std::isdigit(static_cast<unsigned char>(text[1])) &&
            std::isdigit(static_cast<unsigned char>(text[3])) &&
            std::isdigit(static_cast<unsigned char>(text[4]));
  int h = ok ? (text[0] - '0') * 10 + (text[1] - '0') : 0;
  int m = ok ? (text[3] - '0') * 10 + (text[4] - '0') : 0;
  if (!ok || h > 23 || m > 59) bad(where, "expected a time of day like \"08:00\", got " + v.dump());
  return h * 60 + m;
}

// "UTC", "+02:00", "-05:30": minutes east of UTC.
int utc_offset_of(const Json& v, const std::string& where) {
  const std::string text = v.is_string() ? v.get<std::string>() : std::string();
  if (text == "UTC" || text == "Z") return 0;
  bool ok = text.size() == 6 && (text[0] == '+' || text[0] == '-') && text[3] == ':';
  for (std::size_t i : {1, 2, 4, 5}) ok = ok && std::isdigit(static_cast<unsigned char>(text[i]));
  int h = ok ? (text[1] - '0') * 10 + (text[2] - '0') : 0;
  int m = ok ? (text[4] - '0') * 10 + (text[5] - '0') : 0;
  if (!ok || h > 14 || m > 59) {
    bad(where,
        "expected \"UTC\" or an offset from UTC like \"+02:00\" (a zone name such as "
        "Europe/Paris is not taken: its offset changes with daylight saving), got " +
            v.dump());
  }
  return (text[0] == '-' ? -1 : 1) * (h * 60 + m);
}

}  // namespace

std::string_view alert_type_name(AlertType type) noexcept {
  for (const auto& [t, name] : kTypes) {
    if (t == type) return name;
  }
  return "unknown";
}

AlertConfig parse_alert_config(std::string_view text) {
  Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) throw Error("alerts: not valid JSON");
  if (!root.is_object()) throw Error("alerts: expected a JSON object with webhooks and rules");
  only_keys(root, "(top)", {"webhooks", "rules", "retry", "evaluate_every"});
  AlertConfig config;
  if (root.contains("webhooks")) {
    const Json& hooks = root["webhooks"];
    if (!hooks.is_array()) bad("webhooks", "expected an array");
    for (std::size_t i = 0; i < hooks.size(); ++i) {
      std::string where = "webhooks[" + std::to_string(i) + "]";
      const Json& h = hooks[i];
      if (!h.is_object()) bad(where, "expected an object with name and url");
      only_keys(h, where, {"name", "url", "headers", "ca_file"});
      Webhook w;
      w.name = text_of(h.value("name", Json()), where + ".name");
      w.url = text_of(h.value("url", Json()), where + ".url");
      bool tls = false;
      try {
        tls = detail::parse_url(w.url).tls;
      } catch (const Error& e) {
        bad(where + ".url", e.what());
      }
      if (h.contains("ca_file")) {
        w.ca_file = text_of(h["ca_file"], where + ".ca_file");
        if (!tls) bad(where + ".ca_file", "needs an https:// url");
        try {
          detail::TlsConfig check(w.ca_file);  // A missing file is an error at start, not later.
        } catch (const Error& e) {
          bad(where + ".ca_file", e.what());
        }
      }
      for (const Webhook& other : config.webhooks) {
        if (other.name == w.name) bad(where + ".name", "\"" + w.name + "\" is defined twice");
      }
      if (h.contains("headers")) {
        const Json& headers = h["headers"];
        if (!headers.is_object()) bad(where + ".headers", "expected an object of strings");
        for (const auto& [name, value] : headers.items()) {
          std::string at = where + ".headers." + name;
          if (!value.is_string()) bad(at, "expected a string");
          check_header(name, value.get<std::string>(), at);
          w.headers.emplace_back(name, value.get<std::string>());
        }
      }
      config.webhooks.push_back(std::move(w));
    }
  }
  if (!root.contains("rules")) throw Error("alerts: rules: missing (an array of rules)");
  const Json& rules = root["rules"];
  if (!rules.is_array()) bad("rules", "expected an array");
  for (std::size_t i = 0; i < rules.size(); ++i) {
    std::string where = "rules[" + std::to_string(i) + "]";
    const Json& r = rules[i];
    if (!r.is_object()) bad(where, "expected an object with name and type");
    AlertRule rule;
    rule.name = text_of(r.value("name", Json()), where + ".name");
    std::string type = text_of(r.value("type", Json()), where + ".type");
    auto t = std::find_if(kTypes.begin(), kTypes.end(), [&](auto& p) { return p.second == type; });
    if (t == kTypes.end()) {
      bad(where + ".type",
          "expected repeated_failures, stuck, silent, crashed, slow_stage or report, got \"" +
              type + "\"");
    }
    rule.type = t->first;
    switch (rule.type) {
      case AlertType::RepeatedFailures:
        only_keys(r, where, {"name", "type", "stage", "count", "window", "cooldown", "webhooks"});
        break;
      case AlertType::SlowStage:
        only_keys(r, where,
                  {"name", "type", "stage", "factor", "min_count", "cooldown", "webhooks"});
        break;
      case AlertType::Report:
        only_keys(r, where,
                  {"name", "type", "every", "at", "time_zone", "format", "ui_url", "webhooks"});
        break;
      default:
        only_keys(r, where, {"name", "type", "cooldown", "webhooks"});
    }
    if (r.contains("every")) {
      rule.every = duration_of(r["every"], where + ".every", false);
      if (rule.every < std::chrono::minutes(1)) {
        bad(where + ".every", "expected a minute or more, got " + r["every"].dump());
      }
    }
    if (r.contains("at")) rule.at_minute = time_of_day_of(r["at"], where + ".at");
    if (r.contains("time_zone")) {
      rule.utc_offset_minutes = utc_offset_of(r["time_zone"], where + ".time_zone");
    }
    if (r.contains("format")) {
      rule.format = text_of(r["format"], where + ".format");
      if (rule.format != "markdown" && rule.format != "json") {
        bad(where + ".format", "expected markdown or json, got \"" + rule.format + "\"");
      }
    }
    if (r.contains("ui_url")) {
      rule.ui_url = text_of(r["ui_url"], where + ".ui_url");
      try {
        detail::parse_url(rule.ui_url);
      } catch (const Error& e) {
        bad(where + ".ui_url", e.what());
      }
      if (!rule.ui_url.ends_with('/')) rule.ui_url += '/';
    }
    if (r.contains("stage")) rule.stage = text_of(r["stage"], where + ".stage");
    if (r.contains("count")) rule.count = count_of(r["count"], where + ".count", 1'000'000);
    if (r.contains("window")) rule.window = duration_of(r["window"], where + ".window", false);
    if (r.contains("min_count")) {
      rule.min_count = count_of(r["min_count"], where + ".min_count", 1'000'000'000);
    }
    if (r.contains("factor")) {
      const Json& f = r["factor"];
      if (!f.is_number() || !(f.get<double>() > 1.0) || !std::isfinite(f.get<double>())) {
        bad(where + ".factor", "expected a number above 1, got " + f.dump());
      }
      rule.factor = f.get<double>();
    }
    if (r.contains("cooldown"))
      rule.cooldown = duration_of(r["cooldown"], where + ".cooldown", true);
    if (r.contains("webhooks")) {
      const Json& names = r["webhooks"];
      if (!names.is_array()) bad(where + ".webhooks", "expected an array of webhook names");
      for (const Json& n : names) {
        std::string name = text_of(n, where + ".webhooks");
        bool known = std::any_of(config.webhooks.begin(), config.webhooks.end(),
                                 [&](const Webhook& w) { return w.name == name; });
        if (!known) bad(where + ".webhooks", "no webhook is named \"" + name + "\"");
        rule.webhooks.push_back(std::move(name));
      }
    }
    for (const AlertRule& other : config.rules) {
      if (other.name == rule.name) bad(where + ".name", "\"" + rule.name + "\" is used twice");
    }
    config.rules.push_back(std::move(rule));
  }
  if (root.contains("retry")) {
    const Json& retry = root["retry"];
    if (!retry.is_object()) bad("retry", "expected an object with attempts and first_delay");
    only_keys(retry, "retry", {"attempts", "first_delay"});
    if (retry.contains("attempts")) {
      config.attempts = static_cast<int>(count_of(retry["attempts"], "retry.attempts", 20));
    }
    if (retry.contains("first_delay")) {
      config.first_delay = std::chrono::duration_cast<std::chrono::milliseconds>(
          duration_of(retry["first_delay"], "retry.first_delay", false));
    }
  }
  if (root.contains("evaluate_every")) {
    config.evaluate_every = duration_of(root["evaluate_every"], "evaluate_every", false);
  }
  return config;
}

AlertConfig load_alert_config(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read alerts file " + path.string());
  std::stringstream text;
  text << in.rdbuf();
  try {
    return parse_alert_config(text.str());
  } catch (const Error& e) {
    throw Error(path.string() + ": " + e.what());
  }
}

}  // namespace server

namespace detail {

namespace {

using Json = nlohmann::ordered_json;
using server::AlertRule;
using server::AlertType;

// Connect, TLS handshake, send and answer of one delivery together.
constexpr auto kDeliveryTimeout = std::chrono::seconds(10);

std::string_view field_text(const Event& e, std::string_view key) {
  for (const Field& f : e.fields) {
    if (f.key != key) continue;
    if (const auto* s = std::get_if<std::string_view>(&f.value)) return *s;
  }
  return {};
}

// The watchdog's rule names each alert type answers to.
bool answers(AlertType type, std::string_view rule) {
  switch (type) {
    case AlertType::Stuck:
      return rule == "stuck_stage" || rule == "stuck_task";
    case AlertType::Silent:
      return rule == "silent";
    case AlertType::Crashed:
      return rule == "crashed";
    default:
      return false;
  }
}

}  // namespace

AlertEngine::AlertEngine(server::AlertConfig config, store::Store& store, Hooks hooks)
    : config_(std::move(config)), store_(store), hooks_(std::move(hooks)) {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "stagelog-alerts");
    sigset_t all;  // Process signals are for the application's threads, not this one.
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    loop();
  });
}

AlertEngine::~AlertEngine() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  if (!queue_.empty() && hooks_.on_error) {
    hooks_.on_error("alerts: " + std::to_string(queue_.size()) +
                    " deliveries still waiting for a retry were dropped at shutdown");
  }
}

void AlertEngine::fire_locked(const AlertRule& rule, const std::string& incident,
                              std::int64_t at_ns, std::string json_fields,
                              const std::string& summary) {
  std::string key = rule.name + '\x1f' + incident;
  auto it = fired_at_.find(key);
  if (it != fired_at_.end() && at_ns - it->second < rule.cooldown.count()) return;
  fired_at_[key] = at_ns;
  // A server that does not lead keeps the cooldowns too: once it takes over, it does not fire
  // again what the leader it follows fired.
  if (hooks_.leading && !hooks_.leading()) return;

  std::string id = rule.name;
  id += '/';
  id += std::to_string(at_ns);
  id += '/';
  id += std::to_string(std::hash<std::string>{}(incident)&0xffffffff);
  std::string body = R"({"alert_id":)";
  append_json_string(body, id);
  body += R"(,"rule":)";
  append_json_string(body, rule.name);
  body += R"(,"type":")";
  body += server::alert_type_name(rule.type);
  body += R"(","at":")";
  append_iso_timestamp(body, at_ns);
  body += R"(","summary":)";
  append_json_string(body, summary);
  body += json_fields;
  body += '}';

  recent_.push_front(body);
  if (recent_.size() > kRecent) recent_.pop_back();
  fired_.push_back(
      FiredAlert{at_ns, rule.name, std::string(server::alert_type_name(rule.type)), summary});
  if (fired_.size() > kFired) fired_.pop_front();
  if (hooks_.publish) hooks_.publish(body);
  enqueue_locked(rule, id, body);
}

void AlertEngine::enqueue_locked(const AlertRule& rule, const std::string& id,
                                 const std::string& body) {
  for (std::size_t w = 0; w < config_.webhooks.size(); ++w) {
    const std::string& name = config_.webhooks[w].name;
    if (!rule.webhooks.empty() &&
        std::find(rule.webhooks.begin(), rule.webhooks.end(), name) == rule.webhooks.end()) {
      continue;
    }
    if (queue_.size() >= kMaxQueued) {
      if (hooks_.on_error) hooks_.on_error("alerts: delivery queue full, alert " + id + " dropped");
      continue;
    }
    queue_.push_back(Delivery{id, body, w, 0, std::chrono::steady_clock::now()});
  }
  wake_.notify_all();
}

void AlertEngine::observe(std::span<const OwnedEvent> events) {
  std::lock_guard lock(mutex_);
  for (const OwnedEvent& e : events) {
    bool failed_end = (e.kind == Kind::Stage || e.kind == Kind::Node) && e.status == Status::Failed;
    if (!failed_end) continue;
    for (const AlertRule& rule : config_.rules) {
      if (rule.type != AlertType::RepeatedFailures) continue;
      if (!rule.stage.empty() && rule.stage != e.stage) continue;
      std::string incident = e.stage;
      std::deque<std::int64_t>& times = failures_[rule.name + '\x1f' + incident];
      times.push_back(e.ts_ns);
      while (!times.empty() && times.front() <= e.ts_ns - rule.window.count()) times.pop_front();
      if (static_cast<std::int64_t>(times.size()) < rule.count) continue;
      std::string fields = R"(,"stage":)";
      append_json_string(fields, e.stage);
      fields += R"(,"count":)" + std::to_string(times.size()) + R"(,"window_s":)" +
                std::to_string(rule.window.count() / 1'000'000'000) + R"(,"last_run":)";
      append_json_string(fields, e.run);
      fields += R"(,"last_worker":)";
      append_json_string(fields, e.worker);
      fields += R"(,"last_error":)";
      std::string_view error = field_text(e.view(), "error_details");
      append_json_string(fields, error.empty() ? std::string_view(e.message) : error);
      std::string summary = std::to_string(times.size()) + " failures of stage " + e.stage +
                            " within " + one_decimal_seconds(rule.window.count()) + " (rule " +
                            rule.name + ")";
      fire_locked(rule, incident, e.ts_ns, std::move(fields), summary);
    }
  }
}

void AlertEngine::watchdog_report(const Event& report) {
  std::string_view rule_name = field_text(report, "rule");
  std::lock_guard lock(mutex_);
  for (const AlertRule& rule : config_.rules) {
    if (!answers(rule.type, rule_name)) continue;
    std::string incident = std::string(rule_name) + '\x1f' + std::string(report.worker) + '\x1f' +
                           std::string(report.stage) + '\x1f' +
                           std::string(field_text(report, "task"));
    std::string fields = R"(,"watchdog_rule":)";
    append_json_string(fields, rule_name);
    fields += R"(,"worker":)";
    append_json_string(fields, report.worker);
    fields += R"(,"pid":)" + std::to_string(report.pid) + R"(,"host":)";
    append_json_string(fields, report.host);
    if (!report.stage.empty()) {
      fields += R"(,"stage":)";
      append_json_string(fields, report.stage);
    }
    fire_locked(rule, incident, report.ts_ns, std::move(fields), std::string(report.message));
  }
}

void AlertEngine::evaluate(std::int64_t now_ns) {
  send_reports(now_ns);
  bool any = std::any_of(config_.rules.begin(), config_.rules.end(),
                         [](const AlertRule& r) { return r.type == AlertType::SlowStage; });
  if (!any || (hooks_.leading && !hooks_.leading())) return;
  constexpr std::int64_t kHour = 3'600'000'000'000;
  store::StageStatsQuery hour{now_ns - kHour, now_ns, false, false};
  // The usual: the 7 days before the hour judged, which would otherwise raise its own bar.
  store::StageStatsQuery week{now_ns - 7 * 24 * kHour - kHour, now_ns - kHour, false, true};
  auto last = store_.stage_stats(hour, now_ns);
  auto usual = last ? store_.stage_stats(week, now_ns) : last;
  if (!last || !usual) {
    if (hooks_.on_error) {
      hooks_.on_error("alerts: cannot evaluate slow_stage rules: " +
                      std::string((last ? usual : last).error().what()));
    }
    return;
  }
  std::lock_guard lock(mutex_);
  for (const AlertRule& rule : config_.rules) {
    if (rule.type != AlertType::SlowStage) continue;
    for (const store::StageStats& now_stats : *last) {
      if (!rule.stage.empty() && rule.stage != now_stats.stage) continue;
      if (now_stats.stats.count < rule.min_count) continue;
      auto it = std::find_if(usual->begin(), usual->end(), [&](const store::StageStats& s) {
        return s.stage == now_stats.stage;
      });
      if (it == usual->end() || it->stats.p95_ms <= 0) continue;
      double ratio = now_stats.stats.p95_ms / it->stats.p95_ms;
      if (ratio <= rule.factor) continue;
      std::string fields = R"(,"stage":)";
      append_json_string(fields, now_stats.stage);
      char numbers[160];
      std::snprintf(numbers, sizeof numbers,
                    R"(,"p95_last_hour_ms":%.1f,"p95_7d_ms":%.1f,"ratio":%.2f,"factor":%g)",
                    now_stats.stats.p95_ms, it->stats.p95_ms, ratio, rule.factor);
      fields += numbers;
      char summary[256];
      std::snprintf(summary, sizeof summary,
                    "stage %s: p95 over the last hour %.1fs is %.1fx its 7-day p95 %.1fs "
                    "(rule %s, factor %g)",
                    now_stats.stage.c_str(), now_stats.stats.p95_ms / 1000, ratio,
                    it->stats.p95_ms / 1000, rule.name.c_str(), rule.factor);
      fire_locked(rule, now_stats.stage, now_ns, std::move(fields), summary);
    }
  }
}

std::int64_t AlertEngine::report_due(const AlertRule& rule, std::int64_t now_ns) {
  constexpr std::int64_t kMinuteNs = 60'000'000'000;
  const std::int64_t every = rule.every.count();
  const std::int64_t anchor = (rule.at_minute - rule.utc_offset_minutes) * kMinuteNs;
  std::int64_t periods = (now_ns - anchor) / every;
  if ((now_ns - anchor) % every < 0) --periods;  // Floor, before the anchor too.
  return anchor + periods * every;
}

void AlertEngine::send_reports(std::int64_t now_ns) {
  for (const AlertRule& rule : config_.rules) {
    if (rule.type != AlertType::Report) continue;
    if (hooks_.leading && !hooks_.leading()) return;
    const std::int64_t end = report_due(rule, now_ns);
    {
      std::lock_guard lock(mutex_);
      auto it = report_sent_.find(rule.name);
      if (it != report_sent_.end() && it->second >= end) continue;
    }
    const std::string id = rule.name + "/" + iso_timestamp(end);
    auto fail = [&](const std::string& what, const Error& e) {
      if (hooks_.on_error) {
        hooks_.on_error("alerts: report " + id + ": " + what + " (tried again later): " + e.what());
      }
    };
    // Sent already (by this server before a restart, or by another one sharing the store)?
    const store::BatchRecord record{"report/" + id, 200, "", now_ns};
    auto known = store_.batch(record.key, now_ns);
    if (!known) {
      fail("cannot read whether it was sent", known.error());
      continue;
    }
    if (*known) {
      std::lock_guard lock(mutex_);
      report_sent_[rule.name] = end;
      continue;
    }
    ReportQuery query;
    query.since_ns = end - rule.every.count();
    query.until_ns = end;
    query.ui_base = rule.ui_url;
    auto report = build_report(store_, query, now_ns);
    if (!report) {
      fail("cannot make it", report.error());
      continue;
    }
    if (hooks_.incidents) report->workers = hooks_.incidents->between(query.since_ns, end);
    report->alerts = fired(query.since_ns, end);
    std::string body;
    if (rule.format == "json") {
      Json json = Json::parse(report_json(*report));
      json.erase("success");
      Json out = Json::object();
      out["report_id"] = id;
      out["rule"] = rule.name;
      out.update(json);
      body = dump_json(out);
    } else {
      Json out = Json::object();
      out["text"] = report_markdown(*report);
      body = dump_json(out);
    }
    // Recorded before it is sent: a server that dies in between loses this one report rather
    // than two servers sending it. The record outlives the period it stands for.
    const store::EventsWrite claim{{}, end + 2 * rule.every.count(), &record};
    auto claimed = store_.write(std::span(&claim, 1), {});
    if (!claimed) {
      auto again = store_.batch(record.key, now_ns);
      if (!again || !*again) {
        fail("cannot record it as sent", claimed.error());
        continue;
      }
      // Another server recorded it first: it sends it.
    }
    std::lock_guard lock(mutex_);
    report_sent_[rule.name] = end;
    if (claimed) enqueue_locked(rule, id, body);
  }
}

std::vector<FiredAlert> AlertEngine::fired(std::int64_t since_ns, std::int64_t until_ns) const {
  std::lock_guard lock(mutex_);
  std::vector<FiredAlert> out;
  for (const FiredAlert& a : fired_) {
    if (a.at_ns >= since_ns && a.at_ns < until_ns) out.push_back(a);
  }
  return out;
}

std::string AlertEngine::recent_json() const {
  std::lock_guard lock(mutex_);
  std::string out = R"({"success":true,"alerts":[)";
  for (std::size_t i = 0; i < recent_.size(); ++i) {
    if (i > 0) out += ',';
    out += recent_[i];
  }
  out += "]}";
  return out;
}

bool AlertEngine::deliver(const Delivery& d, std::string& error) {
  const server::Webhook& hook = config_.webhooks[d.webhook];
  std::vector<HttpClient::Header> headers = {{"X-Stagelog-Alert-Id", d.alert_id}};
  for (const auto& [name, value] : hook.headers) headers.emplace_back(name, value);
  try {
    Url url = parse_url(hook.url);  // Checked when the config was parsed.
    std::shared_ptr<const TlsConfig> tls;
    if (url.tls) tls = std::make_shared<const TlsConfig>(hook.ca_file);  // "": system CAs.
    HttpClient client(url, std::move(tls));
    // The whole path is the URL's: post() puts the base path before the one given.
    HttpResponse res = client.post(url.base_path.empty() ? "/" : "", "application/json", d.body,
                                   headers, std::chrono::steady_clock::now() + kDeliveryTimeout);
    if (res.status < 200 || res.status > 299) {
      error = "HTTP " + std::to_string(res.status);
      return false;
    }
    return true;
  } catch (const Error& e) {  // HttpError, or a CA file gone since the start.
    error = e.what();
    return false;
  }
}

void AlertEngine::loop() {
  using Clock = std::chrono::steady_clock;
  if (hooks_.clock) send_reports(hooks_.clock());  // One due while no server ran goes now.
  auto next_evaluation = Clock::now() + config_.evaluate_every;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    auto now = Clock::now();
    if (now >= next_evaluation) {
      lock.unlock();
      evaluate(hooks_.clock());
      lock.lock();
      next_evaluation = Clock::now() + config_.evaluate_every;
      continue;
    }
    // The delivery due first.
    auto due = std::min_element(queue_.begin(), queue_.end(),
                                [](const Delivery& a, const Delivery& b) { return a.due < b.due; });
    if (due == queue_.end() || due->due > now) {
      auto until = next_evaluation;
      if (due != queue_.end()) until = std::min(until, due->due);
      wake_.wait_until(lock, until);
      continue;
    }
    Delivery d = std::move(*due);
    queue_.erase(due);
    lock.unlock();
    std::string error;
    bool delivered = deliver(d, error);
    lock.lock();
    if (delivered) continue;
    if (++d.attempt >= config_.attempts) {
      if (hooks_.on_error) {
        hooks_.on_error("alerts: alert " + d.alert_id + " to webhook " +
                        config_.webhooks[d.webhook].name + ": gave up after " +
                        std::to_string(d.attempt) + " attempts; last: " + error);
      }
      continue;
    }
    d.due = Clock::now() + config_.first_delay * (1 << (d.attempt - 1));
    queue_.push_back(std::move(d));
  }
}

}  // namespace detail

}  // namespace stagelog
