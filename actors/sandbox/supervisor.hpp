// The sandbox supervisor: keeps `workers` executor actors (one worker process each), queues
// calls with deadlines, and answers every call exactly once.
//
// Protocol (typed: clients hold a sandbox_actor, messages.hpp; supervisor_actor adds the
// executors' reports and the timer):
//   (run_atom, call) -> call_result, always (never an error). Limits are clamped: timeout_ms
//       and memory_mb 0 mean the defaults, larger than the maxima become the maxima. A call
//       waits in a FIFO queue until an idle worker takes it; one that waits longer than
//       `queue_timeout` gets `timeout`; one that arrives when `queue_limit` calls wait gets
//       `overloaded`; when every worker is crash-looping, calls get `unavailable` at once.
//       Requesters should allow the call's timeout + queue_timeout + a few seconds.
//       A call with a reuse key waits for its home slot (a hash of the key), whose worker keeps
//       that key's warm process, unless that slot is starting or crash-looping; calls without
//       a key go to any idle slot. Calls of one key are therefore served one at a time, in order.
//   (status_atom) -> std::string, a JSON object:
//       {"workers":[{"slot","state","pid","calls","restarts","last_error"}],"queued":n,
//        "warm":[{"slot","key","pid","calls","idle_ms","uss_kib","pss_kib"}]};
//       restarts counts every start of the slot's worker after its first, last_error is the
//       most recent reason the slot's worker failed (kept after it is replaced). `warm` lists
//       the warm call processes as their last answers told (pid in the sandbox's own PID
//       namespace; memory as last measured, null before), tracked from each answer's "warm"
//       object, which also names the processes the worker retired and why (counted in
//       tessera_sandbox_warm_discarded_total{reason}).
//   exit (user_shutdown): stops every executor (killing its worker), answers queued calls and
//       calls in flight with `unavailable` (a call in flight may still have run), quits.
// Executors report (worker_atom, slot, state, pid, reason) events (executor.hpp); the
// supervisor keeps tessera_sandbox_workers{state} from them. An executor actor that dies is
// respawned.
#pragma once

#include <caf/fwd.hpp>
#include <chrono>

#include "actors/sandbox/executor.hpp"
#include "config/settings.hpp"

namespace tessera::sandbox {

struct supervisor_config {
  size_t workers = 0;
  executor_config executor;
  std::chrono::milliseconds default_timeout{0};
  std::chrono::milliseconds max_timeout{0};
  uint32_t default_memory_mb = 0;
  uint32_t max_memory_mb = 0;
  size_t queue_limit = 0;
  std::chrono::milliseconds queue_timeout{0};

  // The sandbox.* settings (and server.max_json_depth). Workers: sandbox.workers, or two per
  // core; the worker executable: sandbox.executable, or tessera-sandbox beside this program.
  // The executor's metrics are the caller's to set.
  static supervisor_config from_settings(const config::settings& s);
};

using tick_atom = caf::atom_constant<caf::atom("tick")>;

// The supervisor's own interface: a client's (sandbox_actor), the executors' reports and its
// timer. Spawned as this, held by clients as a sandbox_actor.
using supervisor_actor =
    sandbox_actor::extend<caf::reacts_to<worker_atom, size_t, std::string, int64_t, std::string>,
                          caf::reacts_to<warm_atom, size_t, std::string>,
                          caf::reacts_to<tick_atom>>;

supervisor_actor::behavior_type sandbox_supervisor(supervisor_actor::pointer self,
                                                   supervisor_config cfg);

}  // namespace tessera::sandbox
