// One build/tessera-sandbox process, seen from the server: start it confined, exchange frames
// with it, kill it.
//
// Isolation levels (config sandbox.isolation):
//   bwrap    (default) the worker runs under bubblewrap in new user, pid, network, mount, IPC,
//            UTS and cgroup namespaces, as an unprivileged uid (when the server runs as root,
//            setpriv drops to nobody first, so root in the sandbox is nobody on the host), with
//            all capabilities dropped, a read-only /usr, a private /proc and /dev, a size-capped
//            tmpfs at /scratch as its only writable place, and a cleared environment. The
//            server's data dir, config and secrets are not mounted.
//   gvisor   the worker runs in a gVisor (runsc) sandbox built from an OCI bundle in a temp dir:
//            the same read-only view, scratch tmpfs, uid 65534, no capabilities and no network,
//            with gVisor's user-space kernel between the handler and the host kernel. Much
//            slower (a fork costs ~15 ms there); for deployments that want a second kernel.
//   process  no namespaces: only the per-call rlimits and seccomp filter of the worker itself.
//            For machines without user namespaces; the server warns at start-up.
// Either way the worker gets a minimal environment, no inherited descriptors beyond its pipes
// (requests on a pipe; answers on a Unix socket, which can carry a lent process's pipes, or
// under gvisor on a pipe),
// its own process group, and dies with the server.
//
// Contract: `start` returns a worker that has sent its ready frame, or an error (unavailable)
// whose detail says why (missing bwrap, executable, Python failure...). `exchange` sends one
// frame and reads one answer before `deadline`; any status but ok leaves the worker unusable
// (kill it). The destructor kills and reaps. Blocking: call from a detached actor or thread.
// Not thread-safe; one owner. The first `start` sets SIGPIPE to be ignored process-wide (a dead
// worker's pipe then fails writes with EPIPE instead of killing the server).
#pragma once

#include <sys/types.h>

#include <caf/expected.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "adapters/sandbox/wire.hpp"

namespace tessera::adapters {

enum class isolation { bwrap, gvisor, process };

struct worker_spawn_options {
  std::string executable;  // absolute path of tessera-sandbox
  isolation level = isolation::bwrap;
  bool network = false;
  size_t scratch_bytes = 16 << 20;
  std::chrono::milliseconds start_timeout{10000};
  size_t max_answer_bytes = 64 << 20;
};

class worker_process {
 public:
  static caf::expected<std::unique_ptr<worker_process>> start(const worker_spawn_options& opts);

  ~worker_process();
  worker_process(const worker_process&) = delete;
  worker_process& operator=(const worker_process&) = delete;

  sandbox_wire::status exchange(std::string_view payload, std::string& answer,
                                sandbox_wire::clock::time_point deadline);

  // The two halves of `exchange`: a failed send means the worker never saw the request.
  sandbox_wire::status send(std::string_view payload);
  sandbox_wire::status receive(std::string& answer, sandbox_wire::clock::time_point deadline);

  // Whether the worker can lend warm processes (hand their pipes over with an answer): its
  // answers come over a Unix socket. Not under gvisor, whose descriptors are not the host's.
  bool can_lend() const { return can_lend_; }
  // The descriptors that came with the answers received since the last call (close-on-exec);
  // the caller owns them.
  std::vector<int> take_fds() { return std::exchange(fds_, {}); }

  // Host pid of the process the server started (bwrap, or the worker itself).
  pid_t pid() const { return pid_; }

  // Kills the whole process group and reaps; idempotent.
  void kill();

  // True while the process has not exited (reaps it if it has).
  bool alive();

  // How the process ended ("exit status 1", "killed by SIGKILL"), once it has.
  std::string exit_description() const { return exit_description_; }

 private:
  worker_process() = default;
  void reap(bool block);

  pid_t pid_ = -1;
  int to_worker_ = -1;
  int from_worker_ = -1;
  size_t max_answer_bytes_ = 0;
  std::string scratch_dir_;   // process isolation only
  std::string bundle_dir_;    // gvisor only: the OCI bundle and runsc's state
  std::string container_id_;  // gvisor only
  std::string exit_description_;
  bool can_lend_ = false;
  std::vector<int> fds_;
};

}  // namespace tessera::adapters
