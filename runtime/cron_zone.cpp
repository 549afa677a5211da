#include "runtime/cron_zone.hpp"

#include <date/tz.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>

namespace tessera::cron::detail {

namespace {

constexpr int64_t day_seconds = 86400;

// POSIX TZ grammar: [+-]hh[:mm[:ss]].
bool read_hms(std::string_view& s, int32_t& out) {
  int sign = 1;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    sign = s[0] == '-' ? -1 : 1;
    s.remove_prefix(1);
  }
  int32_t total = 0;
  for (int part = 0; part < 3; ++part) {
    if (part > 0) {
      if (s.empty() || s[0] != ':') break;
      s.remove_prefix(1);
    }
    size_t n = 0;
    int32_t v = 0;
    while (n < s.size() && n < 3 && std::isdigit(static_cast<unsigned char>(s[n])))
      v = v * 10 + (s[n++] - '0');
    if (n == 0) return false;
    s.remove_prefix(n);
    total += v * (part == 0 ? 3600 : part == 1 ? 60 : 1);
  }
  out = sign * total;
  return true;
}

bool read_name(std::string_view& s) {
  size_t n = 0;
  if (!s.empty() && s[0] == '<') {
    n = s.find('>');
    if (n == std::string_view::npos) return false;
    s.remove_prefix(n + 1);
    return true;
  }
  while (n < s.size() && std::isalpha(static_cast<unsigned char>(s[n]))) ++n;
  s.remove_prefix(n);
  return n >= 3;
}

bool read_int(std::string_view& s, int& out) {
  size_t n = 0;
  out = 0;
  while (n < s.size() && std::isdigit(static_cast<unsigned char>(s[n])))
    out = out * 10 + (s[n++] - '0');
  s.remove_prefix(n);
  return n > 0;
}

bool read_date_rule(std::string_view& s, posix_rule::date_rule& r) {
  if (s.empty()) return false;
  if (s[0] == 'M') {
    s.remove_prefix(1);
    r.kind = 'M';
    if (!read_int(s, r.month) || s.empty() || s[0] != '.') return false;
    s.remove_prefix(1);
    if (!read_int(s, r.week) || s.empty() || s[0] != '.') return false;
    s.remove_prefix(1);
    if (!read_int(s, r.weekday)) return false;
    if (r.month < 1 || r.month > 12 || r.week < 1 || r.week > 5 || r.weekday > 6) return false;
  } else {
    r.kind = s[0] == 'J' ? 'J' : 'D';
    if (s[0] == 'J') s.remove_prefix(1);
    if (!read_int(s, r.day) || r.day > 365) return false;
  }
  if (!s.empty() && s[0] == '/') {
    s.remove_prefix(1);
    if (!read_hms(s, r.time)) return false;
  }
  return true;
}

// The local midnight (days since the epoch) on which `r` falls in `year`.
int64_t rule_day(const posix_rule::date_rule& r, int year) {
  if (r.kind == 'J')
    return days_from_civil(year, 1, 1) + r.day - 1 + (is_leap(year) && r.day >= 60);
  if (r.kind == 'D') return days_from_civil(year, 1, 1) + r.day;
  const int64_t first = days_from_civil(year, r.month, 1);
  const unsigned dim = days_in_month(year, r.month);
  unsigned day = 1 + (r.weekday + 7 - weekday_of(first)) % 7 + 7 * (r.week - 1);
  while (day > dim) day -= 7;
  return first + day - 1;
}

// The footer line of a TZif v2+ file ("\n<rule>\n" at its very end), if any.
std::string tzif_footer(const std::string& path) {
  std::ifstream in{path, std::ios::binary | std::ios::ate};
  if (!in) return {};
  const auto size = static_cast<int64_t>(in.tellg());
  const int64_t tail = std::min<int64_t>(size, 256);
  std::string buf(static_cast<size_t>(tail), '\0');
  in.seekg(size - tail);
  in.read(buf.data(), tail);
  if (buf.size() < 2 || buf.back() != '\n') return {};
  const auto start = buf.rfind('\n', buf.size() - 2);
  return start == std::string::npos ? std::string{} : buf.substr(start + 1, buf.size() - start - 2);
}

}  // namespace

std::optional<posix_rule> parse_posix_rule(std::string_view s) {
  posix_rule r;
  int32_t west = 0;
  if (!read_name(s) || !read_hms(s, west)) return std::nullopt;
  r.std_offset = -west;
  if (s.empty() || !read_name(s)) return std::nullopt;  // no daylight saving time
  r.dst_offset = r.std_offset + 3600;
  if (!s.empty() && s[0] != ',') {
    if (!read_hms(s, west)) return std::nullopt;
    r.dst_offset = -west;
  }
  if (s.empty() || s[0] != ',') return std::nullopt;
  s.remove_prefix(1);
  if (!read_date_rule(s, r.start) || s.empty() || s[0] != ',') return std::nullopt;
  s.remove_prefix(1);
  if (!read_date_rule(s, r.end) || !s.empty()) return std::nullopt;
  return r;
}

const zone* zone::find(std::string_view name) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<zone>, std::less<>> zones;
  std::lock_guard lock{mutex};
  if (auto it = zones.find(name); it != zones.end()) return it->second.get();
  try {
    const auto* tz = date::locate_zone(name);
    // The last transition the file lists; asking also makes date load the file now, so that
    // later lookups cannot throw.
    const auto last = tz->get_info(date::sys_days{date::year{9000} / 1 / 1}).begin;
    std::optional<posix_rule> rule;
    if (name.find("..") == std::string_view::npos)
      rule = parse_posix_rule(tzif_footer("/usr/share/zoneinfo/" + std::string{tz->name()}));
    auto& z = zones[std::string{name}];
    z.reset(new zone{tz, rule, last.time_since_epoch().count()});
    return z.get();
  } catch (const std::exception&) {
    return nullptr;
  }
}

offset_span zone::at(int64_t sys) const {
  if (rule_ && sys >= rule_from_) return rule_at(sys);
  const auto info = tz_->get_info(date::sys_seconds{std::chrono::seconds{sys}});
  auto end = info.end.time_since_epoch().count();
  if (rule_ && end > rule_from_) end = rule_from_;
  return {info.begin.time_since_epoch().count(), end, static_cast<int32_t>(info.offset.count())};
}

offset_span zone::rule_at(int64_t sys) const {
  const auto& r = *rule_;
  const int year = civil_from_days(floor_div(sys, day_seconds)).year;
  // Transitions of the years around `sys`, in order: (instant, offset from then on).
  std::pair<int64_t, int32_t> events[6];
  int n = 0;
  for (int y = year - 1; y <= year + 1; ++y) {
    events[n++] = {rule_day(r.start, y) * day_seconds + r.start.time - r.std_offset, r.dst_offset};
    events[n++] = {rule_day(r.end, y) * day_seconds + r.end.time - r.dst_offset, r.std_offset};
  }
  std::sort(std::begin(events), std::end(events));
  int i = 5;
  while (i > 0 && events[i].first > sys) --i;
  const int64_t begin = std::max(events[i].first, rule_from_);
  const int64_t end = i < 5 ? events[i + 1].first : INT64_MAX;
  return {begin, end, events[i].second};
}

int64_t zone::to_sys(int64_t local) const {
  // Offsets lie within +-26 h: the spans that can hold `local` start from 36 h before it.
  auto span = at(local - 36 * 3600);
  for (;;) {
    const int64_t candidate = local - span.offset;
    if (candidate < span.begin) return span.begin;  // skipped over by a forward jump
    if (candidate < span.end) return candidate;     // the earliest occurrence
    span = at(span.end);
  }
}

}  // namespace tessera::cron::detail
