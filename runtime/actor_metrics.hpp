// Metrics every kind of activated actor shares: how many are live, activated, passivated.
//
// Contract: created once per registry; `for_kind("storage")` returns handles that stay valid as
// long as the registry lives and may be used from any thread.
#pragma once

#include <string>

#include "adapters/metrics/registry.hpp"

namespace tessera::runtime {

struct actor_kind_metrics {
  prometheus::Gauge* live;
  prometheus::Counter* activations;
  prometheus::Counter* passivations;
};

class actor_metrics {
 public:
  explicit actor_metrics(prometheus::Registry& registry);
  actor_kind_metrics for_kind(const std::string& kind);

 private:
  prometheus::Family<prometheus::Gauge>& live_;
  prometheus::Family<prometheus::Counter>& activations_;
  prometheus::Family<prometheus::Counter>& passivations_;
};

}  // namespace tessera::runtime
