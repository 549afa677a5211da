#include "actors/task/run_log.hpp"

#include <algorithm>
#include <array>
#include <cstdio>

#include "actors/storage/messages.hpp"
#include "actors/task/task_codec.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"

namespace tessera::task {
namespace {

using json = nlohmann::json;

constexpr std::array<std::string_view, 5> level_names = {"debug", "info", "warning", "error",
                                                         "critical"};

std::string lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

int level_rank(std::string_view level) {
  for (size_t i = 0; i < level_names.size(); ++i)
    if (level_names[i] == level) return static_cast<int>(i);
  return 1;  // unknown levels count as info
}

std::string pad(int64_t n, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*lld", width, static_cast<long long>(n));
  return buf;
}

std::string task_log_prefix(const std::string& task_id) { return "tlog/" + task_id + "/"; }

std::string run_log_prefix(const std::string& task_id, int64_t seq) {
  return task_log_prefix(task_id) + pad(seq, 12) + "/";
}

std::string time_key(int64_t created_ms, const std::string& task_id, int64_t seq, int64_t n) {
  return "log/" + pad(created_ms, 13) + "/" + task_id + "/" + pad(seq, 12) + "/" + pad(n, 5);
}

// The time index key of a stored entry.
std::optional<std::string> time_key_of(const json& entry) {
  if (!entry.is_object()) return std::nullopt;
  auto created = runtime::parse_iso8601(string_member(entry, "created_at"));
  auto id = string_member(entry, "id");
  auto task = string_member(entry, "task_id");
  auto slash = id.rfind('/');
  auto colon = id.rfind(':', slash);
  if (!created || slash == std::string::npos || colon == std::string::npos) return std::nullopt;
  try {
    return time_key(*created, task, std::stoll(id.substr(colon + 1, slash - colon - 1)),
                    std::stoll(id.substr(slash + 1)));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

caf::error bad(const std::string& message) { return make_error(errc::invalid_argument, message); }

}  // namespace

std::vector<adapters::write_op> log_ops(const std::string& task_id, int64_t seq, const json& logs,
                                        int64_t fallback_ms, json* entries) {
  std::vector<adapters::write_op> ops;
  if (entries) *entries = json::array();
  if (!logs.is_array()) return ops;
  int64_t n = 0;
  for (auto& line : logs) {
    if (!line.is_object()) continue;  // the answer is untrusted: only well-formed lines count
    auto at = runtime::parse_iso8601(string_member(line, "time")).value_or(fallback_ms);
    json entry = {{"id", run_id(task_id, seq) + "/" + std::to_string(n)},
                  {"task_id", task_id},
                  {"run_id", run_id(task_id, seq)},
                  {"level", lower(string_member(line, "level", "info"))},
                  {"message", string_member(line, "message")},
                  {"source", string_member(line, "source")},
                  {"created_at", runtime::iso8601(at)}};
    auto text = entry.dump();
    ops.push_back({run_log_prefix(task_id, seq) + pad(n, 5), text, false});
    ops.push_back({time_key(at, task_id, seq, n), text, false});
    if (entries) entries->push_back(std::move(entry));
    ++n;
  }
  return ops;
}

caf::expected<json> run_logs(const adapters::kv_store& store, const std::string& task_id,
                             int64_t seq) {
  auto rows = store.scan(run_log_prefix(task_id, seq), "", 100'000);
  if (!rows) return rows.error();
  json out = json::array();
  for (auto& [_, value] : *rows) out.push_back(json::parse(value, nullptr, false));
  return out;
}

caf::expected<std::vector<adapters::write_op>> erase_run_ops(const adapters::kv_store& store,
                                                             const std::string& task_id,
                                                             int64_t seq) {
  std::vector<adapters::write_op> ops{{run_key(task_id, seq), {}, true}};
  auto rows = store.scan(run_log_prefix(task_id, seq), "", 100'000);
  if (!rows) return rows.error();
  for (auto& [key, value] : *rows) {
    ops.push_back({key, {}, true});
    if (auto tk = time_key_of(json::parse(value, nullptr, false))) ops.push_back({*tk, {}, true});
  }
  return ops;
}

caf::expected<std::vector<adapters::write_op>> erase_task_log_ops(const adapters::kv_store& store,
                                                                  const std::string& task_id) {
  std::vector<adapters::write_op> ops;
  auto rows = store.scan(task_log_prefix(task_id), "", 100'000'000);
  if (!rows) return rows.error();
  for (auto& [key, value] : *rows) {
    ops.push_back({key, {}, true});
    if (auto tk = time_key_of(json::parse(value, nullptr, false))) ops.push_back({*tk, {}, true});
  }
  return ops;
}

std::string string_member(const json& object, const char* key, const std::string& fallback) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : fallback;
}

caf::expected<log_query> parse_log_query(const log_params& p) {
  log_query q;
  if (p.task_id) {
    if (!storage::valid_storage_id(*p.task_id))
      return bad("task_id must be a task id (1-128 characters of A-Z a-z 0-9 _ . -)");
    q.task_id = *p.task_id;
  }
  if (p.level) {
    auto l = lower(*p.level);
    auto it = std::find(level_names.begin(), level_names.end(), l);
    if (it == level_names.end())
      return bad("level must be one of debug, info, warning, error, critical");
    q.min_level = static_cast<int32_t>(it - level_names.begin());
  }
  for (auto [text, out, name] :
       {std::tuple{&p.since, &q.since, "since"}, std::tuple{&p.until, &q.until, "until"}}) {
    if (!*text) continue;
    auto t = runtime::parse_iso8601(**text);
    if (!t)
      return bad(std::string{name} +
                 " must be an ISO-8601 time such as 2026-12-01T09:00:00Z, got '" + **text + "'");
    *out = *t;
  }
  if (p.limit) {
    size_t used = 0;
    long long n = -1;
    try {
      n = std::stoll(*p.limit, &used);
    } catch (const std::exception&) {
    }
    if (used != p.limit->size() || n < 1 || n > 1000)
      return bad("limit must be an integer from 1 to 1000");
    q.limit = static_cast<uint32_t>(n);
  }
  return q;
}

caf::expected<std::string> query_logs(const adapters::kv_store& store, const log_query& q) {
  json logs = json::array();
  auto keep = [&](const std::string& value) {
    auto entry = json::parse(value, nullptr, false);
    if (!entry.is_object()) return;
    if (level_rank(string_member(entry, "level", "info")) < q.min_level) return;
    auto at = runtime::parse_iso8601(string_member(entry, "created_at")).value_or(0);
    if (at < q.since || at >= q.until) return;
    logs.push_back(std::move(entry));
  };
  // Pages of keys in [from, to), newest first, filtered until `limit` entries are found.
  auto collect = [&](const std::string& from, std::string to) -> caf::error {
    constexpr size_t page = 4096;
    while (logs.size() < q.limit) {
      auto rows = store.range(from, to, page, true);
      if (!rows) return rows.error();
      for (auto& [_, value] : *rows) {
        keep(value);
        if (logs.size() >= q.limit) break;
      }
      if (rows->size() < page) break;
      to = rows->back().first;
    }
    return {};
  };
  caf::error err;
  if (!q.task_id.empty()) {
    // By task, newest run first.
    auto from = task_log_prefix(q.task_id);
    auto to = from;
    to.back() = '0';  // '/' + 1: just past the prefix
    err = collect(from, to);
  } else {
    err = collect("log/" + pad(std::max<int64_t>(q.since, 0), 13),
                  q.until == INT64_MAX ? std::string{"log0"} : "log/" + pad(q.until, 13));
  }
  if (err) return err;
  auto count = logs.size();
  return json{{"logs", std::move(logs)}, {"count", count}}.dump();
}

caf::expected<size_t> delete_logs(adapters::kv_store& store, int64_t before,
                                  const std::optional<std::string>& task_id) {
  size_t deleted = 0;
  std::string from = "log/";
  std::string to = "log/" + pad(std::max<int64_t>(before, 0), 13);
  constexpr size_t page = 4096;
  for (;;) {
    auto rows = store.range(from, to, page, false);
    if (!rows) return rows.error();
    std::vector<adapters::write_op> ops;
    for (auto& [key, value] : *rows) {
      auto entry = json::parse(value, nullptr, false);
      if (task_id && string_member(entry, "task_id") != *task_id) continue;
      ops.push_back({key, {}, true});
      if (entry.is_object()) {
        auto id = string_member(entry, "id");
        auto slash = id.rfind('/');
        auto colon = id.rfind(':', slash);
        if (slash != std::string::npos && colon != std::string::npos) {
          try {
            auto seq = std::stoll(id.substr(colon + 1, slash - colon - 1));
            auto n = std::stoll(id.substr(slash + 1));
            ops.push_back(
                {run_log_prefix(string_member(entry, "task_id"), seq) + pad(n, 5), {}, true});
          } catch (const std::exception&) {
          }
        }
      }
      ++deleted;
    }
    if (!ops.empty())
      if (auto err = store.write(ops)) return err;
    if (rows->size() < page) break;
    from = rows->back().first + '\0';
  }
  return deleted;
}

}  // namespace tessera::task
