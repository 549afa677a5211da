// cron::parse(): the expression grammar of docs/cron.md, into schedule's bitsets.
#include <algorithm>
#include <array>
#include <cctype>
#include <string>
#include <vector>

#include "runtime/cron.hpp"
#include "runtime/cron_zone.hpp"

namespace tessera::cron {

namespace {

constexpr std::array<std::string_view, 12> month_names = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 7> weekday_names = {"SUN", "MON", "TUE", "WED",
                                                           "THU", "FRI", "SAT"};

struct field_spec {
  std::string_view name;
  unsigned min, max;  // day-of-week accepts 7 for Sunday
  const std::string_view* names = nullptr;
  unsigned name_count = 0, first_name = 0;
};

constexpr field_spec second_spec{"second", 0, 59};
constexpr field_spec minute_spec{"minute", 0, 59};
constexpr field_spec hour_spec{"hour", 0, 23};
constexpr field_spec dom_spec{"day-of-month", 1, 31};
constexpr field_spec month_spec{"month", 1, 12, month_names.data(), 12, 1};
constexpr field_spec dow_spec{"day-of-week", 0, 7, weekday_names.data(), 7, 0};

std::string upper(std::string_view s) {
  std::string out{s};
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string quoted(std::string_view s) { return "\"" + std::string{s} + "\""; }

// A field's parse result: the plain values plus the day specials.
struct field_value {
  uint64_t bits = 0;
  uint32_t last_minus = 0, nearest = 0;
  bool last_weekday = false;
  uint8_t weekday_last = 0;
  std::array<uint8_t, 7> nth = {};
};

struct item_error {
  std::string detail;
};

std::optional<unsigned> number(std::string_view s) {
  if (s.empty() || s.size() > 4) return std::nullopt;
  unsigned v = 0;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  return v;
}

// A number or a name of the field, range-checked; on failure `err` says why.
std::optional<unsigned> value(std::string_view s, const field_spec& f, std::string& err) {
  auto v = number(s);
  if (!v && f.names) {
    const auto u = upper(s);
    for (unsigned i = 0; i < f.name_count; ++i)
      if (f.names[i] == u) v = f.first_name + i;
  }
  if (!v) {
    err = s.empty() ? "a value is missing"
                    : quoted(s) + " is not a number" +
                          (f.names ? " or a " + std::string{f.name} + " name" : std::string{});
    return std::nullopt;
  }
  if (*v < f.min || *v > f.max) {
    err = std::to_string(*v) + " is out of range " + std::to_string(f.min) + "-" +
          std::to_string(f.max);
    return std::nullopt;
  }
  return v;
}

// `L`, `L-n`, `LW`, `nW` in day-of-month; `wL`, `w#k` in day-of-week. True when `item` was one.
bool special(std::string_view item, const field_spec& f, field_value& out, std::string& err) {
  const auto u = upper(item);
  if (&f == &dom_spec) {
    if (u == "L" || u == "LW") {
      (u == "L" ? out.last_minus |= 1 : out.last_weekday = true);
      return true;
    }
    if (u.starts_with("L-")) {
      auto n = number(std::string_view{u}.substr(2));
      if (!n || *n > 30) err = quoted(item) + ": L-n needs n in 0-30";
      if (n && *n <= 30) out.last_minus |= 1u << *n;
      return true;
    }
    if (u.size() > 1 && u.back() == 'W') {
      if (auto n = value(std::string_view{u}.substr(0, u.size() - 1), f, err))
        out.nearest |= 1u << *n;
      return true;
    }
    return false;
  }
  if (&f != &dow_spec) return false;
  const auto hash = u.find('#');
  if (hash != std::string::npos) {
    auto w = value(std::string_view{item}.substr(0, hash), f, err);
    auto k = number(std::string_view{u}.substr(hash + 1));
    if (w && (!k || *k < 1 || *k > 5)) err = quoted(item) + ": the n of #n must be 1-5";
    if (w && k && *k >= 1 && *k <= 5) out.nth[*w % 7] |= static_cast<uint8_t>(1u << *k);
    return true;
  }
  if (u.size() > 1 && u.back() == 'L') {
    if (auto w = value(std::string_view{item}.substr(0, item.size() - 1), f, err))
      out.weekday_last |= static_cast<uint8_t>(1u << (*w % 7));
    return true;
  }
  return false;
}

// `*`, `?`, `a`, `a-b`, each optionally `/step` (`a/step` runs from a to the field's end).
void plain(std::string_view item, const field_spec& f, field_value& out, std::string& err) {
  auto base = item;
  unsigned step = 1;
  const unsigned field_max = &f == &dow_spec ? 6 : f.max;
  const auto slash = item.find('/');
  if (slash != std::string_view::npos) {
    base = item.substr(0, slash);
    auto n = number(item.substr(slash + 1));
    const unsigned most = field_max - f.min + 1;
    if (!n || *n == 0 || *n > most) {
      err = "step " + quoted(item.substr(slash + 1)) + " must be a number in 1-" +
            std::to_string(most);
      return;
    }
    step = *n;
  }
  unsigned lo = f.min, hi = field_max;
  if (base != "*" && base != "?") {
    const auto dash = base.find('-');
    auto a = value(base.substr(0, dash), f, err);
    if (!a) return;
    lo = *a;
    hi = slash != std::string_view::npos ? f.max : lo;  // day-of-week: `1/2` reaches 7
    if (dash != std::string_view::npos) {
      auto b = value(base.substr(dash + 1), f, err);
      if (!b) return;
      hi = *b;
      if (&f == &dow_spec && hi == 0 && upper(base.substr(dash + 1)) == "SUN") hi = 7;  // FRI-SUN
      if (lo > hi) {
        err =
            "range start " + std::to_string(lo) + " is greater than its end " + std::to_string(hi);
        return;
      }
    }
  } else if (base == "?" && &f != &dom_spec && &f != &dow_spec) {
    err = "? is only allowed in day-of-month and day-of-week";
    return;
  }
  for (unsigned v = lo; v <= hi; v += step)
    out.bits |= uint64_t{1} << (&f == &dow_spec ? v % 7 : v);
}

std::variant<field_value, parse_error> parse_field(std::string_view text, const field_spec& f) {
  field_value out;
  size_t start = 0;
  for (;;) {
    const auto comma = text.find(',', start);
    const auto item = text.substr(start, comma == std::string_view::npos ? comma : comma - start);
    std::string err;
    if (item.empty())
      err = "empty list item";
    else if (!special(item, f, out, err))
      plain(item, f, out, err);
    if (!err.empty())
      return parse_error{std::string{f.name},
                         std::string{f.name} + " field " + quoted(item) + ": " + err};
    if (comma == std::string_view::npos) return out;
    start = comma + 1;
  }
}

std::vector<std::string_view> split_fields(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    const size_t start = i;
    while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

std::string_view trim_view(std::string_view s) {
  const auto fields = split_fields(s);
  if (fields.empty()) return {};
  return {fields.front().data(),
          static_cast<size_t>(fields.back().data() + fields.back().size() - fields.front().data())};
}

std::optional<std::string_view> macro(std::string_view name) {
  const auto u = upper(name);
  if (u == "@YEARLY" || u == "@ANNUALLY") return "0 0 1 1 *";
  if (u == "@MONTHLY") return "0 0 1 * *";
  if (u == "@WEEKLY") return "0 0 * * 0";
  if (u == "@DAILY" || u == "@MIDNIGHT") return "0 0 * * *";
  if (u == "@HOURLY") return "0 * * * *";
  return std::nullopt;
}

}  // namespace

struct schedule_builder {
  // Fills `s` from the fields (seconds first); an error names the first bad field.
  static std::optional<parse_error> fill(schedule& s, const std::vector<std::string_view>& fields) {
    const field_spec* specs[] = {&second_spec, &minute_spec, &hour_spec,
                                 &dom_spec,    &month_spec,  &dow_spec};
    field_value v[6];
    for (int i = 0; i < 6; ++i) {
      auto r = parse_field(fields[static_cast<size_t>(i)], *specs[i]);
      if (auto* e = std::get_if<parse_error>(&r)) return *e;
      v[i] = std::get<field_value>(r);
    }
    s.seconds_ = v[0].bits;
    s.minutes_ = v[1].bits;
    s.hours_ = static_cast<uint32_t>(v[2].bits);
    s.dom_ = static_cast<uint32_t>(v[3].bits);
    s.dom_last_minus_ = v[3].last_minus;
    s.dom_nearest_ = v[3].nearest;
    s.dom_last_weekday_ = v[3].last_weekday;
    s.months_ = static_cast<uint16_t>(v[4].bits);
    s.dow_ = static_cast<uint8_t>(v[5].bits);
    s.dow_last_ = v[5].weekday_last;
    std::copy(v[5].nth.begin(), v[5].nth.end(), s.dow_nth_);
    s.dom_star_ = fields[3] == "*" || fields[3] == "?";
    s.dow_star_ = fields[5] == "*" || fields[5] == "?";
    // Only day-of-month with month can rule out every day ("30 2"): look through a whole
    // 400-year cycle of the calendar.
    if (!s.next_local(detail::days_from_civil(2000, 1, 1) * 86400))
      return parse_error{"day-of-month", "day-of-month field " + quoted(fields[3]) +
                                             " matches no day of month field " + quoted(fields[4]) +
                                             ": the schedule never fires"};
    return std::nullopt;
  }
};

std::variant<schedule, parse_error> parse(std::string_view expression, std::string_view zone) {
  const auto text = split_fields(expression);
  auto fields = text;
  if (fields.size() == 1 && fields[0].starts_with('@')) {
    auto m = macro(fields[0]);
    if (!m) {
      const bool reboot = upper(fields[0]) == "@REBOOT";
      return parse_error{"expression",
                         "expression " + quoted(fields[0]) +
                             (reboot ? ": @reboot is not a schedule (it has no fire times)"
                                     : ": unknown macro; use @yearly, @annually, @monthly, "
                                       "@weekly, @daily, @midnight or @hourly")};
    }
    fields = split_fields(*m);
  }
  if (fields.size() != 5 && fields.size() != 6)
    return parse_error{"expression", "expression " + quoted(trim_view(expression)) + " has " +
                                         std::to_string(fields.size()) +
                                         (fields.size() == 1 ? " field;" : " fields;") +
                                         " expected 5 (minute hour day-of-month month "
                                         "day-of-week) or 6 (second first)"};
  schedule s;
  s.has_seconds_ = fields.size() == 6;
  if (!s.has_seconds_) fields.insert(fields.begin(), "0");
  if (auto err = schedule_builder::fill(s, fields)) return *err;
  if (zone != "UTC" && zone != "Etc/UTC") {
    s.zone_ = zone.empty() ? nullptr : detail::zone::find(zone);
    if (!s.zone_)
      return parse_error{"timezone", "timezone " + quoted(zone) + ": unknown IANA time zone"};
  }
  s.zone_name_ = std::string{zone};
  s.expression_ = std::string{trim_view(expression)};
  return s;
}

}  // namespace tessera::cron
