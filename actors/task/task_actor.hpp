// The actor owning one task: its definition (task_codec.hpp) under task/<id>, its scheduler
// state under taskstate/<id>, its runs under run/<id>/<seq> and their logs (run_log.hpp).
//
// Protocol (spawned and addressed through the task directory; replies are JSON text):
//   (get_atom, id) -> the task object (task_codec.hpp's to_json)
//   (update_atom, id, body, std::vector<std::string> allowed, version_list if_match)
//       -> the task object | invalid_argument | precondition_failed | sandbox_failed (the
//       handler does not compile or defines no on_schedule; the old one keeps serving).
//       A change of schedule, timezone or enabled takes effect at once: times before it are
//       not misfires, next_run is recomputed. Updates run one at a time.
//   (erase_atom, id) -> {"success":true} once the task, its runs and logs are deleted;
//       answers queued work not_found, tells the directory (gone_atom, id), quits. A run in
//       flight still commits what its handler changed; its record is not kept.
//   (run_atom, id) -> the run record once finished (trigger manual) | conflict (a run is in
//       progress and overlap is skip, or one is already queued with queue_one)
//   (runs_atom, id, int64_t before_seq, uint32_t limit) -> {"runs":[newest first],
//       "next_cursor": seq | null}; before_seq 0: from the newest
//   (fire_atom, int64_t at_ms) from the scheduler -> no reply (see below)
//   (placed_atom) -> no reply; the cluster's members changed: the actor asks env.owns_schedule
//       again. Losing the schedule unregisters it (runs in flight and queued ones still run,
//       their claims deciding against the new owner); gaining it reads the task's state
//       from the store (another owner moved it on), then handles what fell due meanwhile by
//       the misfire policy.
//   (storage::refresh_atom, id, record) from the directory -> no reply; another node changed
//       the task: a newer record (or one created again, or the same version with another
//       content: the store's wins) becomes the definition (its state read again), an empty
//       one (deleted elsewhere) ends the actor without writing
// In a cluster only the owner of a task's schedule fires it; manual runs and the API are
// served by any node. Each scheduled time's run (or skipped record) is written with its claim
// (task_codec.hpp, claim_key) on condition that the claim and the run record are absent: a
// second owner during a handover loses that write, runs nothing and reads the state again; a
// run record whose number another node took meanwhile makes the start read the state again
// and retry (three attempts in all).
// Scheduling: while enabled, the actor registers its next fire time with the scheduler. When
// it fires, every scheduled time after the last one handled up to now is due: one that is at
// most `misfire_grace` late runs (trigger schedule); more, or a late one, is a misfire and
// follows the task's policy: run_once (one run for the latest, trigger catch_up), skip (a
// skipped run record), catch_up (the newest env.max_catch_up run in order, trigger catch_up;
// older ones are one skipped record). A due run meets the overlap policy when a run is in
// progress: skip (a skipped record), queue_one (one waits; more are skipped), allow (runs at
// once). The newest scheduled time handled is written with the run's start, before the
// handler runs, so no scheduled time runs twice, across restarts included. At start the same
// rule finds the times missed while the server was down.
// A run: reads the bound storages, runs on_schedule in the sandbox (the task's timeout), and
// commits what it changed atomically (storage/atomic_run.hpp), so bound panels re-render.
// Its record {run_id, trigger, scheduled_for, started_at, finished_at, status (succeeded |
// failed | timed_out | skipped), error, logs, changed_storages} is written once finished;
// only the newest env.keep_runs runs of a task are kept. At a graceful shutdown (env.gate)
// runs in progress finish and are recorded; no new run starts.
#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <chrono>
#include <functional>
#include <memory>

#include "actors/storage/atomic_run.hpp"
#include "actors/task/messages.hpp"
#include "actors/task/run_gate.hpp"
#include "actors/task/task_codec.hpp"
#include "actors/task/task_metrics.hpp"
#include "adapters/kv/kv_store.hpp"
#include "runtime/blocking_pool.hpp"

namespace tessera::task {

struct task_env {
  std::shared_ptr<adapters::kv_store> store;  // reads of run history and logs
  storage::atomic_env atomic;                 // storages, sandbox, committer, timeouts
  scheduler_actor scheduler;
  task_metrics* metrics = nullptr;
  task_limits limits;
  uint32_t keep_runs = 0;
  uint32_t max_catch_up = 0;
  // Runs in progress, for a graceful shutdown (none: no gate). Once it is closed no run
  // starts: a manual run is unavailable, a scheduled one stays due (the next start finds it
  // through the misfire policy), a queued one waits in memory.
  std::shared_ptr<run_gate> gate;
  // Where reads of the history run (runtime/blocking_pool.hpp); none: a one-shot thread.
  std::shared_ptr<runtime::blocking_pool> readers = nullptr;
  // In a cluster: does this node own the task's schedule now (runtime/cluster/placement.hpp)?
  // Unset: always (a single server).
  std::function<bool(const std::string& id)> owns_schedule;
  // In a cluster: told when this node starts firing the task's schedule (its lease is
  // claimed). Unset: nothing.
  std::function<void(const std::string& id)> took_schedule;

  // atomic_env's settings, the call limits, tasks.keep_runs, tasks.max_catch_up; the store,
  // the actors, the metrics and the gate are the caller's to set.
  static task_env from_settings(const config::settings& s) {
    task_env e;
    e.atomic = storage::atomic_env::from_settings(s);
    e.limits = task_limits::from_settings(s);
    e.keep_runs = s.task_keep_runs;
    e.max_catch_up = s.task_max_catch_up;
    return e;
  }
};

// `record` and `state` are the RocksDB values (task_codec.hpp; an empty state is a fresh
// one). The actor decodes them itself; an unreadable record is logged, the directory told
// (gone_atom, id), and the actor quits.
caf::behavior task_actor(caf::event_based_actor* self, task_env env, directory_impl directory,
                         std::string id, std::string record, std::string state);

}  // namespace tessera::task
