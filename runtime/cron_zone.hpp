// Internal to runtime/cron.cpp: UTC offsets of an IANA zone, as spans of constant offset.
//
// Contract: zone::find() returns the process-wide, never-freed zone for an IANA name, or
// nullptr when tzdata does not know it; it is thread-safe, and loads the zone's file once.
// Offsets come from date::time_zone (the tzdata package's TZif files) up to the file's last
// listed transition and from the file's POSIX TZ footer rule after it: Howard Hinnant's
// USE_OS_TZDB reader stops at 2037 and would otherwise freeze daylight saving time there.
// Nothing here throws once find() has returned.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace date {
class time_zone;
}

namespace tessera::cron::detail {

// Proleptic Gregorian calendar arithmetic (Howard Hinnant's days_from_civil and inverse).
struct civil_date {
  int year;
  unsigned month, day;
};

constexpr int64_t days_from_civil(int y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

constexpr civil_date civil_from_days(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int>(yoe + era * 400) + (m <= 2), m, d};
}

constexpr unsigned weekday_of(int64_t days) {  // 0 = Sunday
  return static_cast<unsigned>(days >= -4 ? (days + 4) % 7 : (days + 5) % 7 + 6);
}

constexpr bool is_leap(int y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

constexpr unsigned days_in_month(int y, unsigned m) {
  constexpr unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

constexpr int64_t floor_div(int64_t a, int64_t b) {
  return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

// Seconds since the Unix epoch; [begin, end) has UTC offset `offset` (local = sys + offset).
struct offset_span {
  int64_t begin;
  int64_t end;
  int32_t offset;
};

// A POSIX TZ rule with daylight saving time, e.g. "CET-1CEST,M3.5.0,M10.5.0/3".
struct posix_rule {
  struct date_rule {
    char kind = 'M';  // 'M' month.week.weekday, 'J' 1..365 without Feb 29, 'D' 0..365
    int month = 0, week = 0, weekday = 0, day = 0;
    int32_t time = 7200;  // local seconds after midnight, may be negative or over 24 h
  };
  int32_t std_offset = 0;  // east of UTC, unlike the POSIX string's sign
  int32_t dst_offset = 0;
  date_rule start, end;  // start of DST (in std time), end of DST (in DST time)
};

std::optional<posix_rule> parse_posix_rule(std::string_view tz);

class zone {
 public:
  static const zone* find(std::string_view name);

  // The span holding the instant `sys`.
  offset_span at(int64_t sys) const;

  // The instant of local wall-clock second `local`: its first occurrence when the clocks went
  // back over it, the end of the gap when the clocks jumped over it.
  int64_t to_sys(int64_t local) const;

 private:
  zone(const date::time_zone* tz, std::optional<posix_rule> rule, int64_t rule_from)
      : tz_{tz}, rule_{rule}, rule_from_{rule_from} {}
  offset_span rule_at(int64_t sys) const;

  const date::time_zone* tz_;
  std::optional<posix_rule> rule_;
  int64_t rule_from_;  // the last transition the TZif file lists; the rule applies after it
};

}  // namespace tessera::cron::detail
