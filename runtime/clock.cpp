#include "runtime/clock.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace tessera::runtime {

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string iso8601(int64_t epoch_ms) {
  auto secs = static_cast<std::time_t>(epoch_ms / 1000);
  auto millis = static_cast<int>(epoch_ms % 1000);
  if (millis < 0) {
    millis += 1000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return buf;
}

namespace {

// Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's days_from_civil).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool digits(std::string_view t, size_t at, size_t n, int& out) {
  if (at + n > t.size()) return false;
  out = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (t[i] < '0' || t[i] > '9') return false;
    out = out * 10 + (t[i] - '0');
  }
  return true;
}

}  // namespace

std::optional<int64_t> parse_iso8601(std::string_view t) {
  int y, mo, d, h = 0, mi = 0, s = 0, ms = 0;
  if (!digits(t, 0, 4, y) || t.size() < 10 || t[4] != '-' || !digits(t, 5, 2, mo) || t[7] != '-' ||
      !digits(t, 8, 2, d))
    return std::nullopt;
  static constexpr int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1]) return std::nullopt;
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo == 2 && d == 29 && !leap) return std::nullopt;
  int64_t offset_s = 0;
  if (t.size() > 10) {
    if ((t[10] != 'T' && t[10] != 't' && t[10] != ' ') || !digits(t, 11, 2, h) || t.size() < 19 ||
        t[13] != ':' || !digits(t, 14, 2, mi) || t[16] != ':' || !digits(t, 17, 2, s))
      return std::nullopt;
    if (h > 23 || mi > 59 || s > 60) return std::nullopt;
    size_t at = 19;
    if (at < t.size() && (t[at] == '.' || t[at] == ',')) {
      size_t start = ++at;
      while (at < t.size() && t[at] >= '0' && t[at] <= '9') {
        if (at - start < 3) ms = ms * 10 + (t[at] - '0');
        ++at;
      }
      if (at == start) return std::nullopt;
      for (size_t n = at - start; n < 3; ++n) ms *= 10;
    }
    if (at >= t.size()) return std::nullopt;  // an offset is required with a time
    if (t[at] == 'Z' || t[at] == 'z') {
      if (at + 1 != t.size()) return std::nullopt;
    } else if (t[at] == '+' || t[at] == '-') {
      int oh, om;
      size_t rest = t.size() - at - 1;
      if (!digits(t, at + 1, 2, oh)) return std::nullopt;
      if (rest == 5 && t[at + 3] == ':') {
        if (!digits(t, at + 4, 2, om)) return std::nullopt;
      } else if (rest == 4) {
        if (!digits(t, at + 3, 2, om)) return std::nullopt;
      } else if (rest == 2) {
        om = 0;
      } else {
        return std::nullopt;
      }
      if (oh > 23 || om > 59) return std::nullopt;
      offset_s = (t[at] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    } else {
      return std::nullopt;
    }
  }
  int64_t secs = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 +
                 h * 3600 + mi * 60 + std::min(s, 59) - offset_s;
  return secs * 1000 + ms;
}

}  // namespace tessera::runtime
