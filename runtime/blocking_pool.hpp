// A fixed set of threads for the short blocking calls actors make: the point reads and bounded
// pages of a store that may be across a network (a storage's load, a page of a task's runs,
// the readiness probe, a page of the change feed), so that they never hold one of CAF's
// scheduler workers and do not start a thread each as off_scheduler's one-shot actors do.
//
// Contract:
// - `start(sys, threads)` spawns `threads` (at least one) detached actors; `stop()` lets them
//   finish the job in hand, answers the jobs still queued `unavailable` without running them,
//   and makes them quit.
// - A job whose caller has stopped waiting (past its timeout) is answered without running, so
//   a slow backend cannot pile up work nobody waits for. A job that throws is answered
//   errc::internal; its worker goes on.
// - off_scheduler(self, pool, timeout, fn) (runtime/off_scheduler.hpp) hands `fn` to the
//   worker with the fewest jobs in flight; it runs there and its value or error comes back to
//   `self` as the answer to a request, so the caller continues with `.then`.
// - A job must be short (a round trip or a bounded page); a scan of a whole prefix takes a
//   one-shot thread (off_scheduler without a pool) so it cannot hold up the reads behind it.
#pragma once

#include <atomic>
#include <caf/all.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

namespace tessera::runtime {

// One job: the blocking call, its value already in a message, and the time after which its
// caller no longer waits (a worker answers such a job `timeout` without running it).
struct blocking_job {
  std::function<caf::expected<caf::message>()> run;
  std::chrono::steady_clock::time_point due = std::chrono::steady_clock::time_point::max();
};

}  // namespace tessera::runtime

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tessera::runtime::blocking_job)

namespace tessera::runtime {

using blocking_job_atom = caf::atom_constant<caf::atom("bjob")>;

class blocking_pool {
 public:
  static std::shared_ptr<blocking_pool> start(caf::actor_system& sys, size_t threads);
  ~blocking_pool();

  // The worker with the fewest jobs in flight (counted as given one until it finishes it).
  caf::actor pick();
  size_t size() const { return workers_.size(); }
  void stop();

 private:
  struct worker {
    caf::actor handle;
    std::shared_ptr<std::atomic<size_t>> in_flight;
  };
  std::vector<worker> workers_;
  std::shared_ptr<std::atomic<bool>> stopping_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace tessera::runtime
