// The sandbox's Prometheus series. Thread-safe (prometheus-cpp families lock internally): the
// supervisor counts calls, executors count restarts from their own threads.
//
//   tessera_sandbox_workers{state}                 starting | idle | busy | backoff | crash_loop
//   tessera_sandbox_calls_total{kind,result}       result = ok or the error kind
//   tessera_sandbox_call_duration_seconds{kind}    time in the worker, framing included
//   tessera_sandbox_queue_wait_seconds             time from arrival to a worker taking it
//   tessera_sandbox_queue_depth                    calls waiting now
//   tessera_sandbox_worker_restarts_total{reason}  crashed | hung | protocol | start_failed
//   tessera_sandbox_warm_processes                 warm call processes now (sandbox.reuse)
//   tessera_sandbox_warm_private_bytes             their private memory (USS), as measured
//   tessera_sandbox_warm_discarded_total{reason}   failed | state_changed | cpu_budget |
//                                                  max_calls | idle | evicted | discarded |
//                                                  stopped
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <string>

#include "actors/sandbox/messages.hpp"

namespace tessera::sandbox {

inline constexpr const char* worker_states[] = {"starting", "idle", "busy", "backoff",
                                                "crash_loop"};

class sandbox_metrics {
 public:
  explicit sandbox_metrics(prometheus::Registry& registry);

  void count_call(call_kind kind, const call_result& result);
  void count_restart(const std::string& reason);
  void set_workers(const std::map<std::string, int>& by_state);
  void set_queue_depth(size_t n);
  void set_warm(size_t processes, int64_t private_kib);
  void count_warm_discarded(const std::string& reason);

 private:
  prometheus::Family<prometheus::Gauge>& workers_;
  prometheus::Family<prometheus::Counter>& calls_;
  prometheus::Family<prometheus::Histogram>& durations_;
  prometheus::Histogram& queue_wait_;
  prometheus::Gauge& queue_depth_;
  prometheus::Family<prometheus::Counter>& restarts_;
  prometheus::Gauge& warm_processes_;
  prometheus::Gauge& warm_private_;
  prometheus::Family<prometheus::Counter>& warm_discarded_;
};

}  // namespace tessera::sandbox
