#include "base/time_text.hpp"

namespace stagelog::detail {

namespace {

void append_2(char* p, unsigned v) {
  p[0] = static_cast<char>('0' + v / 10);
  p[1] = static_cast<char>('0' + v % 10);
}

// Days since 1970-01-01 to a proleptic Gregorian date (era arithmetic over 400-year cycles).
void civil_from_days(std::int64_t z, int& year, unsigned& month, unsigned& day) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  day = doy - (153 * mp + 2) / 5 + 1;
  month = mp < 10 ? mp + 3 : mp - 9;
  year = static_cast<int>(yoe + era * 400 + (month <= 2 ? 1 : 0));
}

// The "YYYY-MM-DDTHH:MM:SS" part changes once a second: cache it per thread.
struct SecondCache {
  std::int64_t second = -1;
  char text[20];
};
thread_local SecondCache t_second_cache;

}  // namespace

void append_iso_timestamp(std::string& out, std::int64_t ts_ns) {
  if (ts_ns < 0) ts_ns = 0;
  std::int64_t second = ts_ns / 1'000'000'000;
  auto ms = static_cast<unsigned>((ts_ns / 1'000'000) % 1000);
  SecondCache& cache = t_second_cache;
  if (cache.second != second) {
    int year;
    unsigned month, day;
    civil_from_days(second / 86400, year, month, day);
    auto sod = static_cast<unsigned>(second % 86400);
    char* p = cache.text;
    auto y = static_cast<unsigned>(year % 10000);
    p[0] = static_cast<char>('0' + y / 1000);
    p[1] = static_cast<char>('0' + y / 100 % 10);
    p[2] = static_cast<char>('0' + y / 10 % 10);
    p[3] = static_cast<char>('0' + y % 10);
    p[4] = '-';
    append_2(p + 5, month);
    p[7] = '-';
    append_2(p + 8, day);
    p[10] = 'T';
    append_2(p + 11, sod / 3600);
    p[13] = ':';
    append_2(p + 14, sod / 60 % 60);
    p[16] = ':';
    append_2(p + 17, sod % 60);
    cache.second = second;
  }
  char tail[6] = {'.',
                  static_cast<char>('0' + ms / 100),
                  static_cast<char>('0' + ms / 10 % 10),
                  static_cast<char>('0' + ms % 10),
                  'Z',
                  0};
  out.append(cache.text, 19);
  out.append(tail, 5);
}

std::string iso_timestamp(std::int64_t ts_ns) {
  std::string out;
  append_iso_timestamp(out, ts_ns);
  return out;
}

void append_asctime(std::string& out, std::int64_t ts_ns) {
  std::size_t at = out.size();
  append_iso_timestamp(out, ts_ns);  // 2026-02-04T19:36:20.123Z
  out[at + 10] = ' ';
  out[at + 19] = ',';
  out.pop_back();  // The Z.
}

bool read_digits(std::string_view s, std::size_t pos, std::size_t n, int& value) noexcept {
  if (pos > s.size() || n > s.size() - pos) return false;
  value = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    value = value * 10 + (s[i] - '0');
  }
  return true;
}

std::int64_t days_from_civil(int year, unsigned month, unsigned day) noexcept {
  year -= month <= 2 ? 1 : 0;
  const std::int64_t era = (year >= 0 ? year : year - 399) / 400;
  const auto yoe = static_cast<unsigned>(year - era * 400);
  const unsigned doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

std::optional<std::int64_t> read_civil_seconds(std::string_view t, bool space_too) noexcept {
  int year, month, day, hour, minute, second;
  if (t.size() < 19 || !read_digits(t, 0, 4, year) || t[4] != '-' || !read_digits(t, 5, 2, month) ||
      t[7] != '-' || !read_digits(t, 8, 2, day) || (t[10] != 'T' && !(space_too && t[10] == ' ')) ||
      !read_digits(t, 11, 2, hour) || t[13] != ':' || !read_digits(t, 14, 2, minute) ||
      t[16] != ':' || !read_digits(t, 17, 2, second)) {
    return std::nullopt;
  }
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 60) return std::nullopt;
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  int month_days = kDays[month - 1] + (month == 2 && leap ? 1 : 0);
  if (day < 1 || day > month_days) return std::nullopt;
  std::int64_t days =
      days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  return days * 86400 + hour * 3600 + minute * 60 + second;
}

}  // namespace stagelog::detail
