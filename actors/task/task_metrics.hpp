// Prometheus metrics of tasks (prefix tessera_task_): runs by status, run duration, schedule
// lag (start minus scheduled time), enabled tasks, the size of the next-fire queue, misfires by
// policy and skipped runs by reason. Thread-safe (prometheus-cpp); owned by main, outliving
// every task actor.
#pragma once

#include <chrono>
#include <string>

#include "adapters/metrics/registry.hpp"

namespace tessera::task {

class task_metrics {
 public:
  explicit task_metrics(prometheus::Registry& registry);

  void count_run(const std::string& status, std::chrono::milliseconds took);
  void observe_lag(std::chrono::milliseconds lag);
  void count_misfire(const std::string& policy) { misfires_.Add({{"policy", policy}}).Increment(); }
  void count_skip(const std::string& reason) { skips_.Add({{"reason", reason}}).Increment(); }
  void add_enabled(double delta) { enabled_.Increment(delta); }
  void set_queue_size(double n) { queue_.Set(n); }

 private:
  prometheus::Family<prometheus::Counter>& runs_;
  prometheus::Histogram& duration_;
  prometheus::Histogram& lag_;
  prometheus::Family<prometheus::Counter>& misfires_;
  prometheus::Family<prometheus::Counter>& skips_;
  prometheus::Gauge& enabled_;
  prometheus::Gauge& queue_;
};

}  // namespace tessera::task
