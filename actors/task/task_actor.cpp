#include "actors/task/task_actor.hpp"

#include <caf/all.hpp>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>

#include "actors/common/definition_update.hpp"
#include "actors/sandbox/messages.hpp"
#include "actors/storage/messages.hpp"
#include "actors/task/messages.hpp"
#include "actors/task/run_history.hpp"
#include "actors/task/run_log.hpp"
#include "actors/task/task_policy.hpp"
#include "actors/task/task_run.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"
#include "runtime/committer.hpp"
#include "runtime/log.hpp"
#include "runtime/off_scheduler.hpp"

namespace tessera::task {
namespace {

using json = nlohmann::json;
using reply_promise = caf::typed_response_promise<std::string>;
using ops_t = std::vector<adapters::write_op>;

// A run decided but not started (queued by queue_one or catch_up), or a manual one waiting.
struct pending_run {
  planned_run run;
  std::optional<reply_promise> rp;
};

class task_state_machine {
 public:
  task_state_machine(caf::event_based_actor* self, task_env env, directory_impl directory,
                     task_record r, task_state s, cron::schedule schedule)
      : self_(self),
        env_(std::move(env)),
        directory_(std::move(directory)),
        rec_(std::move(r)),
        st_(std::move(s)),
        schedule_(std::move(schedule)),
        updates_(self, [this](const actors::update_request& u, actors::definition_done done) {
          run_update(u, std::move(done));
        }) {}

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
    auto d = on_manual(rec_.overlap, rec_.id, busy(), !pending_.empty());
    pending_run run{{"manual", 0}, rp};
    if (d.action == overlap_action::refuse)
      rp.deliver(make_error(errc::conflict, d.message));
    else if (d.action == overlap_action::queue)
      pending_.push_back(std::move(run));
    else
      start_run(std::move(run));
    return rp;
  }

  caf::result<std::string> runs(int64_t before, uint32_t limit) const {
    auto page = runs_page(*env_.store, rec_.id, before, limit);
    if (!page) return page.error();
    return std::move(*page);
  }

  // --- definition ----------------------------------------------------------------------------

  caf::result<std::string> update(actors::update_request u) { return updates_.push(std::move(u)); }

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

  // The history may hold millions of keys: it is scanned off the scheduler, then deleted in
  // one commit.
  void erase_history() {
    runtime::off_scheduler(
        self_, env_.atomic.request_timeout * 4,
        [store = env_.store, id = rec_.id] { return erase_task_ops(*store, id); })
        .then([this](ops_t& ops) { erase_commit(std::move(ops)); },
              [this](caf::error& err) { erase_failed(err); });
  }

  void erase_failed(const caf::error& err) {
    // Nothing was deleted: the task carries on as before.
    deleted_ = false;
    erase_promise_->deliver(err);
    erase_promise_.reset();
    reschedule();
    start_next();
  }

  void erase_commit(ops_t ops) {
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
              updates_.fail_all(gone());
              pending_.clear();
              waiting_.clear();
              erase_promise_->deliver(std::string{R"({"success":true})"});
              erase_promise_.reset();
              sandbox::discard_warm(env_.atomic.sandbox, warm_key());
              self_->quit();
            },
            [this](caf::error& err) { erase_failed(err); });
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
    next_run_ = next_fire(schedule_, st_.last_scheduled, runtime::now_ms());
    self_->send(env_.scheduler, schedule_atom::value, rec_.id, next_run_, caf::actor{self_});
  }

  // Every scheduled time after the last one handled, up to now, is due (see the header).
  void handle_due() {
    auto plan =
        plan_due(schedule_, rec_.misfire, env_.max_catch_up, st_.last_scheduled, runtime::now_ms());
    st_.last_scheduled = plan.last_scheduled;
    if (plan.misfire && env_.metrics)
      env_.metrics->count_misfire(std::string{to_string(*plan.misfire)});
    for (auto& skip : plan.skips) skip_run(skip);
    if (plan.run) decide(std::move(*plan.run));
    for (auto& run : plan.queued) pending_.push_back({std::move(run), std::nullopt});
    if (!plan.queued.empty()) start_next();
    reschedule();
  }

  // A due scheduled run meets the overlap policy.
  void decide(planned_run run) {
    auto d = on_due(rec_.overlap, busy(), !pending_.empty());
    if (d.action == overlap_action::start) return start_run({std::move(run), std::nullopt});
    if (d.action == overlap_action::queue)
      return pending_.push_back({std::move(run), std::nullopt});
    skip_run({std::move(run), "overlap", std::move(d.message)});
  }

  void start_next() {
    if (running_ > 0 || pending_.empty() || deleted_) return;
    auto run = std::move(pending_.front());
    pending_.pop_front();
    start_run(std::move(run));
  }

  // --- runs ----------------------------------------------------------------------------------

  void skip_run(const planned_skip& skip) {
    if (env_.metrics) {
      env_.metrics->count_skip(skip.reason);
      env_.metrics->count_run("skipped", std::chrono::milliseconds{0});
    }
    auto r = begin_run(rec_.id, ++st_.run_seq, skip.run, runtime::now_ms(), "skipped");
    r.error = {{"kind", skip.reason}, {"message", skip.message}};
    ops_t ops{{state_key(rec_.id), encode(st_), false},
              {run_key(rec_.id, r.seq), encode(r), false}};
    trim(ops, r.seq);
    commit(std::move(ops), [](caf::error) {});
  }

  void start_run(pending_run pending) {
    auto& run = pending.run;
    if (env_.gate) {
      if (!env_.gate->enter()) {  // shutting down: no run starts
        if (pending.rp)
          pending.rp->deliver(make_error(errc::unavailable, "the server is shutting down"));
        return;
      }
      ++in_gate_;
    }
    auto r = std::make_shared<run_record>(
        begin_run(rec_.id, ++st_.run_seq, run, runtime::now_ms(), "running"));
    st_.last_run = r->started_at;
    if (run.scheduled_for && env_.metrics)
      env_.metrics->observe_lag(
          std::chrono::milliseconds{std::max<int64_t>(r->started_at - run.scheduled_for, 0)});
    ++running_;
    if (pending.rp) waiting_.emplace(r->seq, *pending.rp);
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
    storage::run_atomically(
        self_, env_.atomic, rec_.storage_ids, "task '" + rec_.id + "'",
        schedule_call(rec_, *r, warm_key()), {}, {},
        [this, r](caf::expected<storage::atomic_outcome> out) { finish_run(r, std::move(out)); });
  }

  void finish_run(std::shared_ptr<run_record> r, caf::expected<storage::atomic_outcome> out) {
    --running_;
    auto logs = settle_run(*r, out, runtime::now_ms());
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

  // Deletes the finished runs that fall out of the newest env.keep_runs (with their logs).
  void trim(ops_t& ops, int64_t seq) {
    auto more = trim_ops(*env_.store, rec_.id, seq, env_.keep_runs,
                         [this](int64_t s) { return waiting_.count(s) > 0; });
    ops.insert(ops.end(), more.begin(), more.end());
  }

  // Scheduled runs still waiting when the task is disabled or re-timed do not run.
  void cancel_queued() {
    std::deque<pending_run> keep;
    for (auto& p : pending_) {
      if (p.rp) {
        keep.push_back(std::move(p));
        continue;
      }
      skip_run({p.run, "cancelled",
                "the task was disabled or its schedule changed before this run started"});
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

  void run_update(const actors::update_request& u, actors::definition_done done) {
    if (deleted_) return done(gone());
    auto next = apply_update(rec_, json::parse(u.body, nullptr, false), u.allowed, env_.limits);
    if (!next) return done(next.error());
    if (auto err = actors::if_match_error(u.if_match, rec_.version, "task '" + rec_.id + "'"))
      return done(err);
    auto candidate = std::make_shared<task_record>(std::move(*next));
    actors::definition_change change;
    if (candidate->handler != rec_.handler) change.code = code_to_check(*candidate);
    // Storages newly bound are created empty, as at create.
    for (auto& id : candidate->storage_ids)
      if (std::find(rec_.storage_ids.begin(), rec_.storage_ids.end(), id) == rec_.storage_ids.end())
        change.storage_ids.push_back(id);
    change.write = [this, candidate](actors::definition_done d) { write(candidate, d); };
    actors::commit_definition(self_, env_.atomic, std::move(change), std::move(done));
  }

  // Commits an updated definition and makes it current.
  void write(std::shared_ptr<task_record> candidate, actors::definition_done done) {
    if (deleted_) return done(gone());  // deleted while the handler was being checked
    auto now = runtime::now_ms();
    candidate->version = rec_.version + 1;
    candidate->updated_at = std::max(now, rec_.updated_at);
    // Times before a re-timing are not misfires of the new schedule (in memory at once, so a
    // fire of the old schedule meanwhile cannot write an older time after this).
    auto change = on_redefine(rec_, *candidate, st_.last_scheduled, now);
    st_.last_scheduled = change.last_scheduled;
    bool stopped = change.stop_queued;
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
  }

  caf::event_based_actor* self_;
  task_env env_;
  directory_impl directory_;
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
  actors::update_queue updates_;
};

}  // namespace

caf::behavior task_actor(caf::event_based_actor* self, task_env env, directory_impl directory,
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
        return st->update({std::move(body), std::move(allowed), std::move(if_match)});
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
