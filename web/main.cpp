// build/tessera: the server binary. `tessera serve [...]`, `--help`, `--version`.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <caf/all.hpp>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "actors/panel/panel_codec.hpp"
#include "actors/panel/panel_directory.hpp"
#include "actors/sandbox/supervisor.hpp"
#include "actors/storage/storage_codec.hpp"
#include "actors/storage/storage_directory.hpp"
#include "actors/task/messages.hpp"
#include "actors/task/task_directory.hpp"
#include "actors/task/task_scheduler.hpp"
#include "adapters/error.hpp"
#include "adapters/kv/pg_store.hpp"
#include "config/settings.hpp"
#include "runtime/actor_metrics.hpp"
#include "runtime/cluster/change_feed.hpp"
#include "runtime/cluster/cluster_node.hpp"
#include "runtime/cluster/placement.hpp"
#include "runtime/committer.hpp"
#include "runtime/log.hpp"
#include "runtime/system.hpp"
#include "web/cron_command.hpp"
#include "web/http_server.hpp"
#include "web/import_panel.hpp"
#include "web/live.hpp"
#include "web/migrate.hpp"
#include "web/problem.hpp"
#include "web/routes.hpp"
#include "web/store_backend.hpp"

namespace tessera {
const std::map<std::string_view, std::string_view>& demo_files();  // generated (web/demo/)
}

namespace {

using namespace tessera;

// The demo panel bundles compiled into the binary (web/demo/<panel>/), in the export format;
// `weather_url` (tasks.weather_url) becomes the weather storage's source.
std::vector<std::string> demo_bundles(const std::string& weather_url) {
  std::map<std::string, nlohmann::json> by_name;
  for (auto& [path, text] : demo_files()) {
    auto slash = path.find('/');
    auto dir = std::string{path.substr(0, slash)};
    if (dir == "tasks") continue;
    auto& b = by_name[dir];
    auto file = path.substr(slash + 1);
    if (file == "metadata.json")
      b["metadata"] = nlohmann::json::parse(text);
    else if (file == "template.html")
      b["template"] = std::string{text};
    else if (file == "handler.py")
      b["handler"] = std::string{text};
  }
  if (auto w = by_name.find("weather"); w != by_name.end() && !weather_url.empty())
    w->second["metadata"]["storages"]["weather"]["source_url"] = weather_url;
  std::vector<std::string> out;
  for (auto& [_, b] : by_name) out.push_back(b.dump());
  return out;
}

// The demo tasks (web/demo/tasks/<id>.json + <id>.py) as create bodies.
std::vector<std::string> demo_tasks() {
  std::map<std::string, nlohmann::json> by_id;
  for (auto& [path, text] : demo_files()) {
    if (!path.starts_with("tasks/")) continue;
    auto file = std::string{path.substr(6)};
    auto dot = file.rfind('.');
    auto& t = by_id[file.substr(0, dot)];
    if (file.ends_with(".json"))
      t.merge_patch(nlohmann::json::parse(text));
    else if (file.ends_with(".py"))
      t["handler"] = std::string{text};
  }
  std::vector<std::string> out;
  for (auto& [_, t] : by_id) out.push_back(t.dump());
  return out;
}

// On the first start of an empty data dir, imports the demos (before serving, so the first
// request already sees them).
void load_demos(caf::actor_system& system, const panel::directory_actor& panels,
                const task::directory_actor& tasks, const config::settings& s) {
  caf::scoped_actor self{system};
  bool fresh = false;
  self->request(panels, std::chrono::seconds(10), panel::fresh_atom::value)
      .receive([&](bool f) { fresh = f; },
               [](caf::error& e) { runtime::log_error("demo check failed: " + detail_of(e)); });
  if (!fresh || !s.panel_demos) return;
  for (auto& bundle : demo_bundles(s.task_weather_url))
    self->request(panels, std::chrono::seconds(60), panel::import_atom::value, bundle, false)
        .receive([](const std::string&) {},
                 [](caf::error& e) {
                   runtime::log_error("demo import failed: " + tessera::detail_of(e));
                 });
  for (auto& body : demo_tasks())
    self->request(tasks, std::chrono::seconds(60), task::create_atom::value, body)
        .receive([](const std::string&) {},
                 [](caf::error& e) {
                   runtime::log_error("demo task failed: " + tessera::detail_of(e));
                 });
}

// Where the changes other nodes make go: a storage's to the storage directory (its live
// actor reads it again, or the panels bound to it hear of it), a panel's to the panel
// directory. Everything else is read from the store when asked for.
runtime::cluster::change_feed::target change_feed_target(storage::directory_actor storages,
                                                         panel::directory_actor panels,
                                                         task::directory_actor tasks) {
  auto id_after = [](const std::string& key,
                     std::string_view prefix) -> std::optional<std::string> {
    if (key.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
    return key.substr(prefix.size());
  };
  return {[=](const adapters::change& c) {
            if (auto id = id_after(c.key, storage::key_prefix))
              caf::anon_send(storages, storage::refresh_atom::value, *id);
            else if (auto id = id_after(c.key, panel::key_prefix))
              caf::anon_send(panels, storage::refresh_atom::value, *id);
            else if (auto id = id_after(c.key, task::key_prefix))
              caf::anon_send(tasks, storage::refresh_atom::value, *id);
          },
          [=] {
            caf::anon_send(storages, storage::refresh_atom::value);
            caf::anon_send(panels, storage::refresh_atom::value);
            caf::anon_send(tasks, storage::refresh_atom::value);
          }};
}

// Runs the server until SIGINT/SIGTERM; returns the process exit code.
int serve(const config::settings& s) {
  auto registry = adapters::make_metrics_registry();
  auto& commits = prometheus::BuildCounter()
                      .Name("tessera_storage_commits_total")
                      .Help("Storage changes committed to the durable store")
                      .Register(*registry)
                      .Add({});
  auto store = web::open_store(s, *registry);
  if (!store) {
    runtime::log_error(tessera::detail_of(store.error()));
    return 1;
  }
  runtime::actor_metrics actor_metrics{*registry};
  sandbox::sandbox_metrics sandbox_metrics{*registry};
  panel::panel_metrics panel_metrics{*registry};
  task::task_metrics task_metrics{*registry};
  auto hub = std::make_shared<web::live_hub>(*registry);
  runtime::cluster::membership_metrics cluster_metrics{*registry};
  runtime::cluster::change_feed_metrics feed_metrics{*registry};
  runtime::cluster::forward_metrics forwarded{*registry};
  // A cluster's nodes hear of each other's writes (change_feed.hpp). It listens before the
  // actors load anything, so every change after what they read is handed on to them.
  std::unique_ptr<runtime::cluster::change_feed> feed;
  if (s.cluster.enabled) {
    auto pg = std::dynamic_pointer_cast<adapters::pg_store>(*store);
    auto listening = runtime::cluster::change_feed::listen(s.postgres_url, pg->origin(),
                                                           &feed_metrics, s.cluster.heartbeat);
    if (!listening) {
      runtime::log_error("cannot follow the cluster's changes: " +
                         tessera::detail_of(listening.error()));
      return 1;
    }
    feed = std::move(*listening);
  }

  // Declared before the actor system so that the I/O context outlives every actor callback.
  std::unique_ptr<web::http_server> server;
  runtime::system_config cfg{s.scheduler_threads,
                             {storage::add_storage_messages, runtime::add_committer_messages,
                              sandbox::add_sandbox_messages, task::add_task_messages,
                              runtime::cluster::add_cluster_messages}};
  if (s.cluster.enabled)
    if (auto err = runtime::cluster::configure_cluster_transport(cfg, s.cluster)) {
      runtime::log_error(tessera::detail_of(err));
      return 2;
    }
  caf::actor_system system{cfg};
  // All writes go through the group committer's own thread, one batch (one RocksDB write
  // batch, with sync one fsync; one PostgreSQL pipeline and commit) per group of concurrent
  // commits.
  auto committer = runtime::spawn_committer(system, *store);
  // Short blocking reads (a storage's load, /api/changes) on threads of their own, never on the
  // scheduler's: on PostgreSQL each is a network round trip.
  // On PostgreSQL half the pool at most, so the committer always finds a connection.
  auto readers = runtime::blocking_pool::start(
      system, s.backend == "postgres" ? std::max<size_t>(1, s.postgres_pool / 2) : 2);
  auto senv = storage::storage_env::from_settings(s);
  senv.store = *store;
  senv.readers = readers;
  senv.commits = &commits;
  senv.committer = committer;
  // In a cluster, where each key's owner is (placement.hpp): storage requests go there.
  auto place = std::make_shared<runtime::cluster::placement>();
  if (s.cluster.enabled) {
    senv.placement = place;
    senv.forwarded = forwarded.storage;
  }
  auto directory =
      system.spawn(storage::storage_directory, senv, actor_metrics.for_kind("storage"));
  if (s.sandbox_isolation == "process")
    runtime::log_info(
        "sandbox.isolation=process: handlers run without namespaces (rlimits and "
        "seccomp only); use bwrap where user namespaces are available");
  auto sandbox_cfg = sandbox::supervisor_config::from_settings(s);
  sandbox_cfg.executor.metrics = &sandbox_metrics;
  auto sandbox = system.spawn(sandbox::sandbox_supervisor, sandbox_cfg);
  auto penv = panel::panel_env::from_settings(s);
  penv.atomic.storages = directory;
  penv.atomic.sandbox = sandbox;
  penv.atomic.committer = committer;
  penv.sink = [hub](const panel::render_event& e) { hub->publish(e); };
  penv.watched = [hub](const std::string& id) { return hub->watched(id); };
  penv.metrics = &panel_metrics;
  panel::directory_config pcfg{*store, penv, actor_metrics.for_kind("panel"), readers};
  if (s.cluster.enabled) {
    pcfg.placement = place;
    pcfg.forwarded = forwarded.panel;
  }
  auto panels = system.spawn(panel::panel_directory, pcfg);
  caf::anon_send(directory, storage::watch_atom::value,
                 storage::change_sink{panels});  // storage changes -> panels

  // Detached for the same reason as the task directory below: when 1,000 tasks fall due in
  // one second, its fire messages spread over the workers instead of being stolen one by one
  // (measured: fire lag p99 30 ms from a scheduler thread, 19 ms detached).
  auto scheduler = system.spawn<caf::detached>(task::task_scheduler, &task_metrics);
  auto tcfg = task::directory_config::from_settings(s);
  tcfg.store = *store;
  tcfg.metrics = actor_metrics.for_kind("task");
  auto& tenv = tcfg.env;
  tenv.store = *store;
  tenv.atomic = penv.atomic;
  tenv.scheduler = scheduler;
  tenv.metrics = &task_metrics;
  tenv.gate = std::make_shared<task::run_gate>();
  tenv.readers = readers;
  // In a cluster a task's schedule is fired by its owner only (placement.hpp); until this
  // node's first view of the members it owns none.
  if (s.cluster.enabled) {
    tenv.owns_schedule = [place](const std::string& id) { return place->owns("task/" + id); };
    tenv.took_schedule = [place](const std::string& id) { place->claim("task/" + id); };
    tcfg.placement = place;
    tcfg.forwarded = forwarded.task;
  }
  // Detached: the directory spawns (and at shutdown stops) every task actor, and CAF 0.17's
  // work stealing takes O(queue length) per steal from one worker's queue, which made 100,000
  // actors spawned from a scheduler thread quadratic. From a thread of its own they are spread
  // over the workers. It also does the blocking RocksDB scans of the log queries.
  auto tasks = system.spawn<caf::detached>(task::task_directory, tcfg);
  if (feed) feed->start(change_feed_target(directory, panels, tasks));
  load_demos(system, panels, tasks, s);

  auto auth = std::make_shared<web::authenticator>(s.api_token);
  auto routes = std::make_shared<web::router>(auth, s.metrics_public, *registry);
  auto ctx = web::route_context::from_settings(s, system);
  ctx.readers = readers;
  web::add_ops_routes(*routes, ctx, directory, registry);
  web::add_storage_routes(*routes, ctx, directory);
  web::add_sandbox_routes(*routes, ctx, web::sandbox_route_config::from_settings(s), sandbox);
  web::add_panel_routes(*routes, ctx, panels);
  web::add_task_routes(*routes, ctx, tasks);
  web::add_change_routes(*routes, ctx, *store);
  web::add_ui_routes(*routes, *registry);

  auto opts = web::http_server::options::from_settings(s);
  opts.metrics = std::make_shared<web::http_metrics>(*registry);
  // The bearer token (API clients), or the page's session cookie (browsers cannot set headers
  // on a WebSocket); never a token in the URL.
  opts.ws.check = [routes](const web::request& req) -> std::optional<web::response> {
    if (routes->authorized(req)) return std::nullopt;
    return web::problem(errc::unauthorized, "missing or wrong bearer token or session");
  };
  hub->set_panels(panels);
  opts.ws.open = [ctx, hub](std::shared_ptr<web::ws_connection> c) {
    return web::make_live_session(ctx, hub, c);
  };
  opts.ws.hub = hub;
  server =
      std::make_unique<web::http_server>(opts, [routes](web::request req, web::responder done) {
        routes->handle(std::move(req), std::move(done));
      });
  // A large fan-out shares its sends with the I/O threads (one share stays on the caller).
  hub->set_helpers([srv = server.get()](std::function<void()> f) { srv->post(std::move(f)); },
                   opts.threads > 1 ? opts.threads - 1 : 0);
  auto bound = server->start();
  std::optional<runtime::cluster::cluster_node> cluster;
  caf::actor members_follower;
  if (auto* port = std::get_if<uint16_t>(&bound); port && s.cluster.enabled) {
    // After the bind (the HTTP port is part of the member's row), before any request is served.
    auto joined =
        runtime::cluster::start_cluster_node(system, s, *port, cluster_metrics, place,
                                             {{"storage", caf::actor_cast<caf::actor>(directory)},
                                              {"panel", caf::actor_cast<caf::actor>(panels)},
                                              {"task", caf::actor_cast<caf::actor>(tasks)}});
    if (joined) {
      cluster = *joined;
      // Forwards waiting on a lost or dead peer stop waiting (actors/common/forwarding.hpp).
      place->on_gateway_lost(
          [storages = caf::actor_cast<caf::weak_actor_ptr>(directory),
           panel_dir = caf::actor_cast<caf::weak_actor_ptr>(panels),
           task_dir = caf::actor_cast<caf::weak_actor_ptr>(tasks)](const caf::actor& gateway) {
            for (auto& weak : {storages, panel_dir, task_dir})
              if (auto d = caf::actor_cast<caf::actor>(weak))
                caf::anon_send(d, storage::peer_lost_atom::value, gateway);
          });
      // The leases of the actors this node serves as owner (membership.hpp claim_atom).
      place->on_claim([membership = caf::actor_cast<caf::weak_actor_ptr>(cluster->membership)](
                          const std::string& key) {
        if (auto m = caf::actor_cast<caf::actor>(membership))
          caf::anon_send(m, runtime::cluster::claim_atom::value, std::vector<std::string>{key});
      });
      members_follower = runtime::cluster::follow_members(
          system, cluster->membership, place,
          [tasks, storages = caf::actor_cast<caf::weak_actor_ptr>(directory)] {
            caf::anon_send(tasks, task::placed_atom::value);
            if (auto d = caf::actor_cast<caf::actor>(storages))
              caf::anon_send(d, storage::placed_atom::value);
          });
    } else
      bound = "cannot join the cluster: " + tessera::detail_of(joined.error());
  }
  web::add_cluster_routes(*routes, ctx, cluster ? std::optional{cluster->peers} : std::nullopt);
  if (auto* err = std::get_if<std::string>(&bound)) {
    runtime::log_error(*err);
    feed.reset();
    server->clear_handler();  // the routes hold actor handles; the server outlives the system
    hub->stop();
    caf::anon_send_exit(tasks, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(scheduler, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(panels, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(directory, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(sandbox, caf::exit_reason::user_shutdown);
    if (committer) caf::anon_send(committer, runtime::stop_atom::value);
    readers->stop();
    tasks = nullptr;
    scheduler = nullptr;
    panels = nullptr;
    directory = nullptr;
    sandbox = nullptr;
    committer = nullptr;
    system.await_all_actors_done();
    return 1;
  }
  auto port = std::get<uint16_t>(bound);
  auth->set_port(port);
  runtime::log_info("durable state: " + web::describe_store(s));
  std::cout << "tessera listening on " << s.listen.host << ":" << port << std::endl;

  server->run();
  feed.reset();  // no more changes from the others
  // Task runs in progress finish (and are recorded) within the grace; no new one starts.
  if (int left = tenv.gate->close_and_wait(std::chrono::steady_clock::now() + s.shutdown_grace))
    runtime::log_warning(std::to_string(left) +
                         " task run(s) still running at the end of the shutdown grace; they "
                         "will be recorded as interrupted");
  if (members_follower) caf::anon_send_exit(members_follower, caf::exit_reason::user_shutdown);
  members_follower = nullptr;
  if (cluster) {  // the others take over this node's actors without waiting for its lease
    runtime::cluster::stop_cluster_node(system, *cluster);
    cluster.reset();
  }
  server->clear_handler();
  hub->stop();  // connections closing from now on leave the actors alone
  caf::anon_send_exit(tasks, caf::exit_reason::user_shutdown);
  tasks = nullptr;
  caf::anon_send_exit(scheduler, caf::exit_reason::user_shutdown);
  scheduler = nullptr;
  caf::anon_send_exit(panels, caf::exit_reason::user_shutdown);
  panels = nullptr;
  // `routes` stays alive until the actors are done: late replies still go through it.
  caf::anon_send_exit(sandbox, caf::exit_reason::user_shutdown);
  sandbox = nullptr;
  caf::anon_send_exit(directory, caf::exit_reason::user_shutdown);
  directory = nullptr;
  if (committer) caf::anon_send(committer, runtime::stop_atom::value);  // after pending commits
  committer = nullptr;
  readers->stop();
  system.await_all_actors_done();
  if (auto err = (*store)->flush()) {
    runtime::log_error("flush at shutdown failed: " + tessera::detail_of(err));
    return 1;
  }
  runtime::log_info("stopped cleanly");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tessera: an actor runtime for live dashboards and background jobs"};
  app.set_version_flag("--version", std::string{"tessera "} + TESSERA_VERSION);
  app.require_subcommand(1);
  auto* serve_cmd = app.add_subcommand("serve", "run the server");
  std::string config_file;
  std::string data_dir, listen, api_token;
  bool insecure = false, sync = false;
  std::vector<std::string> sets;
  serve_cmd->add_option("--config", config_file, "TOML config file (see config/tessera.toml)");
  serve_cmd->add_option("--data-dir", data_dir, "RocksDB data directory (default ./data)");
  serve_cmd->add_option("--listen", listen, "HOST:PORT to listen on (default 127.0.0.1:8080)");
  serve_cmd->add_option("--api-token", api_token,
                        "require 'Authorization: Bearer TOKEN' on /api and /ws "
                        "(prefer TESSERA_SERVER_API_TOKEN: flags show in ps)");
  serve_cmd->add_flag("--insecure", insecure, "allow a non-loopback listen without a token");
  serve_cmd->add_flag("--sync", sync, "fsync every commit");
  serve_cmd->add_option("--set", sets, "KEY=VALUE for any config key, e.g. storage.sync=true");
  auto* import_cmd =
      app.add_subcommand("import-panel",
                         "import a panel bundle (metadata.json, template.html, handler.py) into a "
                         "running server");
  web::import_options import_opts;
  import_cmd->add_option("dir", import_opts.dir, "the bundle's directory")->required();
  import_cmd->add_option("--server", import_opts.server,
                         "server URL (default http://127.0.0.1:8080)");
  import_cmd->add_option("--token", import_opts.token,
                         "bearer token (default: $TESSERA_API_TOKEN or $TESSERA_SERVER_API_TOKEN)");
  import_cmd->add_flag("--replace", import_opts.replace, "update the panel if it exists");
  web::cron_options cron_opts;
  auto* cron_cmd = web::add_cron_command(app, cron_opts);
  std::string migrate_from, migrate_to;
  bool migrate_force = false;
  auto* migrate_cmd = app.add_subcommand(
      "migrate",
      "copy storages, panels, tasks, runs and logs between stores, or from/to the origin app's "
      "data directory; prints counts and checksums of both sides");
  migrate_cmd
      ->add_option("--from", migrate_from,
                   "rocksdb:DIR | postgres://... | postgres:KEY=VALUE... | files:DIR")
      ->required();
  migrate_cmd->add_option("--to", migrate_to, "the same forms; must be empty")->required();
  migrate_cmd->add_flag("--force", migrate_force, "write over a target that is not empty");
  CLI11_PARSE(app, argc, argv);
  if (cron_cmd->parsed()) return web::run_cron_command(cron_opts);
  if (migrate_cmd->parsed())
    return web::run_migrate_command(migrate_from, migrate_to, migrate_force);
  if (import_cmd->parsed()) {
    for (auto* name : {"TESSERA_API_TOKEN", "TESSERA_SERVER_API_TOKEN"})
      if (auto* v = std::getenv(name); v && import_opts.token.empty()) import_opts.token = v;
    return web::import_panel(import_opts);
  }

  config::sources from;
  from.environment = config::tessera_environment();
  if (!config_file.empty())
    from.config_file = config_file;
  else if (auto it = from.environment.find("TESSERA_CONFIG"); it != from.environment.end())
    from.config_file = it->second;
  for (auto& kv : sets) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) {
      std::cerr << "tessera: --set expects KEY=VALUE, got '" << kv << "'\n";
      return 2;
    }
    from.overrides.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  if (!data_dir.empty()) from.overrides.emplace_back("storage.data_dir", data_dir);
  if (!listen.empty()) from.overrides.emplace_back("server.listen", listen);
  if (!api_token.empty()) from.overrides.emplace_back("server.api_token", api_token);
  if (insecure) from.overrides.emplace_back("server.insecure", "true");
  if (sync) from.overrides.emplace_back("storage.sync", "true");
  auto loaded = config::load_settings(from);
  if (auto* err = std::get_if<config::load_error>(&loaded)) {
    std::cerr << "tessera: " << err->message << "\n";
    return 2;
  }
  return serve(std::get<config::settings>(loaded));
}
