// The request header as the sandbox worker reads it: one JSON line before the call's body
// (docs/architecture.md, "Protocol"). Read by the zygote for every request and by a call
// process for every call it runs.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/sandbox/worker/python_host.hpp"

namespace tessera::sandbox_worker {

struct call_header {
  std::string kind;
  int timeout_ms = 2000;
  call_limits limits;
  // Warm reuse: empty means a fresh process for this call. Otherwise the server's key (panel or
  // task id and code hashes); the zygote adds the limits, so one process serves one key only.
  std::string reuse_key;
  int reuse_max_calls = 10000;
  int reuse_idle_ms = 60000;
  int warm_processes = 64;
  // Lend a process that stays warm to the server (its pipes go out with the answer; fd 1 is a
  // Unix socket then), so the key's next calls skip the zygote.
  bool lend = false;
  // The server's use of its lent processes since it last said: [pid, idle_ms, calls] each.
  std::vector<std::array<int64_t, 3>> lent_use;
  // kind "release": the lent process `release_pid` is done, and how it ended for the server.
  int64_t release_pid = -1;
  std::string release_reason;
  int release_wait_ms = 1000;  // how long a process that ends by itself may take

  std::string warm_key() const {
    return reuse_key + '|' + std::to_string(timeout_ms) + '|' + std::to_string(limits.memory_mb) +
           '|' + std::to_string(limits.max_output_bytes) + '|' +
           std::to_string(limits.max_log_bytes) + '|' + std::to_string(limits.max_log_lines) + '|' +
           std::to_string(limits.max_json_depth);
  }
};

// Fills `out` from the header line; false with `problem` when it is not a JSON object with a
// string "kind", or its timeout or memory limit is not positive. Absent fields keep defaults.
bool parse_header(std::string_view text, call_header& out, std::string& problem);

}  // namespace tessera::sandbox_worker
