// `tessera cron next|batch`: the cron library's fire times on the command line and as JSON lines
// for tooling (tests/e2e/test_cron_oracle.py compares them with reference implementations).
#include "web/cron_command.hpp"

#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>
#include <variant>

#include "runtime/cron.hpp"

namespace tessera::web {
namespace {

using json = nlohmann::json;

constexpr int max_count = 10000;

struct query_error {
  std::string field, message;
};

cron::time_point now() {
  return std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
}

// The next `count` fire times after `from` as ISO-8601 strings, or what is wrong with the query.
std::variant<std::vector<std::string>, query_error> fire_times(const std::string& expr,
                                                               const std::string& tz,
                                                               cron::time_point from, int count) {
  if (count < 1 || count > max_count)
    return query_error{
        "count", "count " + std::to_string(count) + " must be in 1-" + std::to_string(max_count)};
  auto parsed = cron::parse(expr, tz);
  if (auto* e = std::get_if<cron::parse_error>(&parsed)) return query_error{e->field, e->message};
  const auto& s = std::get<cron::schedule>(parsed);
  std::vector<std::string> out;
  for (auto t = s.next_after(from); t && static_cast<int>(out.size()) < count; t = s.next_after(*t))
    out.push_back(cron::format_iso8601(*t, tz));
  return out;
}

std::variant<cron::time_point, query_error> from_text(const std::string& text,
                                                      const std::string& tz) {
  if (text.empty()) return now();
  if (auto t = cron::parse_iso8601(text, tz)) return *t;
  return query_error{"from", "from \"" + text + "\" is not an ISO-8601 time (e.g. " +
                                 "2026-12-01T09:00:00Z) in timezone \"" + tz + "\""};
}

int run_next(const cron_options& o) {
  auto from = from_text(o.from, o.tz);
  std::variant<std::vector<std::string>, query_error> r = query_error{};
  if (auto* e = std::get_if<query_error>(&from))
    r = *e;
  else
    r = fire_times(o.expression, o.tz, std::get<cron::time_point>(from), o.count);
  if (auto* e = std::get_if<query_error>(&r)) {
    std::cerr << "tessera: " << e->message << "\n";
    return 2;
  }
  for (auto& t : std::get<std::vector<std::string>>(r)) std::cout << t << "\n";
  return 0;
}

json answer(const std::string& line) {
  json q;
  try {
    q = json::parse(line);
  } catch (const json::exception& e) {
    return {{"error", std::string{"input is not JSON: "} + e.what()}, {"field", "input"}};
  }
  auto text = [&](const char* key, const char* fallback) -> std::optional<std::string> {
    if (!q.contains(key) || q[key].is_null()) return fallback;
    if (!q[key].is_string()) return std::nullopt;
    return q[key].get<std::string>();
  };
  auto expr = q.is_object() ? text("expr", nullptr) : std::nullopt;
  auto tz = q.is_object() ? text("tz", "UTC") : std::nullopt;
  const bool count_ok = q.is_object() && (!q.contains("count") || q["count"].is_number_integer());
  if (!expr || !tz || !count_ok ||
      (q.contains("from") && !q["from"].is_string() && !q["from"].is_number_integer()))
    return {{"error",
             "input must be an object {\"expr\": string, \"tz\": string, \"from\": "
             "ISO-8601 string or epoch seconds, \"count\": integer}"},
            {"field", "input"}};
  std::variant<cron::time_point, query_error> from = now();
  if (q.contains("from") && q["from"].is_number_integer())
    from = cron::time_point{std::chrono::seconds{q["from"].get<int64_t>()}};
  else if (q.contains("from"))
    from = from_text(q["from"].get<std::string>(), *tz);
  if (auto* e = std::get_if<query_error>(&from))
    return {{"error", e->message}, {"field", e->field}};
  const int64_t count = q.value("count", int64_t{5});
  auto r = fire_times(*expr, *tz, std::get<cron::time_point>(from),
                      static_cast<int>(std::clamp<int64_t>(count, -1, max_count + 1)));
  if (auto* e = std::get_if<query_error>(&r)) return {{"error", e->message}, {"field", e->field}};
  return {{"times", std::get<std::vector<std::string>>(r)}};
}

int run_batch() {
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::cout << answer(line).dump() << "\n";
  }
  std::cout.flush();
  return 0;
}

}  // namespace

CLI::App* add_cron_command(CLI::App& app, cron_options& opts) {
  auto* cron = app.add_subcommand("cron", "cron expressions: next fire times (docs/cron.md)");
  cron->require_subcommand(1);
  auto* next = cron->add_subcommand("next", "print the next fire times of a cron expression");
  next->add_option("expression", opts.expression,
                   "5 fields (minute first), 6 fields (second first) or a macro like @daily")
      ->required();
  next->add_option("--from", opts.from, "ISO-8601 start, exclusive (default now)");
  next->add_option("--tz", opts.tz, "IANA time zone the expression runs in (default UTC)");
  next->add_option("--count", opts.count, "how many fire times, 1-10000 (default 5)");
  next->callback([&opts] { opts.next = true; });
  auto* batch = cron->add_subcommand(
      "batch", "answer JSON lines {\"expr\",\"tz\",\"from\",\"count\"} from stdin, one per line");
  batch->callback([&opts] { opts.batch = true; });
  return cron;
}

int run_cron_command(const cron_options& opts) { return opts.batch ? run_batch() : run_next(opts); }

}  // namespace tessera::web
