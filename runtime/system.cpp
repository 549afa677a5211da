#include "runtime/system.hpp"

#include <string>

#include "adapters/error.hpp"

namespace tessera::runtime {

system_config::system_config(
    uint32_t scheduler_threads,
    const std::vector<std::function<void(caf::actor_system_config&)>>& message_registrations) {
  add_error_category(error_category, [](uint8_t code, caf::atom_value, const caf::message& ctx) {
    std::string out = "tessera:";
    out += to_string(static_cast<errc>(code));
    if (ctx.match_elements<std::string>()) {
      out += ": ";
      out += ctx.get_as<std::string>(0);
    }
    return out;
  });
  if (scheduler_threads > 0) set("scheduler.max-threads", static_cast<size_t>(scheduler_threads));
  // Work sharing: one queue, and every enqueue wakes a sleeping worker at once. CAF's default
  // work stealing lets an idle worker poll with 50 us sleeps (about 130 us on this machine class)
  // before an enqueue from an I/O or executor thread is seen, on every hop of an action's path
  // (bench/README.md: warm calls 2,063/s -> 2,683/s, overhead p50 0.92 -> 0.79 ms).
  set("scheduler.policy", caf::atom("sharing"));
  for (auto& add : message_registrations) add(*this);
}

}  // namespace tessera::runtime
