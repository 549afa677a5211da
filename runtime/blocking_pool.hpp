// A fixed set of threads for the short blocking calls actors make: the point reads and bounded
// pages of a store that may be across a network (a storage's load, a page of a task's runs,
// the readiness probe, a page of the change feed), so that they never hold one of CAF's
// scheduler workers and do not start a thread each as off_scheduler's one-shot actors do.
//
// Contract:
// - `start(sys, threads)` spawns `threads` detached actors; `stop()` (or the actor system's
//   end) lets them finish the job in hand and quit.
// - off_scheduler(self, pool, timeout, fn) (runtime/off_scheduler.hpp) hands `fn` to the
//   worker with the fewest jobs in flight; it runs there and its value or error comes back to
//   `self` as the answer to a request, so the caller continues with `.then`.
// - A job must be short (a round trip or a bounded page); a scan of a whole prefix takes a
//   one-shot thread (off_scheduler without a pool) so it cannot hold up the reads behind it.
#pragma once

#include <atomic>
#include <caf/all.hpp>
#include <functional>
#include <memory>
#include <vector>

namespace tessera::runtime {

// One job: the blocking call, its value already in a message.
struct blocking_job {
  std::function<caf::expected<caf::message>()> run;
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
};

}  // namespace tessera::runtime
