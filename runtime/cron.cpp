#include "runtime/cron.hpp"

#include <array>
#include <bit>
#include <cctype>
#include <climits>
#include <vector>

#include "runtime/cron_zone.hpp"

namespace tessera::cron {

namespace {

using detail::civil_from_days;
using detail::days_from_civil;
using detail::days_in_month;
using detail::weekday_of;

constexpr int64_t day_seconds = 86400;
constexpr int max_year = 9999;
constexpr int horizon_years = 401;  // the Gregorian calendar (weekdays too) repeats every 400

// The lowest set bit of `mask` at or above `from`, or -1.
int next_bit(uint64_t mask, unsigned from) {
  if (from >= 64) return -1;
  const uint64_t m = mask >> from;
  return m ? static_cast<int>(from) + std::countr_zero(m) : -1;
}

bool is_utc(std::string_view zone) { return zone == "UTC" || zone == "Etc/UTC"; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

uint32_t schedule::day_mask(int year, unsigned month) const {
  const unsigned dim = days_in_month(year, month);
  const uint32_t valid = static_cast<uint32_t>((uint64_t{1} << (dim + 1)) - 2);  // bits 1..dim
  if (dom_star_ && dow_star_) return valid;
  const unsigned wd1 = weekday_of(days_from_civil(year, month, 1));
  uint32_t dom = dom_ & valid;
  for (uint32_t m = dom_last_minus_; m; m &= m - 1) {
    const unsigned n = static_cast<unsigned>(std::countr_zero(m));
    if (n < dim) dom |= 1u << (dim - n);
  }
  for (uint32_t m = dom_nearest_; m; m &= m - 1) {
    const unsigned n = static_cast<unsigned>(std::countr_zero(m));
    if (n > dim) continue;  // `31W` in a 30-day month: never crosses into the next month
    const unsigned wd = (wd1 + n - 1) % 7;
    unsigned d = n;
    if (wd == 6) d = n == 1 ? 3 : n - 1;        // Saturday: the Friday before, or Monday the 3rd
    if (wd == 0) d = n == dim ? n - 2 : n + 1;  // Sunday: the Monday after, or the Friday
    dom |= 1u << d;
  }
  if (dom_last_weekday_) {
    const unsigned wd = (wd1 + dim - 1) % 7;
    dom |= 1u << (dim - (wd == 6 ? 1 : wd == 0 ? 2 : 0));
  }
  uint32_t dow = 0;
  constexpr uint64_t every_week = (1u << 1) | (1u << 8) | (1u << 15) | (1u << 22) | (1u << 29);
  for (unsigned w = 0; w < 7; ++w) {
    const unsigned first = 1 + (w + 7 - wd1) % 7;
    if (dow_ >> w & 1) dow |= static_cast<uint32_t>(every_week << (first - 1));
    if (dow_last_ >> w & 1) dow |= 1u << (first + 7 * ((dim - first) / 7));
    for (unsigned k = 1; k <= 5; ++k)
      if ((dow_nth_[w] >> k & 1) && first + 7 * (k - 1) <= dim) dow |= 1u << (first + 7 * (k - 1));
  }
  dow &= valid;
  if (!dom_star_ && !dow_star_) return dom | dow;
  return dom_star_ ? dow : dom;
}

std::optional<int64_t> schedule::next_local(int64_t local) const {
  if (!months_) return std::nullopt;  // default-constructed
  const int64_t start_day = detail::floor_div(local, day_seconds);
  const auto date = civil_from_days(start_day);
  int y = date.year;
  unsigned mo = date.month, d = date.day;
  unsigned secs = static_cast<unsigned>(local - start_day * day_seconds);
  unsigned h = secs / 3600, mi = secs / 60 % 60, s = secs % 60;
  const int last_year = std::min(max_year, y + horizon_years);
  int mask_year = INT_MIN;
  unsigned mask_month = 0;
  uint32_t days = 0;
  for (;;) {
    if (mo > 12 || !(months_ >> mo & 1)) {
      int next = next_bit(months_, mo > 12 ? 13 : mo);
      if (next < 0) {
        ++y;
        next = std::countr_zero(months_);
      }
      mo = static_cast<unsigned>(next);
      d = 1, h = mi = s = 0;
      if (y > last_year) return std::nullopt;
    }
    if (mask_year != y || mask_month != mo) mask_year = y, mask_month = mo, days = day_mask(y, mo);
    const int nd = next_bit(days, d);
    if (nd < 0) {
      ++mo, d = 1, h = mi = s = 0;
      continue;
    }
    if (static_cast<unsigned>(nd) != d) d = static_cast<unsigned>(nd), h = mi = s = 0;
    const int nh = next_bit(hours_, h);
    if (nh < 0) {
      ++d, h = mi = s = 0;
      continue;
    }
    if (static_cast<unsigned>(nh) != h) h = static_cast<unsigned>(nh), mi = s = 0;
    const int nmi = next_bit(minutes_, mi);
    if (nmi < 0) {
      ++h, mi = s = 0;
      continue;
    }
    if (static_cast<unsigned>(nmi) != mi) mi = static_cast<unsigned>(nmi), s = 0;
    const int ns = next_bit(seconds_, s);
    if (ns < 0) {
      ++mi, s = 0;
      continue;
    }
    return days_from_civil(y, mo, d) * day_seconds + h * 3600 + mi * 60 + ns;
  }
}

std::optional<time_point> schedule::next_after(time_point t) const {
  const int64_t u = t.time_since_epoch().count() + 1;
  if (!zone_) {
    auto local = next_local(u);
    if (!local) return std::nullopt;
    return time_point{std::chrono::seconds{*local}};
  }
  const auto span = zone_->at(u);
  int64_t from = u + span.offset;
  if (u - span.begin < 2 * day_seconds) {
    const auto before = zone_->at(span.begin - 1);
    const int64_t jump_end = span.begin + before.offset;  // local time the clocks left
    if (before.offset < span.offset && u == span.begin)
      from = jump_end;  // the times skipped by the jump fire now, at the end of the gap
    else if (before.offset > span.offset && from < jump_end)
      from = jump_end;  // the repeated times already fired at their first occurrence
  }
  auto local = next_local(from);
  if (!local) return std::nullopt;
  return time_point{std::chrono::seconds{zone_->to_sys(*local)}};
}

std::string format_iso8601(time_point t, std::string_view zone) {
  const int64_t sys = t.time_since_epoch().count();
  int32_t offset = 0;
  if (!is_utc(zone))
    if (const auto* z = detail::zone::find(zone)) offset = z->at(sys).offset;
  const int64_t local = sys + offset;
  const int64_t day = detail::floor_div(local, day_seconds);
  const auto date = civil_from_days(day);
  const auto secs = local - day * day_seconds;
  const int32_t off = offset < 0 ? -offset : offset;
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d%c%02d:%02d", date.year,
                        date.month, date.day, static_cast<int>(secs / 3600),
                        static_cast<int>(secs / 60 % 60), static_cast<int>(secs % 60),
                        offset < 0 ? '-' : '+', off / 3600, off / 60 % 60);
  if (off % 60) n += std::snprintf(buf + n, sizeof buf - n, ":%02d", off % 60);  // historic LMT
  return std::string(buf, static_cast<size_t>(n));
}

namespace {

// Reads exactly `width` digits.
bool digits(std::string_view& s, size_t width, int& out) {
  if (s.size() < width) return false;
  out = 0;
  for (size_t i = 0; i < width; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    out = out * 10 + (s[i] - '0');
  }
  s.remove_prefix(width);
  return true;
}

bool eat(std::string_view& s, char c) {
  if (s.empty() || s[0] != c) return false;
  s.remove_prefix(1);
  return true;
}

}  // namespace

std::optional<time_point> parse_iso8601(std::string_view text, std::string_view zone) {
  std::string_view s = trim(text);
  int y, mo, d, h = 0, mi = 0, sec = 0;
  if (!digits(s, 4, y) || !eat(s, '-') || !digits(s, 2, mo) || !eat(s, '-') || !digits(s, 2, d))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > static_cast<int>(days_in_month(y, mo))) return std::nullopt;
  std::optional<int32_t> offset;
  if (!s.empty()) {
    if (!(eat(s, 'T') || eat(s, 't') || eat(s, ' '))) return std::nullopt;
    if (!digits(s, 2, h) || !eat(s, ':') || !digits(s, 2, mi)) return std::nullopt;
    if (eat(s, ':') && !digits(s, 2, sec)) return std::nullopt;
    if (h > 23 || mi > 59 || sec > 59) return std::nullopt;
    if (eat(s, '.') || eat(s, ',')) {
      size_t n = 0;
      while (n < s.size() && std::isdigit(static_cast<unsigned char>(s[n]))) ++n;
      if (n == 0) return std::nullopt;
      s.remove_prefix(n);  // truncated to whole seconds
    }
    if (eat(s, 'Z') || eat(s, 'z')) {
      offset = 0;
    } else if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
      const int sign = s[0] == '-' ? -1 : 1;
      s.remove_prefix(1);
      int oh, om = 0;
      if (!digits(s, 2, oh)) return std::nullopt;
      if (!s.empty()) {
        eat(s, ':');
        if (!digits(s, 2, om)) return std::nullopt;
      }
      if (oh > 23 || om > 59) return std::nullopt;
      offset = sign * (oh * 3600 + om * 60);
    }
  }
  if (!s.empty()) return std::nullopt;
  const int64_t local = days_from_civil(y, mo, d) * day_seconds + h * 3600 + mi * 60 + sec;
  if (offset) return time_point{std::chrono::seconds{local - *offset}};
  if (is_utc(zone)) return time_point{std::chrono::seconds{local}};
  const auto* z = detail::zone::find(zone);
  if (!z) return std::nullopt;
  return time_point{std::chrono::seconds{z->to_sys(local)}};
}

}  // namespace tessera::cron
