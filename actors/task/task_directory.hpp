// The task directory: the one address for tasks. At start it marks runs that were in flight
// when the server stopped as failed (kind "interrupted"), reads every task and its scheduler
// state from RocksDB and spawns its actor (which registers with the scheduler and applies the
// misfire policy to times missed while down); it creates tasks, forwards everything else to the
// task's actor, restarts a task actor that crashed, answers the log queries and sweeps logs
// older than the retention age (at start and hourly).
//
// Protocol (typed: task::directory_actor in messages.hpp, directory_impl adds the task actors'
// reports and the sweep; replies are JSON text; see task_actor.hpp for the forwarded messages):
//   (list_atom, std::string after, uint32_t limit) -> {"tasks":[task objects without
//       handler]} in id order, read from RocksDB: all of them when limit is 0, else at most
//       `limit` with ids after `after` and "next_after" (the last id, or null at the end)
//   (create_atom, body) -> the task object | invalid_argument | conflict (the id exists) |
//       sandbox_failed (the handler does not compile or defines no on_schedule). Missing
//       storages of storage_ids are created empty. The task is durable before the reply.
//   (get_atom|update_atom|erase_atom|run_atom|runs_atom, id, ...) -> forwarded to the task's
//       actor; an unknown id -> not_found. In a cluster, updates, deletions and runs of a task
//       another node owns (cfg.placement) go to that node (actors/common/forwarding.hpp; no
//       answer: unavailable, outcome unknown), and an id not held here is read from the store
//       before not_found (the change feed may not have brought it yet)
//   (storage::peer_lost_atom, gateway) -> no reply; forwards waiting on it stop waiting
//   (logs_atom, log_query) -> {"logs":[...], "count"} (run_log.hpp)
//   (purge_atom, int64_t before_ms, std::string task_id or "") -> {"deleted": n}
//   (gone_atom, id) from task actors -> no reply
//   (placed_atom) -> no reply; the cluster's members changed: told to every task actor
//   (storage::refresh_atom, id) -> no reply; another node changed task `id` (the change
//       feed): its record goes to its actor, or a task created elsewhere gets one here
// Shutdown: an exit (user_shutdown) stops every task actor, then the directory.
#pragma once

#include <caf/fwd.hpp>
#include <memory>

#include "actors/task/run_log.hpp"
#include "actors/task/task_actor.hpp"
#include "runtime/actor_metrics.hpp"
#include "runtime/cluster/placement.hpp"

namespace tessera::task {

struct directory_config {
  std::shared_ptr<adapters::kv_store> store;
  task_env env;
  runtime::actor_kind_metrics metrics;
  std::chrono::hours log_retention{0};  // log lines older than this are deleted
  // In a cluster: updates, deletions and runs of a task another node owns go there
  // (actors/common/forwarding.hpp), counted in `forwarded`.
  std::shared_ptr<runtime::cluster::placement> placement = nullptr;
  runtime::cluster::forward_metrics::kind forwarded{};

  // task_env's settings and tasks.log_retention_days; the rest is the caller's to set.
  static directory_config from_settings(const config::settings& s) {
    directory_config c{};
    c.env = task_env::from_settings(s);
    c.log_retention = std::chrono::hours(24) * s.task_log_retention_days;
    return c;
  }
};

directory_impl::behavior_type task_directory(directory_impl::pointer self, directory_config cfg);

}  // namespace tessera::task
