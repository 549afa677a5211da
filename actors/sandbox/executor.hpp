// The sandbox executor: a detached (own-thread) actor that owns one tessera-sandbox worker
// process and runs calls on it one at a time. Blocking on the worker's pipe is its job, so it
// never runs on the shared scheduler.
//
// Protocol (spoken by the supervisor only):
//   (run_atom, call) -> call_result, always; never an error. The call's limits are already
//       clamped. Waits for the answer at most timeout + `answer_grace` (the worker enforces the
//       timeout itself; the grace covers a hung worker). A worker that dies, hangs or breaks the
//       protocol is killed, the call gets `crashed` or `timeout`, and a new worker starts.
//   (stop_atom) -> kills the worker and quits.
// Events it sends to `supervisor` (no reply expected), in order:
//   (worker_atom, slot, state, pid, reason): state is starting | idle | backoff | crash_loop;
//       pid the host pid of the worker's outermost process (0 when none); reason why it is not
//       serving (empty when idle).
//   (warm_atom, slot, retired): retired is a JSON array [[reuse_key, reason, pid], ...] of warm
//       processes retired outside any call's answer (a lent process idle for
//       sandbox.reuse_idle_ms).
// Lent warm processes: under sandbox.reuse = "panel", the worker's zygote lends a warm process
// that stays (its answer carries the process's two pipes over the worker's socket); the key's
// next calls go to that process directly, skipping the zygote's relay. The executor checks each
// answer as the zygote does (call_answer.hpp) and hands the process back ("release") once it
// may not serve again (it failed, changed interpreter-wide state, timed out, served
// reuse_max_calls, or sat idle for reuse_idle_ms); the zygote kills and reaps it and, for a
// process that ended without answering, says why. Results look the same either way, with
// "lent": true in their "warm" object.
// Restarts: the first restart after a worker served calls is immediate; consecutive failures
// (start failures, or deaths before a call succeeds) back off 100 ms, 200 ms, ... up to 10 s,
// and from the fifth in a row the slot reports crash_loop and logs it once. While not serving,
// calls get `unavailable` at once.
#pragma once

#include <caf/fwd.hpp>
#include <chrono>

#include "actors/sandbox/messages.hpp"
#include "actors/sandbox/sandbox_metrics.hpp"
#include "adapters/sandbox/worker_process.hpp"

namespace tessera::sandbox {

using worker_atom = caf::atom_constant<caf::atom("worker")>;
using warm_atom = caf::atom_constant<caf::atom("warm")>;

// Built by supervisor_config::from_settings (the sandbox.* settings).
struct executor_config {
  adapters::worker_spawn_options spawn;
  std::chrono::milliseconds answer_grace{1000};
  uint64_t max_output_bytes = 0;
  uint64_t max_log_bytes = 0;
  uint32_t max_json_depth = 0;  // changed storages nest no deeper than REST bodies may
  bool reuse = false;           // sandbox.reuse = "panel": pass calls' reuse keys on
  uint32_t reuse_max_calls = 0;
  uint32_t reuse_idle_ms = 0;
  uint32_t warm_processes = 0;         // per worker (the supervisor divides sandbox.warm_processes)
  sandbox_metrics* metrics = nullptr;  // outlives the actor system
};

void executor(caf::blocking_actor* self, executor_config cfg, size_t slot, caf::actor supervisor);

// The request frame payload for `c`: header line, newline, body.
std::string frame_payload(const call& c, const executor_config& cfg);

// The result for a worker's answer; nullopt if the answer is not a valid response object.
std::optional<call_result> read_answer(std::string answer);

}  // namespace tessera::sandbox
