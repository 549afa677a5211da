#include "actors/task/task_actor.hpp"

#include <caf/all.hpp>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>

#include "actors/sandbox/messages.hpp"
#include "actors/storage/messages.hpp"
#include "actors/task/messages.hpp"
#include "actors/task/run_log.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"
#include "runtime/committer.hpp"
#include "runtime/log.hpp"

namespace tessera::task {
namespace {

using json = nlohmann::json;
using reply_promise = caf::typed_response_promise<std::string>;
using ops_t = std::vector<adapters::write_op>;

int64_t floor_s(int64_t ms) { return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000); }

std::optional<int64_t> next_ms(const cron::schedule& s, int64_t after_ms) {
  auto t = s.next_after(cron::time_point{std::chrono::seconds{floor_s(after_ms)}});
  if (!t) return std::nullopt;
  return static_cast<int64_t>(t->time_since_epoch().count()) * 1000;
}

// A run decided but not started (queued by queue_one or catch_up), or a manual one waiting.
struct pending_run {
  std::string trigger;
  int64_t scheduled_for = 0;
  std::optional<reply_promise> rp;
};

class task_state_machine {
 public:
  task_state_machine(caf::event_based_actor* self, task_env env, caf::actor directory,
                     task_record r, task_state s, cron::schedule schedule)
      : self_(self),
        env_(std::move(env)),
        directory_(std::move(directory)),
        rec_(std::move(r)),
        st_(std::move(s)),
        schedule_(std::move(schedule)) {}

  void start() {
    count_enabled(rec_.enabled);
    if (rec_.enabled) handle_due();
  }

  void stopped() {
    count_enabled(false);
    for (; in_gate_ > 0; --in_gate_) env_.gate->leave();  // runs cut off by the actor's end
  }

  std::string view() const { return to_json(rec_, st_, next_run_, running_ > 0).dump(); }

  // --- scheduling ----------------------------------------------------------------------------

  void fire(int64_t at) {
    if (deleted_ || !rec_.enabled || at != next_run_) return;  // superseded
    // Shutting down: the time stays due (not marked handled), so the next start finds it.
    if (env_.gate && env_.gate->closed()) return;
    next_run_ = 0;
    handle_due();
  }

  // --- manual runs ---------------------------------------------------------------------------

  caf::result<std::string> run_now() {
    auto rp = self_->make_response_promise<std::string>();
    if (deleted_) {
      rp.deliver(gone());
      return rp;
    }
    if (busy()) {
      if (rec_.overlap == overlap_policy::skip) {
        rp.deliver(make_error(errc::conflict,
                              "task '" + rec_.id + "' is running and its overlap policy is skip"));
        return rp;
      }
      if (rec_.overlap == overlap_policy::queue_one) {
        if (!pending_.empty()) {
          rp.deliver(make_error(errc::conflict,
                                "task '" + rec_.id + "' already has a run waiting (queue_one)"));
          return rp;
        }
        pending_.push_back({"manual", 0, rp});
        return rp;
      }
    }
    start_run({"manual", 0, rp});
    return rp;
  }

  caf::result<std::string> runs(int64_t before, uint32_t limit) const {
    auto from = run_key(rec_.id, 0);
    auto to = before > 0 ? run_key(rec_.id, before) : run_prefix(rec_.id) + "~";
    auto rows = env_.store->range(from, to, limit, true);
    if (!rows) return rows.error();
    json out = json::array();
    int64_t last = 0;
    for (auto& [_, value] : *rows) {
      auto r = decode_run(value);
      if (!r) continue;
      auto logs = run_logs(*env_.store, r->task_id, r->seq);
      out.push_back(to_json(*r, logs ? std::move(*logs) : json::array()));
      last = r->seq;
    }
    json next = rows->size() == limit && last > 1 ? json(last) : json(nullptr);
    return json{{"runs", std::move(out)}, {"next_cursor", std::move(next)}}.dump();
  }

  // --- definition ----------------------------------------------------------------------------

  caf::result<std::string> update(std::string body, std::vector<std::string> allowed,
                                  storage::version_list if_match) {
    auto rp = self_->make_response_promise<std::string>();
    updates_.push_back({std::move(body), std::move(allowed), std::move(if_match), rp});
    if (updates_.size() == 1) next_update();
    return rp;
  }

  caf::result<std::string> erase() {
    auto rp = self_->make_response_promise<std::string>();
    if (deleted_) {
      rp.deliver(gone());
      return rp;
    }
    // From now on nothing new starts and runs that finish write nothing; the history is
    // scanned once the commits already sent have landed, so none of it is missed.
    deleted_ = true;
    erase_promise_ = rp;
    if (commits_in_flight_ == 0) erase_history();
    return rp;
  }

 private:
  // This task's runs share a warm process while its handler stays the same (none when the
  // task asks for a fresh process per run).
  std::string warm_key() const {
    if (rec_.fresh_process) return {};
    return sandbox::reuse_key("task:" + rec_.id, rec_.handler, {});
  }

  void erase_history() {
    ops_t ops{{task_key(rec_.id), {}, true}, {state_key(rec_.id), {}, true}};
    // Every run record and log line of the task (both log indexes), and any marker.
    auto add_range = [&](const std::string& prefix) {
      if (auto rows = env_.store->scan(prefix, "", 100'000'000))
        for (auto& [key, _] : *rows) ops.push_back({key, {}, true});
    };
    add_range(run_prefix(rec_.id));
    add_range(std::string{running_prefix} + rec_.id + "/");
    if (auto more = erase_task_log_ops(*env_.store, rec_.id))
      ops.insert(ops.end(), more->begin(), more->end());
    self_
        ->request(env_.atomic.committer, env_.atomic.request_timeout * 4,
                  runtime::commit_atom::value, std::move(ops))
        .then(
            [this](caf::ok_atom) {
              unschedule();
              count_enabled(false);
              self_->send(directory_, gone_atom::value, rec_.id);
              for (auto& p : pending_)
                if (p.rp) p.rp->deliver(gone());
              for (auto& [_, w] : waiting_) w.deliver(gone());
              for (auto& u : updates_) u.rp.deliver(gone());
              pending_.clear();
              waiting_.clear();
              updates_.clear();
              erase_promise_->deliver(std::string{R"({"success":true})"});
              erase_promise_.reset();
              sandbox::discard_warm(env_.atomic.sandbox, warm_key());
              self_->quit();
            },
            [this](caf::error& err) {
              // Nothing was deleted: the task carries on as before.
              deleted_ = false;
              erase_promise_->deliver(err);
              erase_promise_.reset();
              reschedule();
              start_next();
              if (!updates_.empty()) next_update();
            });
  }

  caf::error gone() const {
    return make_error(errc::not_found, "task '" + rec_.id + "' was deleted");
  }

  bool busy() const { return running_ > 0 || !pending_.empty(); }

  void count_enabled(bool on) {
    if (on == counted_enabled_ || !env_.metrics) return;
    counted_enabled_ = on;
    env_.metrics->add_enabled(on ? 1 : -1);
  }

  void unschedule() {
    next_run_ = 0;
    self_->send(env_.scheduler, schedule_atom::value, rec_.id, int64_t{0}, caf::actor{self_});
  }

  void reschedule() {
    if (deleted_ || !rec_.enabled) return unschedule();
    auto next = next_ms(schedule_, std::max(st_.last_scheduled, runtime::now_ms()));
    next_run_ = next.value_or(0);
    self_->send(env_.scheduler, schedule_atom::value, rec_.id, next_run_, caf::actor{self_});
  }

  // Every scheduled time after the last one handled, up to now, is due (see the header).
  void handle_due() {
    auto now = runtime::now_ms();
    size_t keep =
        rec_.misfire == misfire_policy::catch_up ? std::max<size_t>(env_.max_catch_up, 1) : 1;
    auto due = due_between(schedule_, st_.last_scheduled, now, keep);
    if (due.count > 0) {
      auto newest = due.newest.back();
      st_.last_scheduled = std::max(st_.last_scheduled, newest);
      if (due.count == 1 && due.exact && now - newest <= misfire_grace_ms)
        decide({"schedule", newest, std::nullopt});
      else
        misfire(due);
    }
    reschedule();
  }

  void misfire(const due_times& due) {
    if (env_.metrics) env_.metrics->count_misfire(std::string{to_string(rec_.misfire)});
    auto missed = (due.exact ? "" : "at least ") + std::to_string(due.count);
    switch (rec_.misfire) {
      case misfire_policy::run_once:
        decide({"catch_up", due.newest.back(), std::nullopt});
        break;
      case misfire_policy::skip:
        skip_run(due.newest.back(), "catch_up", "misfire",
                 missed + " scheduled time(s) passed unrun (the latest " +
                     runtime::iso8601(due.newest.back()) + "); misfire policy is skip");
        break;
      case misfire_policy::catch_up: {
        if (due.count > due.newest.size())
          skip_run(0, "catch_up", "catch_up_limit",
                   "catch-up runs only the newest " + std::to_string(due.newest.size()) + " of " +
                       missed + " missed scheduled times; the older ones are skipped");
        for (auto at : due.newest) pending_.push_back({"catch_up", at, std::nullopt});
        start_next();
        break;
      }
    }
  }

  // A due scheduled run meets the overlap policy.
  void decide(pending_run run) {
    if (!busy() || rec_.overlap == overlap_policy::allow) return start_run(std::move(run));
    if (rec_.overlap == overlap_policy::queue_one && pending_.empty()) {
      pending_.push_back(std::move(run));
      return;
    }
    skip_run(run.scheduled_for, run.trigger, "overlap",
             rec_.overlap == overlap_policy::skip
                 ? "the previous run was still running (overlap policy skip)"
                 : "a run was already waiting (overlap policy queue_one)");
  }

  void start_next() {
    if (running_ > 0 || pending_.empty() || deleted_) return;
    auto run = std::move(pending_.front());
    pending_.pop_front();
    start_run(std::move(run));
  }

  // --- runs ----------------------------------------------------------------------------------

  void skip_run(int64_t scheduled_for, const std::string& trigger, const std::string& reason,
                const std::string& message) {
    if (env_.metrics) {
      env_.metrics->count_skip(reason);
      env_.metrics->count_run("skipped", std::chrono::milliseconds{0});
    }
    run_record r;
    r.task_id = rec_.id;
    r.seq = ++st_.run_seq;
    r.trigger = trigger;
    r.scheduled_for = scheduled_for;
    r.started_at = r.finished_at = runtime::now_ms();
    r.status = "skipped";
    r.error = {{"kind", reason}, {"message", message}};
    ops_t ops{{state_key(rec_.id), encode(st_), false},
              {run_key(rec_.id, r.seq), encode(r), false}};
    trim(ops, r.seq);
    commit(std::move(ops), [](caf::error) {});
  }

  void start_run(pending_run run) {
    if (env_.gate) {
      if (!env_.gate->enter()) {  // shutting down: no run starts
        if (run.rp) run.rp->deliver(make_error(errc::unavailable, "the server is shutting down"));
        return;
      }
      ++in_gate_;
    }
    auto r = std::make_shared<run_record>();
    r->task_id = rec_.id;
    r->seq = ++st_.run_seq;
    r->trigger = run.trigger;
    r->scheduled_for = run.scheduled_for;
    r->started_at = runtime::now_ms();
    r->status = "running";
    st_.last_run = r->started_at;
    if (run.scheduled_for && env_.metrics)
      env_.metrics->observe_lag(
          std::chrono::milliseconds{std::max<int64_t>(r->started_at - run.scheduled_for, 0)});
    ++running_;
    if (run.rp) waiting_.emplace(r->seq, *run.rp);
    // Written ahead: the scheduled time counts as handled before the handler runs.
    ops_t ops{{state_key(rec_.id), encode(st_), false},
              {run_key(rec_.id, r->seq), encode(*r), false},
              {running_key(rec_.id, r->seq), "", false}};
    commit(std::move(ops), [this, r](caf::error err) {
      if (err || deleted_)
        return finish_run(r, caf::expected<storage::atomic_outcome>{err ? err : gone()});
      execute(r);
    });
  }

  void execute(std::shared_ptr<run_record> r) {
    auto body = std::make_shared<json>(
        json{{"handler", rec_.handler},
             {"task",
              {{"id", rec_.id},
               {"name", rec_.name},
               {"schedule", rec_.schedule},
               {"timezone", rec_.timezone},
               {"trigger", r->trigger},
               {"scheduled_for",
                r->scheduled_for ? json(runtime::iso8601(r->scheduled_for)) : json(nullptr)}}}});
    auto timeout = static_cast<uint32_t>(rec_.timeout_ms);
    auto key = warm_key();
    auto make_call = [body, timeout, key](const storage::snapshot& s) {
      // Storage data is JSON text already: spliced in, not re-encoded.
      auto text = body->dump();
      text.pop_back();
      text += ",\"storage\":" + storage::storage_object(s) + "}";
      return sandbox::call{sandbox::call_kind::schedule, std::move(text), timeout, 0, key};
    };
    storage::run_atomically(
        self_, env_.atomic, rec_.storage_ids, "task '" + rec_.id + "'", std::move(make_call), {},
        {},
        [this, r](caf::expected<storage::atomic_outcome> out) { finish_run(r, std::move(out)); });
  }

  void finish_run(std::shared_ptr<run_record> r, caf::expected<storage::atomic_outcome> out) {
    --running_;
    r->finished_at = runtime::now_ms();
    json logs = json::array();
    if (out) {
      r->status = "succeeded";
      for (auto& [id, _] : out->answer["changed"].items()) r->changed_storages.push_back(id);
      logs = out->answer.value("logs", json::array());
    } else if (code_of(out.error()) == errc::sandbox_failed) {
      auto answer = json::parse(detail_of(out.error()), nullptr, false);
      auto error = answer.is_object() ? answer.value("error", json::object()) : json::object();
      if (!error.is_object()) error = json::object();
      auto kind = string_member(error, "kind", "handler_error");
      r->status = kind == "timeout" ? "timed_out" : "failed";
      r->error = error;
      if (answer.is_object()) logs = answer.value("logs", json::array());
    } else {
      r->status = "failed";
      r->error = {{"kind", std::string{to_string(code_of(out.error()))}},
                  {"message", detail_of(out.error())}};
    }
    st_.last_status = r->status;
    if (env_.metrics)
      env_.metrics->count_run(r->status, std::chrono::milliseconds{r->finished_at - r->started_at});
    json entries;
    auto ops = log_ops(rec_.id, r->seq, logs, r->finished_at, &entries);
    ops.push_back({run_key(rec_.id, r->seq), encode(*r), false});
    ops.push_back({running_key(rec_.id, r->seq), {}, true});
    ops.push_back({state_key(rec_.id), encode(st_), false});
    trim(ops, r->seq);
    auto reply = to_json(*r, std::move(entries)).dump();
    auto deliver = [this, seq = r->seq, reply](caf::error err) {
      if (env_.gate && in_gate_ > 0) {  // the run's record is durable (or cannot be)
        --in_gate_;
        env_.gate->leave();
      }
      auto it = waiting_.find(seq);
      if (it != waiting_.end()) {
        if (err)
          it->second.deliver(err);
        else
          it->second.deliver(reply);
        waiting_.erase(it);
      }
      start_next();
    };
    if (deleted_) return deliver(gone());
    commit(std::move(ops), deliver);
  }

  // Deletes the run that falls out of the newest env.keep_runs.
  // Deletes the finished runs that fall out of the newest env.keep_runs (with their logs).
  void trim(ops_t& ops, int64_t seq) {
    auto below = seq - static_cast<int64_t>(env_.keep_runs) + 1;
    if (below <= 1) return;
    auto rows = env_.store->range(run_key(rec_.id, 0), run_key(rec_.id, below), 64, false);
    if (!rows) return;
    for (auto& [_, value] : *rows) {
      auto r = decode_run(value);
      if (!r || r->status == "running" || waiting_.count(r->seq)) continue;
      if (auto more = erase_run_ops(*env_.store, rec_.id, r->seq))
        ops.insert(ops.end(), more->begin(), more->end());
    }
  }

  // Scheduled runs still waiting when the task is disabled or re-timed do not run.
  void cancel_queued() {
    std::deque<pending_run> keep;
    for (auto& p : pending_) {
      if (p.rp) {
        keep.push_back(std::move(p));
        continue;
      }
      skip_run(p.scheduled_for, p.trigger, "cancelled",
               "the task was disabled or its schedule changed before this run started");
    }
    pending_ = std::move(keep);
  }

  void commit(ops_t ops, std::function<void(caf::error)> done) {
    ++commits_in_flight_;
    self_
        ->request(env_.atomic.committer, env_.atomic.request_timeout, runtime::commit_atom::value,
                  std::move(ops))
        .then(
            [this, done](caf::ok_atom) {
              committed();
              done({});
            },
            [this, done](caf::error& err) {
              runtime::log_error("task '" + rec_.id + "': commit failed: " + detail_of(err));
              committed();
              done(err);
            });
  }

  void committed() {
    if (--commits_in_flight_ == 0 && deleted_ && erase_promise_) erase_history();
  }

  // --- updates -------------------------------------------------------------------------------

  struct pending_update {
    std::string body;
    std::vector<std::string> allowed;
    storage::version_list if_match;
    reply_promise rp;
  };

  void next_update() {
    if (updates_.empty()) return;
    auto& u = updates_.front();
    auto done = [this](caf::expected<std::string> r) {
      if (updates_.empty()) return;  // deleted meanwhile (already answered)
      auto rp = updates_.front().rp;
      updates_.pop_front();
      if (r)
        rp.deliver(std::move(*r));
      else
        rp.deliver(r.error());
      next_update();
    };
    if (deleted_) return done(gone());
    auto next = apply_update(rec_, json::parse(u.body, nullptr, false), u.allowed, env_.limits);
    if (!next) return done(next.error());
    if (!u.if_match.empty() &&
        std::find(u.if_match.begin(), u.if_match.end(), rec_.version) == u.if_match.end())
      return done(make_error(errc::precondition_failed, "task '" + rec_.id + "' is at version " +
                                                            std::to_string(rec_.version)));
    auto candidate = std::make_shared<task_record>(std::move(*next));
    auto write = [this, candidate, done]() {
      if (deleted_) return done(gone());  // deleted while the handler was being checked
      auto now = runtime::now_ms();
      candidate->version = rec_.version + 1;
      candidate->updated_at = std::max(now, rec_.updated_at);
      bool retimed = candidate->schedule != rec_.schedule || candidate->timezone != rec_.timezone ||
                     (candidate->enabled && !rec_.enabled);
      bool stopped = retimed || (!candidate->enabled && rec_.enabled);
      // Times before the change are not misfires of the new schedule (in memory at once, so a
      // fire of the old schedule meanwhile cannot write an older time after this).
      if (retimed) st_.last_scheduled = std::max(st_.last_scheduled, now);
      ops_t ops{{task_key(rec_.id), encode(*candidate), false},
                {state_key(rec_.id), encode(st_), false}};
      commit(std::move(ops), [this, candidate, stopped, done](caf::error err) {
        if (err) return done(err);
        if (deleted_) return done(gone());
        auto old_key = warm_key();
        bool limits_changed = candidate->timeout_ms != rec_.timeout_ms;
        rec_ = *candidate;
        if (old_key != warm_key() || limits_changed)
          sandbox::discard_warm(env_.atomic.sandbox, old_key);
        schedule_ = schedule_of(rec_);
        count_enabled(rec_.enabled);
        if (stopped) cancel_queued();
        // A time that fell due while the update was in flight still runs.
        if (rec_.enabled)
          handle_due();
        else
          reschedule();
        done(view());
      });
    };
    // Storages newly bound are created empty, as at create.
    auto write_after_storages = [this, candidate, write, done]() {
      std::vector<std::string> added;
      for (auto& id : candidate->storage_ids)
        if (std::find(rec_.storage_ids.begin(), rec_.storage_ids.end(), id) ==
            rec_.storage_ids.end())
          added.push_back(id);
      storage::create_missing(self_, env_.atomic.storages, env_.atomic.request_timeout, added, {},
                              [write, done](caf::error err) {
                                if (err) return done(err);
                                write();
                              });
    };
    if (candidate->handler == rec_.handler) return write_after_storages();
    json check = {{"handler", candidate->handler}, {"require", "on_schedule"}};
    self_
        ->request(env_.atomic.sandbox, env_.atomic.call_timeout, sandbox::run_atom::value,
                  sandbox::call{sandbox::call_kind::check, check.dump(), 0, 0, {}})
        .then(
            [write_after_storages, done](sandbox::call_result& res) {
              if (!sandbox::is_ok(res)) return done(make_error(errc::sandbox_failed, res.body));
              write_after_storages();
            },
            [done](caf::error& err) { done(err); });
  }

  caf::event_based_actor* self_;
  task_env env_;
  caf::actor directory_;
  task_record rec_;
  task_state st_;
  cron::schedule schedule_;
  int64_t next_run_ = 0;  // registered with the scheduler, 0: none
  int running_ = 0;
  int in_gate_ = 0;  // runs counted in env_.gate
  bool deleted_ = false;
  int commits_in_flight_ = 0;
  std::optional<reply_promise> erase_promise_;  // while the erase waits or commits
  bool counted_enabled_ = false;
  std::deque<pending_run> pending_;
  std::map<int64_t, reply_promise> waiting_;  // manual runs in flight, by seq
  std::deque<pending_update> updates_;        // the head is running
};

}  // namespace

due_times due_between(const cron::schedule& s, int64_t after_ms, int64_t now_ms, size_t keep) {
  due_times out;
  keep = std::max<size_t>(keep, 1);
  auto after_s = floor_s(after_ms), now_s = floor_s(now_ms);
  if (now_s <= after_s) return out;
  // The newest times are found in a window that grows back from now, so a long downtime of a
  // frequent schedule costs a few dozen steps, not one per missed time.
  for (int64_t window = 16;; window *= 16) {
    auto start = std::max(after_s, now_s - window);
    std::deque<int64_t> newest;
    size_t count = 0;
    auto t = s.next_after(cron::time_point{std::chrono::seconds{start}});
    while (t && t->time_since_epoch().count() <= now_s) {
      ++count;
      newest.push_back(static_cast<int64_t>(t->time_since_epoch().count()) * 1000);
      if (newest.size() > keep) newest.pop_front();
      t = s.next_after(*t);
    }
    if (start == after_s || count >= keep) {
      out.newest.assign(newest.begin(), newest.end());
      out.count = count;
      // Exact when nothing is due between the last handled time and the window.
      auto before = s.next_after(cron::time_point{std::chrono::seconds{after_s}});
      out.exact = start == after_s || !before || before->time_since_epoch().count() > start;
      return out;
    }
  }
}

caf::behavior task_actor(caf::event_based_actor* self, task_env env, caf::actor directory,
                         std::string id, std::string record, std::string state) {
  cron::schedule schedule;
  auto r = decode(record, &schedule);
  if (!r || r->id != id) {
    runtime::log_error("unreadable task record task/" + id + ", not started");
    self->send(directory, gone_atom::value, id);
    self->quit();
    return {};
  }
  auto s = state.empty() ? std::optional<task_state>{task_state{}} : decode_state(state);
  if (!s) runtime::log_error("unreadable scheduler state of task '" + id + "', reset");
  auto st = std::make_shared<task_state_machine>(self, std::move(env), std::move(directory),
                                                 std::move(*r), s.value_or(task_state{}),
                                                 std::move(schedule));
  self->attach_functor([st] { st->stopped(); });
  st->start();
  return {
      [st](get_atom, const std::string&) { return st->view(); },
      [st](update_atom, const std::string&, std::string& body, std::vector<std::string>& allowed,
           storage::version_list& if_match) {
        return st->update(std::move(body), std::move(allowed), std::move(if_match));
      },
      [st](erase_atom, const std::string&) { return st->erase(); },
      [st](run_atom, const std::string&) { return st->run_now(); },
      [st](runs_atom, const std::string&, int64_t before, uint32_t limit) {
        return st->runs(before, limit);
      },
      [st](fire_atom, int64_t at) { st->fire(at); },
  };
}

}  // namespace tessera::task
