// The warm call processes of one zygote (sandbox.reuse = "panel"), most recently used first.
// Each serves one key only (the server's reuse key plus the call's limits).
//
// Contract:
// - `take` hands out the process of a key (it leaves the pool while it runs a call); `put`
//   brings it back, evicting the least recently used beyond `capacity`.
// - Retiring a process closes its pipes and kills and reaps it. Every retirement is recorded
//   with its reason (`idle`, `evicted`, `max_calls`, `discarded`, `stopped`, `replaced`) until
//   `drain_retired` hands the records to the next answer, so the server can tell why each
//   process went.
// - A lent process (see warm_process::lent) is never retired for idleness here: the server,
//   which sees its calls, retires it (`release`). `take` does not hand it out: a call that
//   reaches the zygote for a lent key means the server let go of it, so it is retired
//   (`replaced`) and the call gets a fresh process. Records are [key, reason, pid].
// - `list` describes the pool for GET /api/sandbox: key, pid (in the sandbox's namespace),
//   calls served, idle time, and private memory (USS) and PSS in KiB as the process last
//   measured itself (its own /proc/self/smaps_rollup, opened before confinement: the zygote
//   may not read a non-dumpable child's; ~80 us, so at most once a second).
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "adapters/sandbox/wire.hpp"

namespace tessera::sandbox_worker {

namespace wire = tessera::sandbox_wire;

// A spare call process: forked ahead of its call, it waits for the request frame, confines
// itself with that call's limits, runs it and exits (or, warm, waits for its key's next call).
struct spare {
  pid_t pid = -1;
  int request_fd = -1;  // write end: the zygote forwards the request here
  int result_fd = -1;   // read end: the answer
  int64_t fork_us = 0;
};

struct warm_process {
  std::string key;
  spare process;
  int calls = 0;
  wire::clock::time_point last_used;
  int64_t uss_kib = -1;  // -1: not measured yet
  int64_t pss_kib = -1;
  // Lent to the server: the server holds its pipes (the zygote closed its own) and calls it
  // directly; the zygote still owns its life (kill, reap) and its place in the pool, and
  // learns its use from the server (`touch`).
  bool lent = false;
};

// USS (Private_Clean + Private_Dirty) and PSS from the text of /proc/<pid>/smaps_rollup.
bool parse_smaps_rollup(std::string_view text, int64_t& uss_kib, int64_t& pss_kib);

void kill_and_reap(pid_t pid);

class warm_pool {
 public:
  std::optional<warm_process> take(const std::string& key);
  void put(warm_process w, size_t capacity);
  // Retires a process that may serve no more calls (it was taken out of the pool).
  void retire(warm_process& w, const char* reason);
  // Retires the processes idle for longer than `idle`; returns how long until the next is due.
  std::optional<std::chrono::milliseconds> retire_idle(std::chrono::milliseconds idle);
  // Retires every process whose key starts with `reuse_key` (any limits); returns how many.
  int discard(const std::string& reuse_key);
  // Takes the lent process `pid` out of the pool (not killed, no record): the server is done
  // with it.
  std::optional<warm_process> release(pid_t pid);
  // The server's use of its lent processes, [pid, idle_ms, calls] each: keeps the pool's use
  // order (and so its evictions) true to the server's use.
  void touch(const std::vector<std::array<int64_t, 3>>& use);
  // Records a retirement the caller carried out itself.
  void record(const warm_process& w, const char* reason);
  void clear();

  nlohmann::json list() const;
  // [[key, reason, pid], ...] of the processes retired since the last call.
  nlohmann::json drain_retired();

 private:
  void retire_at(size_t i, const char* reason);

  std::vector<warm_process> pool_;
  nlohmann::json retired_ = nlohmann::json::array();
};

}  // namespace tessera::sandbox_worker
