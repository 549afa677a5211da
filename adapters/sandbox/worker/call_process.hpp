// A call process: forked from the zygote's warm interpreter ahead of its call (a spare), it
// confines itself with its first call's limits (rlimits, seccomp) and runs calls read from its
// request pipe, answering each on its result pipe with the runner's JSON, a NUL and a trailer
// (call_answer.hpp). It serves one call, or under a reuse key the key's later calls too, until
// one may not be followed by another: a failed call, a call that changed interpreter-wide
// state (python_host's watch), or a CPU budget too small for one more call.
//
// Contract: `fork_spare` returns the spare's pid and the zygote's ends of its pipes (the
// result end non-blocking), or pid -1 when it could not fork. The child never returns.
#pragma once

#include <string>

#include "adapters/sandbox/worker/confinement.hpp"
#include "adapters/sandbox/worker/python_host.hpp"
#include "adapters/sandbox/worker/warm_pool.hpp"

namespace tessera::sandbox_worker {

// Exit statuses the zygote tells apart (classify_exit).
constexpr int exit_out_of_memory = 3;
constexpr int exit_confinement_failed = 4;

spare fork_spare(python_host& python, const confinement& rules, size_t scratch_bytes,
                 const std::string& scratch_dir);

// Removes everything inside `dir`, not `dir` itself.
void empty_dir(const std::string& dir);

}  // namespace tessera::sandbox_worker
