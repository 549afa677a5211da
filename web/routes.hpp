// The route tables of the server, one function per area. Each adds its routes to a router and
// captures what it needs by value (actor handles, settings), never pointers into actor state.
#pragma once

#include <caf/fwd.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "actors/panel/messages.hpp"
#include "actors/sandbox/messages.hpp"
#include "actors/storage/messages.hpp"
#include "actors/task/messages.hpp"
#include "adapters/kv/kv_store.hpp"
#include "adapters/metrics/registry.hpp"
#include "config/settings.hpp"
#include "runtime/blocking_pool.hpp"
#include "runtime/cluster/peers.hpp"
#include "web/router.hpp"

namespace tessera::web {

struct route_context {
  caf::actor_system* system = nullptr;
  std::chrono::milliseconds request_timeout{0};  // a request's wait for its answer
  std::chrono::milliseconds slow_timeout{0};     // that of a request that may run user code
  uint32_t max_json_depth = 0;
  std::shared_ptr<runtime::blocking_pool> readers;  // short blocking reads (main sets it)

  // server.request_timeout, config::user_code_wait, server.max_json_depth.
  static route_context from_settings(const config::settings& s, caf::actor_system& system) {
    return {&system, s.request_timeout, config::user_code_wait(s), s.max_json_depth, nullptr};
  }
};

// /api/storages and /api/storages/{id}; `directory` speaks storage_directory.hpp's protocol.
void add_storage_routes(router& r, const route_context& ctx,
                        const storage::directory_actor& directory);

struct sandbox_route_config {
  std::chrono::milliseconds default_timeout{0};
  std::chrono::milliseconds max_timeout{0};
  std::chrono::milliseconds queue_timeout{0};
  uint32_t max_memory_mb = 0;
  std::string isolation;  // shown by GET /api/sandbox

  static sandbox_route_config from_settings(const config::settings& s) {
    return {s.sandbox_timeout, s.sandbox_max_timeout, s.sandbox_queue_timeout,
            s.sandbox_max_memory_mb, s.sandbox_isolation};
  }
};

// POST /api/sandbox/run (a dry run: storages in the body, nothing committed),
// POST /api/sandbox/check (syntax-check a handler and/or template), GET /api/sandbox (workers).
// `supervisor` speaks actors/sandbox/supervisor.hpp's protocol.
void add_sandbox_routes(router& r, const route_context& ctx, const sandbox_route_config& cfg,
                        const sandbox::sandbox_actor& supervisor);

// /api/panels and everything below it; `panels` speaks panel_directory.hpp's protocol.
// ctx.slow_timeout bounds requests that run user code (actions, renders, code checks).
void add_panel_routes(router& r, const route_context& ctx, const panel::directory_actor& panels);

// /api/tasks and everything below it, and /api/logs; `tasks` speaks task_directory.hpp's
// protocol. ctx.slow_timeout bounds requests that may run user code (manual runs, code checks).
void add_task_routes(router& r, const route_context& ctx, const task::directory_actor& tasks);

// GET / (the web UI page, or with a token configured and no session the login form),
// GET /ui/app.js, POST /login (form field `token`: a session cookie and 303 to /; a wrong one
// 401 and the form again, counted in tessera_logins_total) and POST /logout.
void add_ui_routes(router& r, prometheus::Registry& registry);

// GET /api/changes?after=N&limit=M[&sequence=S]: the change sequence
// (adapters/kv/kv_store.hpp) as the storages, panels and tasks created, changed or deleted
// after change N, in commit order: {"changes": [{"seq", "kind", "id", "deleted"}], "next":
// the number to ask after next time, "last": the newest number, "sequence": its id}. The
// server's own keys (runs, logs) take numbers but are not listed. 410 when the changes after
// N are no longer kept, or S (the id the reader followed) is not this store's; 400 when N is
// beyond the newest.
void add_change_routes(router& r, const route_context& ctx,
                       std::shared_ptr<adapters::kv_store> store);

// /healthz, /readyz (open), /metrics (the token unless server.metrics_public).
void add_ops_routes(router& r, const route_context& ctx, const storage::directory_actor& directory,
                    adapters::metrics_registry registry);

// GET /api/cluster: the cluster's members as this node last read them (runtime/cluster/
// peers.hpp): {"enabled": true, "self": name, "generation", "self_alive", "members":
// [{"name", "generation", "state": "joining" | "alive" | "dead", "address", "http",
// "heartbeat_at", "reachable" (connected from this node)}]}; a single server (cluster.enabled
// false) answers {"enabled": false, "members": []}.
void add_cluster_routes(router& r, const route_context& ctx,
                        std::optional<runtime::cluster::peers_actor> peers);

}  // namespace tessera::web
