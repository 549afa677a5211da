#include "actors/sandbox/sandbox_metrics.hpp"

#include "adapters/metrics/registry.hpp"

namespace tessera::sandbox {

sandbox_metrics::sandbox_metrics(prometheus::Registry& registry)
    : workers_(prometheus::BuildGauge()
                   .Name("tessera_sandbox_workers")
                   .Help("Sandbox worker processes by state")
                   .Register(registry)),
      calls_(prometheus::BuildCounter()
                 .Name("tessera_sandbox_calls_total")
                 .Help("Sandbox calls by kind and result (ok or the error kind)")
                 .Register(registry)),
      durations_(prometheus::BuildHistogram()
                     .Name("tessera_sandbox_call_duration_seconds")
                     .Help("Time a call spent in its worker, by kind")
                     .Register(registry)),
      queue_wait_(prometheus::BuildHistogram()
                      .Name("tessera_sandbox_queue_wait_seconds")
                      .Help("Time a call waited for a free worker")
                      .Register(registry)
                      .Add({}, adapters::latency_buckets())),
      queue_depth_(prometheus::BuildGauge()
                       .Name("tessera_sandbox_queue_depth")
                       .Help("Calls waiting for a free worker")
                       .Register(registry)
                       .Add({})),
      restarts_(prometheus::BuildCounter()
                    .Name("tessera_sandbox_worker_restarts_total")
                    .Help("Worker processes replaced, by reason")
                    .Register(registry)),
      warm_processes_(prometheus::BuildGauge()
                          .Name("tessera_sandbox_warm_processes")
                          .Help("Warm call processes kept for their panel or task")
                          .Register(registry)
                          .Add({})),
      warm_private_(prometheus::BuildGauge()
                        .Name("tessera_sandbox_warm_private_bytes")
                        .Help("Private memory (USS) of the warm call processes, as last measured")
                        .Register(registry)
                        .Add({})),
      warm_discarded_(prometheus::BuildCounter()
                          .Name("tessera_sandbox_warm_discarded_total")
                          .Help("Warm call processes retired, by reason")
                          .Register(registry)) {
  for (auto* reason : {"failed", "state_changed", "cpu_budget", "max_calls", "idle", "evicted",
                       "discarded", "stopped"})
    warm_discarded_.Add({{"reason", reason}});
  for (auto* state : worker_states) workers_.Add({{"state", state}});
  for (auto* reason : {"crashed", "hung", "protocol", "start_failed"})
    restarts_.Add({{"reason", reason}});
}

void sandbox_metrics::count_call(call_kind kind, const call_result& result) {
  std::string k{to_string(kind)};
  calls_.Add({{"kind", k}, {"result", result.outcome}}).Increment();
  if (result.run_us > 0)
    durations_.Add({{"kind", k}}, adapters::latency_buckets()).Observe(result.run_us / 1e6);
  queue_wait_.Observe(result.queue_wait_us / 1e6);
}

void sandbox_metrics::count_restart(const std::string& reason) {
  restarts_.Add({{"reason", reason}}).Increment();
}

void sandbox_metrics::set_workers(const std::map<std::string, int>& by_state) {
  for (auto* state : worker_states) {
    auto it = by_state.find(state);
    workers_.Add({{"state", state}}).Set(it == by_state.end() ? 0 : it->second);
  }
}

void sandbox_metrics::set_queue_depth(size_t n) { queue_depth_.Set(static_cast<double>(n)); }

void sandbox_metrics::set_warm(size_t processes, int64_t private_kib) {
  warm_processes_.Set(static_cast<double>(processes));
  warm_private_.Set(static_cast<double>(private_kib) * 1024);
}

void sandbox_metrics::count_warm_discarded(const std::string& reason) {
  warm_discarded_.Add({{"reason", reason}}).Increment();
}

}  // namespace tessera::sandbox
