// A task's run history in RocksDB: the page of runs the API lists, the ops that keep only the
// newest runs, and the ops that delete everything a task left behind.
//
// Keys (task_codec.hpp, run_log.hpp): run/<id>/<seq:012> run records, running/<id>/<seq>
// markers of runs in flight, tlog/ and log/ lines, task/<id> and taskstate/<id>, and
// taskclaim/<id>/<ms:013> claims of scheduled times.
//
// Contract: blocking reads of RocksDB; nothing here writes (the caller commits the ops through
// the committer). runs_page and trim_ops read a bounded page and may run on a task actor;
// erase_task_ops scans every key of the task, so it runs off the scheduler
// (runtime/off_scheduler.hpp). Errors are errc::storage_failure.
#pragma once

#include <caf/expected.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "adapters/kv/kv_store.hpp"

namespace tessera::task {

// {"runs":[newest first, each with its logs], "next_cursor": seq | null}: the runs of `task_id`
// before `before_seq` (0: from the newest), at most `limit`. Unreadable records are left out.
caf::expected<std::string> runs_page(const adapters::kv_store& store, const std::string& task_id,
                                     int64_t before_seq, uint32_t limit);

// The sequence number of the task's newest run record (0: none).
caf::expected<int64_t> newest_run_seq(const adapters::kv_store& store, const std::string& task_id);

// The newest claims of scheduled times kept per task (task_codec.hpp, claim_key).
inline constexpr size_t kept_claims = 64;

// The ops deleting the finished runs (with their logs) that fall out of the newest `keep_runs`
// once run `newest_seq` is written; runs still running or `held` are kept. At most 64 runs
// are trimmed per call, so a lowered keep_runs catches up over several runs. Claims beyond
// the newest kept_claims go too.
std::vector<adapters::write_op> trim_ops(const adapters::kv_store& store,
                                         const std::string& task_id, int64_t newest_seq,
                                         uint32_t keep_runs,
                                         const std::function<bool(int64_t seq)>& held);

// The ops deleting the task entirely: its definition, its scheduler state, every run record,
// running marker, claim and log line (both indexes).
caf::expected<std::vector<adapters::write_op>> erase_task_ops(const adapters::kv_store& store,
                                                              const std::string& task_id);

}  // namespace tessera::task
