// A task definition and its run records: validation of what clients send, the RocksDB records,
// the API views.
//
// Contract: the functions here are pure (no actors, no I/O). Validation errors are
// errc::invalid_argument with a message naming the field (for a schedule, the cron field too);
// nothing is changed on error. Times are ms since the epoch inside, ISO-8601 UTC in the API.
#pragma once

#include <caf/expected.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/sandbox/code_check.hpp"
#include "actors/storage/fields.hpp"
#include "runtime/cron.hpp"

namespace tessera::task {

inline constexpr std::string_view key_prefix = "task/";

enum class overlap_policy { skip, queue_one, allow };
enum class misfire_policy { run_once, skip, catch_up };

std::string_view to_string(overlap_policy p);
std::string_view to_string(misfire_policy p);

// What the validation needs from the configuration.
using task_limits = storage::call_limits;

struct task_record {
  std::string id;
  std::string name;
  std::string schedule;  // cron expression (runtime/cron.hpp)
  std::string timezone = "UTC";
  std::vector<std::string> storage_ids;
  std::string handler;  // Python defining on_schedule(storage)
  bool enabled = true;
  overlap_policy overlap = overlap_policy::skip;
  misfire_policy misfire = misfire_policy::run_once;
  int64_t timeout_ms = 0;      // one run's limit
  bool fresh_process = false;  // every run in a fresh process, even under sandbox.reuse=panel
  int64_t version = 0;
  int64_t created_at = 0;
  int64_t updated_at = 0;
};

// What the scheduler keeps per task beside the definition (key taskstate/<id>), written ahead
// of each run so that no scheduled time runs twice, across restarts included.
struct task_state {
  int64_t last_scheduled = 0;  // the newest scheduled time handled (run, queued or skipped)
  int64_t run_seq = 0;         // runs recorded so far (the newest run's sequence number)
  int64_t last_run = 0;        // started_at of the newest run, 0: never
  std::string last_status;     // its status once finished ("" while none finished)
};

std::string task_key(std::string_view id);
std::string state_key(std::string_view id);

// A new task from a POST body (`id`, `schedule` and `handler` required). Checks the schedule
// and zone, not the handler's code.
caf::expected<task_record> parse_new_task(const nlohmann::json& body, const task_limits& limits);

// Applies an update body to a copy of `current`. `allowed` lists the fields the route may set.
caf::expected<task_record> apply_update(const task_record& current, const nlohmann::json& body,
                                        const std::vector<std::string>& allowed,
                                        const task_limits& limits);

// The code a create or update checks: the handler, which must define on_schedule.
inline sandbox::code code_to_check(const task_record& r) { return {{}, r.handler, "on_schedule"}; }

// The parsed schedule of a record that passed validation.
cron::schedule schedule_of(const task_record& r);

std::string encode(const task_record& r);
// A stored record; nullopt when damaged (its schedule included). With `parsed`, the schedule
// parsed on the way is handed over, so callers need not parse it again.
std::optional<task_record> decode(std::string_view value, cron::schedule* parsed = nullptr);
std::string encode(const task_state& s);
std::optional<task_state> decode_state(std::string_view value);

// The API object: the definition plus status ("running" | "scheduled" | "disabled"),
// last_run, last_status and next_run (null when none).
nlohmann::json to_json(const task_record& r, const task_state& s, int64_t next_run, bool running);

// --- runs -------------------------------------------------------------------------------------

struct run_record {
  std::string task_id;
  int64_t seq = 0;
  std::string trigger;        // schedule | manual | catch_up
  int64_t scheduled_for = 0;  // 0: none (manual)
  int64_t started_at = 0;
  int64_t finished_at = 0;  // 0: still running
  std::string status;       // running | succeeded | failed | timed_out | skipped
  nlohmann::json error;     // null, or {kind, type, message[, line]}
  std::vector<std::string> changed_storages;
};

std::string run_id(std::string_view task_id, int64_t seq);  // "<task>:<seq>"
std::string run_key(std::string_view task_id, int64_t seq);
std::string run_prefix(std::string_view task_id);
std::string running_key(std::string_view task_id, int64_t seq);
inline constexpr std::string_view running_prefix = "running/";
// A scheduled time's claim (empty value): written, on condition that it is absent, with the
// start of its run (or its skipped record), so that each (task, time) runs once across a
// cluster even while two nodes both act as its owner.
std::string claim_key(std::string_view task_id, int64_t scheduled_for);
std::string claim_prefix(std::string_view task_id);

std::string encode(const run_record& r);
std::optional<run_record> decode_run(std::string_view value);
nlohmann::json to_json(const run_record& r, nlohmann::json logs);

}  // namespace tessera::task
