// The warm processes a worker's zygote lent one executor (sandbox.reuse = "panel"): their
// pipes, and what the zygote would know of them had it relayed their calls. The executor talks
// to them (executor.cpp); this is only the bookkeeping.
//
// Contract: the pool owns the pipes it holds and closes them when a process leaves it (`drop`,
// `forget_retired`, `take_idle`, `clear`, destruction); leaving the pool does not end the
// process, the caller gives it back to the zygote ("release") when the zygote may not know.
// One owner, one thread. No I/O besides closing.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "actors/sandbox/messages.hpp"
#include "adapters/sandbox/wire.hpp"

namespace tessera::sandbox {

struct lent_process {
  int64_t pid = 0;  // in the sandbox's pid namespace: the zygote's name for it
  int request_fd = -1;
  int result_fd = -1;
  int64_t calls = 0;
  int64_t uss_kib = -1;
  int64_t pss_kib = -1;
  sandbox_wire::clock::time_point last_used;
};

// The key under which the zygote keeps a warm process: the reuse key and the call's limits
// (the other limits are the executor's, the same for every call).
std::string lend_key(const call& c);

// The lent process an answer's "warm" object describes, with the two pipes that came with it;
// nullopt (nothing taken) unless the object says "lent" and there are exactly two.
std::optional<lent_process> lent_from(const nlohmann::json& warm, const std::vector<int>& fds,
                                      sandbox_wire::clock::time_point now);

class lent_pool {
 public:
  lent_pool() = default;
  lent_pool(const lent_pool&) = delete;
  lent_pool& operator=(const lent_pool&) = delete;
  ~lent_pool() { clear(); }

  lent_process* find(const std::string& key);
  // Takes `p` under `key`. Returns the pid of a process the key already had (dropped: the
  // caller gives it back), else nullopt.
  std::optional<int64_t> adopt(std::string key, lent_process p);
  void drop(const std::string& key);
  // Drops the processes a zygote's "retired" list ([[key, reason, pid], ...]) names by pid.
  void forget_retired(const nlohmann::json& retired);
  // Drops the processes unused for at least `idle` at `now`; returns their pids.
  std::vector<int64_t> take_idle(sandbox_wire::clock::time_point now,
                                 std::chrono::milliseconds idle);
  // [[pid, idle_ms, calls], ...]: the executor's use of them, for the zygote's eviction order.
  nlohmann::json use(sandbox_wire::clock::time_point now) const;
  bool empty() const { return by_key_.empty(); }
  void clear();

 private:
  void drop(std::map<std::string, lent_process>::iterator it);

  std::map<std::string, lent_process> by_key_;
};

}  // namespace tessera::sandbox
