#include "actors/task/messages.hpp"

#include <caf/actor_system_config.hpp>

#include "actors/task/run_log.hpp"

namespace tessera::task {

void add_task_messages(caf::actor_system_config& cfg) {
  cfg.add_message_type<log_query>("log_query");
}

}  // namespace tessera::task
