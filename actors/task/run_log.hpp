// Where task runs keep their captured output, and the log query of GET/DELETE /api/logs.
//
// Keys (values are the API's log entry JSON: {id, task_id, run_id, level, message, source,
// created_at}):
//   tlog/<task_id>/<seq:012>/<n:05>            a run's lines in order (by task, then run)
//   log/<created_ms:013>/<task_id>/<seq:012>/<n:05>  the same entry, by time
// Both are written in the run's final batch and deleted together.
//
// Contract: the ops builders are pure; the queries read RocksDB (blocking, bounded by their
// limits) and return errc values (invalid_argument for a bad query, storage_failure). Levels
// are debug < info < warning < error < critical; a `level` filter returns that level and up.
#pragma once

#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "actors/task/messages.hpp"
#include "adapters/kv/kv_store.hpp"

namespace tessera::task {

// The ops that store `logs` (the sandbox's [{level, time, message, source}]) of run `seq`.
// Lines without a readable time get `fallback_ms`. Returns the API entries as well.
std::vector<adapters::write_op> log_ops(const std::string& task_id, int64_t seq,
                                        const nlohmann::json& logs, int64_t fallback_ms,
                                        nlohmann::json* entries);

// The API entries of run `seq`, in order.
caf::expected<nlohmann::json> run_logs(const adapters::kv_store& store, const std::string& task_id,
                                       int64_t seq);

// The ops deleting run `seq` of `task_id`: its record and its log lines.
caf::expected<std::vector<adapters::write_op>> erase_run_ops(const adapters::kv_store& store,
                                                             const std::string& task_id,
                                                             int64_t seq);

// The ops deleting every log line of `task_id` (both indexes).
caf::expected<std::vector<adapters::write_op>> erase_task_log_ops(const adapters::kv_store& store,
                                                                  const std::string& task_id);

// A string member of an untrusted JSON object, or `fallback` (never throws).
std::string string_member(const nlohmann::json& object, const char* key,
                          const std::string& fallback = {});

// GET /api/logs's query parameters as given (absent ones empty).
struct log_params {
  std::optional<std::string> task_id, level, since, until, limit;
};

// Checks them: level a level name, since/until ISO-8601, limit 1..1000 (default 100).
caf::expected<log_query> parse_log_query(const log_params& p);

// {"logs":[entries, newest first], "count": n}
caf::expected<std::string> query_logs(const adapters::kv_store& store, const log_query& q);

// Deletes the entries created before `before` (of one task when given); returns how many.
caf::expected<size_t> delete_logs(adapters::kv_store& store, int64_t before,
                                  const std::optional<std::string>& task_id);

}  // namespace tessera::task
