// Cron schedules: parsing cron expressions and computing their next fire times in an IANA zone.
//
// Contract:
// - parse() accepts a 5-field (minute hour day-of-month month day-of-week) or 6-field (second
//   first) expression or a macro (@yearly @annually @monthly @weekly @daily @midnight @hourly),
//   evaluated on the wall clock of `zone`. It returns a parse_error (never throws) for bad
//   syntax, out-of-range values, unknown names, an unknown zone, @reboot, and an expression
//   that can never fire ("0 0 30 2 *"). docs/cron.md lists the syntax.
// - Day-of-month and day-of-week combine with Vixie cron's rule: when both are restricted
//   (neither is exactly `*` or `?`; L, W and # count as restrictions) a day matches if either
//   matches, otherwise both must.
// - Daylight saving time: a matching local time that does not exist (spring-forward gap) fires
//   at the first instant after the gap, once however many matching times the gap swallowed; a
//   local time that occurs twice (fall-back) fires once, at its first occurrence.
// - next_after() is pure and thread-safe (a schedule is immutable); it does no allocation and
//   no string work, and takes a few microseconds. It searches at most 401 years ahead and never
//   past year 9999, returning nullopt beyond that.
// - Zone data comes from the tzdata package (/usr/share/zoneinfo), loaded once per zone and
//   shared by every schedule for the process's lifetime; times after a zone file's last listed
//   transition (2037) follow the file's POSIX TZ rule.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace tessera::cron {

using time_point = std::chrono::sys_seconds;  // UTC seconds

struct parse_error {
  // "expression", "second", "minute", "hour", "day-of-month", "month", "day-of-week" or
  // "timezone".
  std::string field;
  // Names the field and quotes the bad part: `minute field "61": 61 is out of range 0-59`.
  std::string message;
};

namespace detail {
class zone;
}

class schedule {
 public:
  // A default-constructed schedule never fires (next_after returns nullopt).
  schedule() = default;

  // The first fire time strictly after `t`, or nullopt when there is none in the horizon.
  std::optional<time_point> next_after(time_point t) const;

  const std::string& expression() const { return expression_; }
  const std::string& zone() const { return zone_name_; }  // IANA name, e.g. "Europe/Berlin"
  bool has_seconds() const { return has_seconds_; }       // the 6-field form

 private:
  friend std::variant<schedule, parse_error> parse(std::string_view, std::string_view);
  friend struct schedule_builder;

  // The first matching local wall-clock second >= `local` (seconds since 1970-01-01T00:00 of
  // the local calendar), or nullopt past the horizon.
  std::optional<int64_t> next_local(int64_t local) const;
  uint32_t day_mask(int year, unsigned month) const;  // bit d set: day d of that month matches

  uint64_t seconds_ = 0;  // bit n: second n fires
  uint64_t minutes_ = 0;
  uint32_t hours_ = 0;
  uint32_t dom_ = 0;               // bits 1..31
  uint32_t dom_last_minus_ = 0;    // bit n: `L-n` (bit 0 is plain `L`)
  uint32_t dom_nearest_ = 0;       // bit n: `nW`
  uint16_t months_ = 0;            // bits 1..12
  uint8_t dow_ = 0;                // bits 0..6, 0 = Sunday
  uint8_t dow_last_ = 0;           // bit w: `wL`, the last such weekday of the month
  uint8_t dow_nth_[7] = {};        // [w] bit k: `w#k`, the k-th such weekday of the month
  bool dom_last_weekday_ = false;  // `LW`
  bool dom_star_ = true;           // day-of-month is `*` or `?`
  bool dow_star_ = true;
  bool has_seconds_ = false;
  const detail::zone* zone_ = nullptr;  // nullptr: UTC (the fast path)
  std::string expression_;
  std::string zone_name_ = "UTC";
};

// Parses `expression` (surrounding whitespace ignored, names case-insensitive) in `zone`.
std::variant<schedule, parse_error> parse(std::string_view expression,
                                          std::string_view zone = "UTC");

// "2026-12-01T09:00:00+01:00": `t` on the wall clock of `zone` with that zone's offset at `t`
// ("+00:00" for UTC, never "Z"). An unknown zone formats as UTC.
std::string format_iso8601(time_point t, std::string_view zone);

// Reads "2026-12-01T09:00:00Z", "...+01:00", "...-0530", with optional fractional seconds
// (truncated), or without an offset ("2026-12-01T09:00:00", "2026-12-01T09:00", "2026-12-01")
// as wall-clock time in `zone` (a time in a DST gap means the end of the gap, a repeated time
// its first occurrence). nullopt on anything else or an unknown zone.
std::optional<time_point> parse_iso8601(std::string_view text, std::string_view zone = "UTC");

}  // namespace tessera::cron
