#include "actors/task/task_directory.hpp"

#include <caf/all.hpp>
#include <set>
#include <unordered_map>

#include "actors/common/actor_directory.hpp"
#include "actors/common/definition_update.hpp"
#include "actors/common/forwarding.hpp"
#include "actors/sandbox/messages.hpp"
#include "actors/storage/messages.hpp"
#include "actors/task/messages.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"
#include "runtime/committer.hpp"
#include "runtime/log.hpp"

namespace tessera::task {
namespace {

using json = nlohmann::json;
using reply_promise = caf::typed_response_promise<std::string>;

class directory {
 public:
  directory(directory_impl::pointer self, directory_config cfg)
      : self_(self),
        cfg_(std::move(cfg)),
        actors_(self, {"task", nullptr, [this](const std::string& id) { restart(id); }},
                cfg_.metrics) {}

  actors::actor_directory& actors() { return actors_; }

  const directory_config& config() const { return cfg_; }

  void load() {
    auto began = std::chrono::steady_clock::now();
    close_interrupted_runs();
    auto rows = cfg_.store->scan(key_prefix, "", 100'000'000);
    if (!rows) {
      runtime::log_error("cannot read tasks: " + detail_of(rows.error()));
      return;
    }
    auto states = cfg_.store->scan("taskstate/", "", 100'000'000);
    actors_.reserve(rows->size());
    // Both scans are in id order: a merge pairs each task with its state. The records are
    // decoded by the task actors themselves, on the scheduler's threads in parallel.
    size_t si = 0;
    for (auto& [key, value] : *rows) {
      auto id = key.substr(key_prefix.size());
      while (states && si < states->size() &&
             (*states)[si].first.compare(10, std::string::npos, id) < 0)
        ++si;
      bool has_state = states && si < states->size() &&
                       (*states)[si].first.compare(10, std::string::npos, id) == 0;
      start(id, std::move(value), has_state ? std::move((*states)[si].second) : std::string{});
    }
    if (actors_.live())
      runtime::log_info("started " + std::to_string(actors_.live()) + " task actors in " +
                        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::steady_clock::now() - began)
                                           .count()) +
                        " ms");
  }

  // Deletes log lines older than the retention age.
  void sweep() {
    auto before = runtime::now_ms() -
                  std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.log_retention).count();
    auto n = delete_logs(*cfg_.store, before, std::nullopt);
    if (!n)
      runtime::log_error("log retention sweep failed: " + detail_of(n.error()));
    else if (*n)
      runtime::log_info("log retention: deleted " + std::to_string(*n) + " lines older than " +
                        runtime::iso8601(before));
    self_->delayed_send(self_, std::chrono::hours(1), sweep_atom::value);
  }

  // A task actor that stopped without being deleted restarts from RocksDB.
  void restart(const std::string& id) {
    close_interrupted_runs(id);  // the runs it had in flight died with it
    auto value = cfg_.store->get(task_key(id));
    auto state = cfg_.store->get(state_key(id));
    if (value && *value) start(id, std::move(**value), state && *state ? **state : std::string{});
  }

  // Every task (limit 0), or a page of `limit` after the id `after`.
  caf::result<std::string> list(const std::string& after, uint32_t limit) const {
    auto rows = cfg_.store->scan(key_prefix, after, limit ? limit : 100'000'000);
    if (!rows) return rows.error();
    std::unordered_map<std::string, task_state> by_id;
    std::set<std::string> busy;
    if (limit) {  // a page: point reads of its tasks' state and markers
      for (auto& [key, _] : *rows) {
        auto id = key.substr(key_prefix.size());
        if (auto v = cfg_.store->get(state_key(id)); v && *v)
          if (auto s = decode_state(**v)) by_id.emplace(id, std::move(*s));
        if (auto m = cfg_.store->scan(std::string{running_prefix} + id + "/", "", 1);
            m && !m->empty())
          busy.insert(id);
      }
    } else {
      auto states = cfg_.store->scan("taskstate/", "", 100'000'000);
      auto running = cfg_.store->scan(running_prefix, "", 100'000'000);
      if (states)
        for (auto& [key, value] : *states)
          if (auto s = decode_state(value)) by_id.emplace(key.substr(10), std::move(*s));
      if (running)
        for (auto& [key, _] : *running) {
          auto rest = key.substr(running_prefix.size());
          busy.insert(rest.substr(0, rest.find('/')));
        }
    }
    auto now = runtime::now_ms();
    json tasks = json::array();
    for (auto& [_, value] : *rows) {
      cron::schedule schedule;
      auto r = decode(value, &schedule);
      if (!r) continue;
      auto s = by_id[r->id];
      int64_t next = 0;
      if (r->enabled)
        if (auto t = schedule.next_after(
                cron::time_point{std::chrono::seconds{std::max(s.last_scheduled, now) / 1000}}))
          next = static_cast<int64_t>(t->time_since_epoch().count()) * 1000;
      auto j = to_json(*r, s, next, busy.count(r->id) > 0);
      j.erase("handler");
      tasks.push_back(std::move(j));
    }
    json out = {{"tasks", std::move(tasks)}};
    if (limit)
      out["next_after"] = rows->size() == limit ? json(rows->back().first.substr(key_prefix.size()))
                                                : json(nullptr);
    return out.dump();
  }

  caf::result<std::string> create(const std::string& body) {
    auto rp = self_->make_response_promise<std::string>();
    auto parsed = parse_new_task(json::parse(body, nullptr, false), cfg_.env.limits);
    if (!parsed) {
      rp.deliver(parsed.error());
      return rp;
    }
    auto r = std::make_shared<task_record>(std::move(*parsed));
    actors::definition_change change;
    // Many tasks share a handler: one that passed the check does not need it again.
    if (!checked_.count(r->handler)) change.code = code_to_check(*r);
    change.storage_ids = r->storage_ids;
    change.write = [this, r](actors::definition_done done) {
      remember_checked(r->handler);
      auto now = runtime::now_ms();
      r->version = 1;
      r->created_at = r->updated_at = now;
      task_state s;
      s.last_scheduled = now;  // times before the task existed are not misfires
      // Absent: another node may create the same id meanwhile (one of them wins).
      std::vector<adapters::write_op> ops{
          {task_key(r->id), encode(*r), false, adapters::write_op::absent},
          {state_key(r->id), encode(s), false}};
      self_
          ->request(cfg_.env.atomic.committer, cfg_.env.atomic.request_timeout,
                    runtime::commit_atom::value, ops)
          .then(
              [this, r, s, done](caf::ok_atom) {
                auto a = start(r->id, encode(*r), encode(s));
                // The reply is the actor's view (with next_run).
                self_->request(a, cfg_.env.atomic.request_timeout, get_atom::value, r->id)
                    .then([done](std::string& v) { done(std::move(v)); },
                          [done](caf::error& e) { done(e); });
              },
              [done, id = r->id](caf::error& err) {
                if (code_of(err) == errc::conflict)
                  return done(make_error(errc::conflict, "task '" + id + "' already exists"));
                done(err);
              });
    };
    actors::create_definition(self_, cfg_.env.atomic, actors_, r->id, std::move(change), rp);
    return rp;
  }

  // The cluster's members changed: every task actor asks whether it owns its schedule now.
  void placed() {
    for (auto& id : actors_.live_ids())
      if (auto a = actors_.find(id)) caf::anon_send(a, placed_atom::value);
  }

  // Another node changed task `id`: its record goes to its actor (newer, or empty: deleted),
  // or a task created elsewhere gets its actor here.
  void refresh(const std::string& id) {
    auto value = cfg_.store->get(task_key(id));
    if (!value) {
      runtime::log_error("cannot read task '" + id +
                         "' changed by another node: " + detail_of(value.error()));
      return;
    }
    if (auto a = actors_.find(id)) {
      if (!*value) actors_.gone(id);  // forgotten now: a task created again gets an actor
      caf::anon_send(a, storage::refresh_atom::value, id, value->value_or(std::string{}));
      return;
    }
    if (!*value) return;
    auto state = cfg_.store->get(state_key(id));
    start(id, std::move(**value), state && *state ? **state : std::string{});
  }

  // Every task read again (the change feed lost changes): the stored ones and the live ones.
  void refresh_all() {
    auto rows = cfg_.store->scan(key_prefix, "", 100'000'000);
    if (!rows) {
      runtime::log_error("cannot read the tasks again: " + detail_of(rows.error()));
      return;
    }
    std::set<std::string> ids;
    for (auto& [key, _] : *rows) ids.insert(key.substr(key_prefix.size()));
    for (auto& id : actors_.live_ids()) ids.insert(id);
    for (auto& id : ids) refresh(id);
  }

  caf::result<std::string> logs(const log_query& q) const { return query_logs(*cfg_.store, q); }

  caf::result<std::string> purge(int64_t before, const std::string& task_id) {
    auto n = delete_logs(*cfg_.store, before,
                         task_id.empty() ? std::nullopt : std::optional<std::string>{task_id});
    if (!n) return n.error();
    return json{{"deleted", *n}}.dump();
  }

 private:
  caf::actor start(const std::string& id, std::string record, std::string state) {
    auto a = self_->spawn(task_actor, cfg_.env, caf::actor_cast<directory_impl>(self_), id,
                          std::move(record), std::move(state));
    actors_.add(id, a);
    return a;
  }

  // Runs that were in flight when the server stopped: failed, kind "interrupted". They are not
  // run again (their scheduled time was handled).
  void close_interrupted_runs(const std::string& task_id = {}) {
    auto prefix = std::string{running_prefix} + (task_id.empty() ? "" : task_id + "/");
    auto markers = cfg_.store->scan(prefix, "", 10'000'000);
    if (!markers || markers->empty()) return;
    std::vector<adapters::write_op> ops;
    auto now = runtime::now_ms();
    for (auto& [key, _] : *markers) {
      ops.push_back({key, {}, true});
      auto rest = key.substr(running_prefix.size());
      auto slash = rest.find('/');
      auto rk = "run/" + rest.substr(0, slash) + rest.substr(slash);
      auto value = cfg_.store->get(rk);
      if (!value || !*value) continue;
      auto r = decode_run(**value);
      if (!r || r->status != "running") continue;
      r->status = "failed";
      r->finished_at = now;
      r->error = {{"kind", "interrupted"},
                  {"message", "the server stopped while this run was in progress"}};
      ops.push_back({rk, encode(*r), false});
    }
    if (auto err = cfg_.store->write(ops))
      runtime::log_error("cannot close interrupted runs: " + detail_of(err));
    else
      runtime::log_info("marked " + std::to_string(markers->size()) +
                        " interrupted task run(s) as failed");
  }

  // The handlers that compiled and define on_schedule, bounded (the check is deterministic).
  void remember_checked(const std::string& handler) {
    if (handler.size() > 64 * 1024) return;
    if (checked_.size() >= 256) checked_.clear();
    checked_.insert(handler);
  }

  directory_impl::pointer self_;
  directory_config cfg_;
  std::set<std::string> checked_;
  actors::actor_directory actors_;
};

}  // namespace

directory_impl::behavior_type task_directory(directory_impl::pointer self, directory_config cfg) {
  auto dir = std::make_shared<directory>(self, std::move(cfg));
  dir->load();
  dir->sweep();
  auto in_flight = std::make_shared<actors::forwards_in_flight>();
  self->set_down_handler([dir, in_flight](caf::down_msg& msg) {
    if (!in_flight->down(msg)) dir->actors().down(msg);
  });
  self->set_exit_handler([self, dir](caf::exit_msg&) {
    dir->actors().stop_all();
    self->quit(caf::exit_reason::user_shutdown);
  });
  auto forward = [dir](const std::string& id, auto... xs) {
    return dir->actors().forward<std::string>(id, xs...);
  };
  // An update, deletion or run: to the node owning the task when it is another. The owner
  // asked by another node about a task its change feed has not brought yet reads it first.
  auto to_owner = [self, dir, forward, in_flight](const std::string& id,
                                                  auto... xs) -> caf::result<std::string> {
    auto& cfg = dir->config();
    auto owner = actors::owner_elsewhere(self, cfg.placement, "task/" + id);
    if (!owner) {
      auto& sender = self->current_sender();
      if (sender && sender->node() != self->node() && !dir->actors().find(id)) dir->refresh(id);
      return forward(id, xs...);
    }
    return actors::forward_to_owner<std::string>(
        self, in_flight, owner, "task", caf::make_message(xs...), cfg.env.atomic.call_timeout,
        cfg.forwarded,
        [self, id](caf::typed_response_promise<std::string>& rp, const caf::error& err) {
          rp.deliver(make_error(errc::unavailable, "the node owning task '" + id +
                                                       "' did not answer (" +
                                                       self->system().render(err) +
                                                       "); the change may or may not have landed"));
        });
  };
  return {
      [dir](list_atom, const std::string& after, uint32_t limit) {
        return dir->list(after, limit);
      },
      [dir](create_atom, const std::string& body) { return dir->create(body); },
      [dir, forward](get_atom a, const std::string& id) {
        // In a cluster, a task created through another node just now may not have come
        // through the change feed yet: the store is read before not_found.
        if (dir->config().placement && !dir->actors().find(id)) dir->refresh(id);
        return forward(id, a, id);
      },
      [to_owner](update_atom a, const std::string& id, const std::string& body,
                 const std::vector<std::string>& allowed,
                 const storage::version_list& m) { return to_owner(id, a, id, body, allowed, m); },
      [to_owner](erase_atom a, const std::string& id) { return to_owner(id, a, id); },
      [to_owner](run_atom a, const std::string& id) { return to_owner(id, a, id); },
      [forward](runs_atom a, const std::string& id, int64_t before, uint32_t limit) {
        return forward(id, a, id, before, limit);
      },
      [dir](logs_atom, const log_query& q) { return dir->logs(q); },
      [dir](purge_atom, int64_t before, const std::string& task_id) {
        return dir->purge(before, task_id);
      },
      [self, dir](gone_atom, const std::string& id) {
        dir->actors().gone(id, self->current_sender());
      },
      [dir](storage::refresh_atom) { dir->refresh_all(); },
      [dir](sweep_atom) { dir->sweep(); },
      [dir](placed_atom) { dir->placed(); },
      [dir](storage::refresh_atom, const std::string& id) { dir->refresh(id); },
      [in_flight](storage::peer_lost_atom, const caf::actor& gateway) {
        in_flight->lost(gateway.address(), caf::make_error(caf::sec::request_receiver_down));
      },
  };
}

}  // namespace tessera::task
