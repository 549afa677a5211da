// task_machine's runs: see task_machine.hpp and task_actor.hpp's protocol.
#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "actors/task/run_history.hpp"
#include "actors/task/run_log.hpp"
#include "actors/task/task_machine.hpp"
#include "actors/task/task_run.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"
#include "runtime/committer.hpp"
#include "runtime/log.hpp"
#include "runtime/off_scheduler.hpp"

namespace tessera::task {

using json = nlohmann::json;

caf::result<std::string> task_machine::run_now() {
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

void task_machine::skip_run(const planned_skip& skip) {
  if (env_.metrics) {
    env_.metrics->count_skip(skip.reason);
    env_.metrics->count_run("skipped", std::chrono::milliseconds{0});
  }
  auto r = begin_run(rec_.id, ++st_.run_seq, skip.run, runtime::now_ms(), "skipped");
  r.error = {{"kind", skip.reason}, {"message", skip.message}};
  ops_t ops{{state_key(rec_.id), encode(st_), false},
            {run_key(rec_.id, r.seq), encode(r), false, adapters::write_op::absent}};
  if (skip.run.scheduled_for)
    ops.push_back(
        {claim_key(rec_.id, skip.run.scheduled_for), {}, false, adapters::write_op::absent});
  commit(std::move(ops), [this, seq = r.seq](caf::error err) {
    // A conflict: another node recorded this time, or took this run number: read the state.
    if (code_of(err) == errc::conflict) return reload_state([] {});
    if (!err && !deleted_) trim(seq, [] {});
  });
}

void task_machine::start_run(pending_run pending) {
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
  // Written ahead: the scheduled time counts as handled before the handler runs. The run
  // number and the time's claim must be free (another node may run this task too).
  ops_t ops{{state_key(rec_.id), encode(st_), false},
            {run_key(rec_.id, r->seq), encode(*r), false, adapters::write_op::absent},
            {running_key(rec_.id, r->seq), "", false}};
  if (run.scheduled_for)
    ops.push_back({claim_key(rec_.id, run.scheduled_for), {}, false, adapters::write_op::absent});
  auto retry = std::make_shared<pending_run>(pending);
  commit(std::move(ops), [this, r, retry](caf::error err) {
    if (code_of(err) == errc::conflict && !deleted_) return lost_start(std::move(*retry), r->seq);
    if (err || deleted_)
      return finish_run(r, caf::expected<storage::atomic_outcome>{err ? err : gone()});
    execute(r);
  });
}

// A start that conflicted: another node took this run number, or (a scheduled time) ran this
// time already. Nothing was written; the state is read again, then a manual run or a time
// nobody claimed starts again with the next free number.
void task_machine::lost_start(pending_run pending, int64_t seq) {
  // The run stays counted (busy, in the gate) until it starts again or is given up, so the
  // overlap policy and a shutdown see it meanwhile.
  waiting_.erase(seq);
  auto at = pending.run.scheduled_for;
  auto p = std::make_shared<pending_run>(std::move(pending));
  auto give_up = [this, p](std::optional<caf::error> err) {
    --running_;
    if (env_.gate && in_gate_ > 0) {
      --in_gate_;
      env_.gate->leave();
    }
    if (p->rp) {
      if (err)
        p->rp->deliver(*err);
      else
        p->rp->deliver(gone());
    }
    start_next();
  };
  reload_state([this, p, at, give_up] {
    if (deleted_) return give_up(std::nullopt);
    auto claimed = [store = env_.store, id = rec_.id, at]() -> caf::expected<bool> {
      if (!at) return false;
      auto v = store->get(claim_key(id, at));
      if (!v) return v.error();
      return v->has_value();
    };
    ++commits_in_flight_;  // a deletion waits for it
    runtime::off_scheduler(self_, env_.readers, env_.atomic.request_timeout, claimed)
        .then(
            [this, p, give_up](bool taken) {
              committed();
              if (deleted_) return give_up(std::nullopt);
              if (taken) {  // another node ran this time
                if (env_.metrics) env_.metrics->count_skip("claimed_elsewhere");
                return give_up(caf::error{});
              }
              if (++p->attempts >= 3)
                return give_up(
                    make_error(errc::conflict, "task '" + rec_.id +
                                                   "': other nodes kept taking its run numbers; "
                                                   "try again"));
              // Started again: counted anew by start_run.
              --running_;
              if (env_.gate && in_gate_ > 0) {
                --in_gate_;
                env_.gate->leave();
              }
              start_run(std::move(*p));
            },
            [this, give_up](caf::error& err) {
              committed();
              give_up(err);
            });
  });
}

void task_machine::execute(std::shared_ptr<run_record> r) {
  storage::run_atomically(
      self_, env_.atomic, rec_.storage_ids, "task '" + rec_.id + "'",
      schedule_call(rec_, *r, warm_key()), {}, {},
      [this, r](caf::expected<storage::atomic_outcome> out) { finish_run(r, std::move(out)); });
}

void task_machine::finish_run(std::shared_ptr<run_record> r,
                              caf::expected<storage::atomic_outcome> out) {
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
  // The run is answered once its record is durable and the runs it pushed out of the newest
  // env.keep_runs are deleted, so its requester reads the history trimmed.
  commit(std::move(ops), [this, seq = r->seq, deliver](caf::error err) {
    if (err || deleted_) return deliver(err);
    trim(seq, [deliver] { deliver({}); });
  });
}

// Deletes the finished runs that fall out of the newest env.keep_runs (with their logs): the
// history is read off the scheduler (env.readers), the deletes are one commit; then `then`.
// The read counts as a commit in flight, so a deletion of the task waits for it.
void task_machine::trim(int64_t seq, std::function<void()> then) {
  if (seq - static_cast<int64_t>(env_.keep_runs) + 1 <= 1) return then();
  std::set<int64_t> held;  // runs whose requesters still wait are kept
  for (auto& [s, _] : waiting_) held.insert(s);
  ++commits_in_flight_;
  runtime::off_scheduler(self_, env_.readers, env_.atomic.request_timeout,
                         [store = env_.store, id = rec_.id, seq, keep = env_.keep_runs,
                          held = std::move(held)]() -> caf::expected<ops_t> {
                           return trim_ops(*store, id, seq, keep,
                                           [&held](int64_t s) { return held.count(s) > 0; });
                         })
      .then(
          [this, then](ops_t& ops) {
            if (!ops.empty() && !deleted_)
              commit(std::move(ops), [then](caf::error) { then(); });
            else
              then();
            committed();
          },
          [this, then](caf::error& err) {
            runtime::log_error("task '" + rec_.id +
                               "': trimming its history failed: " + detail_of(err));
            then();
            committed();
          });
}

// Scheduled runs still waiting when the task is disabled or re-timed do not run.
void task_machine::cancel_queued() {
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

void task_machine::commit(ops_t ops, std::function<void(caf::error)> done) {
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

void task_machine::committed() {
  if (--commits_in_flight_ == 0 && deleted_ && erase_promise_) erase_history();
}

}  // namespace tessera::task
