// One run of a task as values, for the task actor (task_actor.hpp): the record a run starts
// with, the sandbox call it makes on the storages it reads, and how its outcome settles the
// record. Pure: no actor, no I/O.
#pragma once

#include <caf/expected.hpp>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "actors/sandbox/messages.hpp"
#include "actors/storage/atomic_run.hpp"
#include "actors/task/task_codec.hpp"
#include "actors/task/task_policy.hpp"

namespace tessera::task {

// The record of run `seq` of task `task_id` for `run`, started at `now_ms` with `status`
// ("running", or "skipped" for a time that does not run, which is finished at once).
run_record begin_run(const std::string& task_id, int64_t seq, const planned_run& run,
                     int64_t now_ms, std::string status);

// The on_schedule call of run `r` of `t` on a snapshot of its storages: the handler, the task
// ({id, name, schedule, timezone, trigger, scheduled_for: ISO-8601 or null}) and the storage
// data spliced in as it is; `t`'s timeout, and `warm_key` for a warm process.
std::function<sandbox::call(const storage::snapshot&)> schedule_call(const task_record& t,
                                                                     const run_record& r,
                                                                     std::string warm_key);

// Settles `r` at `now_ms` from its outcome: succeeded (with the storages it changed), timed_out
// (the handler's time ran out) or failed (the sandbox's error, or the error kind and message of
// anything else). Returns the handler's log lines (an array, maybe empty).
nlohmann::json settle_run(run_record& r, const caf::expected<storage::atomic_outcome>& out,
                          int64_t now_ms);

}  // namespace tessera::task
