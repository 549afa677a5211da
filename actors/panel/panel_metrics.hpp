// Prometheus metrics of panels (prefix tessera_panel_): actions by result and their latency,
// renders by result and their latency, renders skipped by coalescing, commit conflicts,
// retries and locked runs, the sizes of action batches (one sandbox call each), and the calls
// made ahead while the run before commits (made, and used: the rest were dropped). Thread-safe
// (prometheus-cpp); owned by main, outliving every panel actor.
#pragma once

#include <chrono>
#include <string>

#include "adapters/metrics/registry.hpp"

namespace tessera::panel {

class panel_metrics {
 public:
  explicit panel_metrics(prometheus::Registry& registry);

  void count_action(const std::string& result, std::chrono::steady_clock::duration took);
  void count_render(const std::string& result, std::chrono::steady_clock::duration took);
  void count_coalesced() { coalesced_.Increment(); }
  void count_conflict() { conflicts_.Increment(); }
  void count_retry() { retries_.Increment(); }
  void count_locked_run() { locked_runs_.Increment(); }
  void count_batch(size_t actions) { batch_sizes_.Observe(static_cast<double>(actions)); }
  void count_call_ahead(bool used) { (used ? ahead_used_ : ahead_made_).Increment(); }

 private:
  prometheus::Family<prometheus::Counter>& actions_;
  prometheus::Histogram& action_latency_;
  prometheus::Family<prometheus::Counter>& renders_;
  prometheus::Histogram& render_latency_;
  prometheus::Counter& coalesced_;
  prometheus::Family<prometheus::Counter>& ahead_;
  prometheus::Counter& ahead_made_;
  prometheus::Counter& ahead_used_;
  prometheus::Counter& conflicts_;
  prometheus::Counter& retries_;
  prometheus::Counter& locked_runs_;
  prometheus::Histogram& batch_sizes_;
};

}  // namespace tessera::panel
