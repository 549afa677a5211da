// The scheduler: one queue of next fire times for every enabled task, one timer for the
// earliest of them. Task actors compute their own next time (cron.hpp) and register it; the
// scheduler only wakes them.
//
// Protocol (typed: scheduler_actor in messages.hpp; no replies):
//   (schedule_atom, id, int64_t at_ms, caf::actor task) -> replaces the task's entry; at_ms 0
//       removes it. The queue holds at most one entry per task.
//   At `at_ms` (wall clock), the scheduler removes the entry and sends the task
//   (fire_atom, at_ms); the task registers its next time itself. Entries due together are sent
//   in time order in one pass; a wake-up that comes early re-arms the timer.
// The queue size is kept in task_metrics (tessera_task_schedule_queue_size).
#pragma once

#include <caf/fwd.hpp>

#include "actors/task/messages.hpp"
#include "actors/task/task_metrics.hpp"

namespace tessera::task {

scheduler_actor::behavior_type task_scheduler(scheduler_actor::pointer self, task_metrics* metrics);

}  // namespace tessera::task
