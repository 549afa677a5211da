// The CAF actor system configuration tessera runs with.
//
// Contract: `system_config` registers tessera's error category (so errors print readably) and
// every message type of every actor area (each area contributes an `add_*_messages` function);
// it must be constructed before the actor_system and outlive it.
#pragma once

#include <caf/actor_system_config.hpp>
#include <cstdint>
#include <functional>
#include <vector>

namespace tessera::runtime {

class system_config : public caf::actor_system_config {
 public:
  // `scheduler_threads` 0: one per core (std::thread::hardware_concurrency), not CAF's default
  // of at least 4.
  explicit system_config(
      uint32_t scheduler_threads,
      const std::vector<std::function<void(caf::actor_system_config&)>>& message_registrations);
};

}  // namespace tessera::runtime
