#include "runtime/actor_metrics.hpp"

namespace tessera::runtime {

actor_metrics::actor_metrics(prometheus::Registry& registry)
    : live_(prometheus::BuildGauge()
                .Name("tessera_actors_live")
                .Help("Actors currently activated, by kind")
                .Register(registry)),
      activations_(prometheus::BuildCounter()
                       .Name("tessera_actor_activations_total")
                       .Help("Actors activated from RocksDB, by kind")
                       .Register(registry)),
      passivations_(prometheus::BuildCounter()
                        .Name("tessera_actor_passivations_total")
                        .Help("Idle actors passivated, by kind")
                        .Register(registry)) {}

actor_kind_metrics actor_metrics::for_kind(const std::string& kind) {
  return {&live_.Add({{"kind", kind}}), &activations_.Add({{"kind", kind}}),
          &passivations_.Add({{"kind", kind}})};
}

}  // namespace tessera::runtime
