// task_machine's definition updates and deletion: see task_machine.hpp and task_actor.hpp.
#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/common/definition_update.hpp"
#include "actors/sandbox/messages.hpp"
#include "actors/task/run_history.hpp"
#include "actors/task/task_machine.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"
#include "runtime/committer.hpp"
#include "runtime/off_scheduler.hpp"

namespace tessera::task {

using json = nlohmann::json;

caf::result<std::string> task_machine::update(actors::update_request u) {
  return updates_.push(std::move(u));
}

void task_machine::run_update(const actors::update_request& u, actors::definition_done done) {
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
void task_machine::write(std::shared_ptr<task_record> candidate, actors::definition_done done) {
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

caf::result<std::string> task_machine::erase() {
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

// The history may hold millions of keys: it is scanned off the scheduler, then deleted in
// one commit.
void task_machine::erase_history() {
  runtime::off_scheduler(self_, env_.atomic.request_timeout * 4,
                         [store = env_.store, id = rec_.id] { return erase_task_ops(*store, id); })
      .then([this](ops_t& ops) { erase_commit(std::move(ops)); },
            [this](caf::error& err) { erase_failed(err); });
}

// The task is gone (deleted here or elsewhere): waiting work is answered not_found, the
// directory told; the caller then quits.
void task_machine::end() {
  unschedule();
  count_enabled(false);
  self_->send(directory_, gone_atom::value, rec_.id);
  for (auto& p : pending_)
    if (p.rp) p.rp->deliver(gone());
  for (auto& [_, w] : waiting_) w.deliver(gone());
  updates_.fail_all(gone());
  pending_.clear();
  waiting_.clear();
  sandbox::discard_warm(env_.atomic.sandbox, warm_key());
}

void task_machine::erase_failed(const caf::error& err) {
  // Nothing was deleted: the task carries on as before.
  deleted_ = false;
  erase_promise_->deliver(err);
  erase_promise_.reset();
  reschedule();
  start_next();
}

void task_machine::erase_commit(ops_t ops) {
  self_
      ->request(env_.atomic.committer, env_.atomic.request_timeout * 4, runtime::commit_atom::value,
                std::move(ops))
      .then(
          [this](caf::ok_atom) {
            end();  // first: the reply finds the task gone from the metrics too
            erase_promise_->deliver(std::string{R"({"success":true})"});
            erase_promise_.reset();
            self_->quit();
          },
          [this](caf::error& err) { erase_failed(err); });
}

}  // namespace tessera::task
