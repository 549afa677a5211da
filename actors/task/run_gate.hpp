// Counts task runs in progress so that a graceful shutdown can let them finish.
//
// Contract: thread-safe. A task actor calls `enter` before it starts a run (false once the
// gate is closed: the run is not started) and `leave` once the run's record is durable.
// `close_and_wait` (the main thread, at shutdown) closes the gate and blocks until no run is
// in progress or `deadline`; it returns how many are still running.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace tessera::task {

class run_gate {
 public:
  bool enter() {
    std::lock_guard lock{mutex_};
    if (closed_) return false;
    ++running_;
    return true;
  }

  void leave() {
    std::lock_guard lock{mutex_};
    if (--running_ == 0) idle_.notify_all();
  }

  int close_and_wait(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock{mutex_};
    closed_ = true;
    idle_.wait_until(lock, deadline, [this] { return running_ == 0; });
    return running_;
  }

  bool closed() {
    std::lock_guard lock{mutex_};
    return closed_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable idle_;
  int running_ = 0;
  bool closed_ = false;
};

}  // namespace tessera::task
