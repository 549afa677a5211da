// The zygote: the warm, single-threaded main loop of build/tessera-sandbox.
//
// It reads request frames from fd 0 and answers each with exactly one response frame on fd 1,
// in order. A call runs in a process forked from the zygote's warm interpreter: a fresh one
// (forked ahead as a spare) for a keyless call or a new key, or the key's warm process
// (sandbox.reuse = "panel"; warm_pool.hpp). A call process (call_process.hpp): stdin/stdout/
// stderr become /dev/null (the protocol pipes are out of reach), rlimits and the seccomp
// filter go on, then runner.run() executes the call and writes its answer on a private pipe
// (the request header: call_header.hpp). The zygote waits at
// most the call's timeout, kills the process on timeout or when its answer exceeds the output
// limit, reaps it, empties the scratch dir, and answers with the runner's JSON or with an
// error it writes itself: timeout, memory_limit, crashed (signal or exit status) or
// output_limit (call_answer.hpp).
//
// A process that stays warm after a call whose header says "lend" is lent to the server: its
// two pipes go out with the answer (fd 1 is then a Unix socket) and the server calls it
// directly until it hands it back with a "release" request, which the zygote answers after
// ending the process (and, when it ended without answering, says how). Other kinds that run
// no user code: "discard" (retire a key's processes). docs/architecture.md, "Sandbox".
//
// The zygote never runs Python between calls (only fork hooks), so the pages it shares with a
// call process stay shared and fork stays cheap.
#pragma once

#include <string>

#include "adapters/sandbox/worker/confinement.hpp"
#include "adapters/sandbox/worker/python_host.hpp"

namespace tessera::sandbox_worker {

struct zygote_options {
  std::string scratch_dir;  // emptied after every call
  size_t max_request_bytes = 64 << 20;
  size_t scratch_bytes = 16 << 20;
};

// Serves until fd 0 closes; returns the process exit code.
int run_zygote(python_host& python, const confinement& rules, const zygote_options& options);

}  // namespace tessera::sandbox_worker
