#include "runtime/system.hpp"

#include <algorithm>
#include <string>
#include <thread>

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
  // 0 means one per core. CAF's own default is at least 4, which on a 2-core machine puts four
  // workers to sleep and wakes them on every hop of an action's path (24 sleeps per todo
  // action, against 2 cores: bench/README.md, "lent warm processes; scheduler threads").
  if (scheduler_threads == 0) scheduler_threads = std::max(1u, std::thread::hardware_concurrency());
  set("scheduler.max-threads", static_cast<size_t>(scheduler_threads));
  // Work sharing: one queue, and every enqueue wakes a sleeping worker at once. CAF's default
  // work stealing lets an idle worker poll with 50 us sleeps (about 130 us on this machine class)
  // before an enqueue from an I/O or executor thread is seen, on every hop of an action's path
  // (bench/README.md: warm calls 2,063/s -> 2,683/s, overhead p50 0.92 -> 0.79 ms).
  set("scheduler.policy", caf::atom("sharing"));
  for (auto& add : message_registrations) add(*this);
}

}  // namespace tessera::runtime
