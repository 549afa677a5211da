#include "actors/task/task_actor.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/sandbox/messages.hpp"
#include "actors/task/messages.hpp"
#include "actors/task/run_history.hpp"
#include "actors/task/task_machine.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"
#include "runtime/log.hpp"
#include "runtime/off_scheduler.hpp"

namespace tessera::task {

task_machine::task_machine(caf::event_based_actor* self, task_env env, directory_impl directory,
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

void task_machine::start() {
  count_enabled(rec_.enabled);
  owning_ = owns();
  if (owning_ && env_.took_schedule) env_.took_schedule(rec_.id);
  if (rec_.enabled && owning_) handle_due();
}

void task_machine::placed() {
  bool now = owns();
  if (now == owning_ || deleted_) return;
  owning_ = now;
  // Runs already queued here still run (their times count as handled in this node's state);
  // their claims decide against the new owner.
  if (!owning_) return unschedule();
  if (env_.took_schedule) env_.took_schedule(rec_.id);
  reload_state([this] {
    if (owning_ && rec_.enabled && !deleted_) handle_due();
  });
}

void task_machine::changed_elsewhere(const std::string& record) {
  if (deleted_) return;
  if (record.empty()) {  // deleted by another node, which deleted the history too
    deleted_ = true;
    end();
    return self_->quit();
  }
  cron::schedule schedule;
  auto r = decode(record, &schedule);
  // Newer; or created again (another created_at); or another node's update of the same
  // version won the race (what the store holds is the definition everywhere).
  if (!r || !(r->version > rec_.version || r->created_at != rec_.created_at ||
              (r->version == rec_.version && encode(*r) != encode(rec_))))
    return;
  auto old_key = warm_key();
  bool limits_changed = r->timeout_ms != rec_.timeout_ms;
  rec_ = std::move(*r);
  schedule_ = std::move(schedule);
  if (old_key != warm_key() || limits_changed) sandbox::discard_warm(env_.atomic.sandbox, old_key);
  count_enabled(rec_.enabled);
  // The updating node moved the state on (a re-timing's start): read it, then plan.
  reload_state([this] {
    if (deleted_) return;
    if (rec_.enabled && owning_)
      handle_due();
    else
      reschedule();
  });
}

void task_machine::reload_state(std::function<void()> then) {
  ++commits_in_flight_;  // a deletion waits for it
  runtime::off_scheduler(self_, env_.readers, env_.atomic.request_timeout,
                         [store = env_.store, id = rec_.id]() -> caf::expected<std::string> {
                           auto value = store->get(state_key(id));
                           if (!value) return value.error();
                           task_state s;
                           if (*value)
                             if (auto d = decode_state(**value)) s = std::move(*d);
                           auto newest = newest_run_seq(*store, id);
                           if (!newest) return newest.error();
                           s.run_seq = std::max(s.run_seq, *newest);
                           return encode(s);  // (task_state is no message type)
                         })
      .then(
          [this, then](std::string& encoded) {
            auto s = decode_state(encoded).value_or(task_state{});
            st_.last_scheduled = std::max(st_.last_scheduled, s.last_scheduled);
            st_.run_seq = std::max(st_.run_seq, s.run_seq);
            if (s.last_run > st_.last_run) {
              st_.last_run = s.last_run;
              st_.last_status = s.last_status;
            }
            committed();
            then();
          },
          [this, then](caf::error& err) {
            runtime::log_error("task '" + rec_.id + "': cannot read its state: " + detail_of(err));
            committed();
            then();
          });
}

void task_machine::stopped() {
  count_enabled(false);
  for (; in_gate_ > 0; --in_gate_) env_.gate->leave();  // runs cut off by the actor's end
}

std::string task_machine::view() const {
  return to_json(rec_, st_, next_run_, running_ > 0).dump();
}

void task_machine::fire(int64_t at) {
  if (deleted_ || !rec_.enabled || !owning_ || at != next_run_) return;  // superseded
  // Shutting down: the time stays due (not marked handled), so the next start finds it.
  if (env_.gate && env_.gate->closed()) return;
  next_run_ = 0;
  handle_due();
}

// A page of the history, read off the scheduler (env.readers).
caf::result<std::string> task_machine::runs(int64_t before, uint32_t limit) {
  auto rp = self_->make_response_promise<std::string>();
  runtime::off_scheduler(self_, env_.readers, env_.atomic.request_timeout,
                         [store = env_.store, id = rec_.id, before, limit] {
                           return runs_page(*store, id, before, limit);
                         })
      .then([rp](std::string& page) mutable { rp.deliver(std::move(page)); },
            [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

// This task's runs share a warm process while its handler stays the same (none when the
// task asks for a fresh process per run).
std::string task_machine::warm_key() const {
  if (rec_.fresh_process) return {};
  return sandbox::reuse_key("task:" + rec_.id, rec_.handler, {});
}

caf::error task_machine::gone() const {
  return make_error(errc::not_found, "task '" + rec_.id + "' was deleted");
}

void task_machine::count_enabled(bool on) {
  if (on == counted_enabled_ || !env_.metrics) return;
  counted_enabled_ = on;
  env_.metrics->add_enabled(on ? 1 : -1);
}

void task_machine::unschedule() {
  next_run_ = 0;
  self_->send(env_.scheduler, schedule_atom::value, rec_.id, int64_t{0}, caf::actor{self_});
}

void task_machine::reschedule() {
  if (deleted_ || !rec_.enabled || !owning_) return unschedule();
  next_run_ = next_fire(schedule_, st_.last_scheduled, runtime::now_ms());
  self_->send(env_.scheduler, schedule_atom::value, rec_.id, next_run_, caf::actor{self_});
}

// Every scheduled time after the last one handled, up to now, is due (see the header).
void task_machine::handle_due() {
  if (!owning_) return reschedule();
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
void task_machine::decide(planned_run run) {
  auto d = on_due(rec_.overlap, busy(), !pending_.empty());
  if (d.action == overlap_action::start) return start_run({std::move(run), std::nullopt});
  if (d.action == overlap_action::queue) return pending_.push_back({std::move(run), std::nullopt});
  skip_run({std::move(run), "overlap", std::move(d.message)});
}

void task_machine::start_next() {
  if (running_ > 0 || pending_.empty() || deleted_) return;
  auto run = std::move(pending_.front());
  pending_.pop_front();
  start_run(std::move(run));
}

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
  auto st =
      std::make_shared<task_machine>(self, std::move(env), std::move(directory), std::move(*r),
                                     s.value_or(task_state{}), std::move(schedule));
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
      [st](placed_atom) { st->placed(); },
      [st](storage::refresh_atom, const std::string&, const std::string& record) {
        st->changed_elsewhere(record);
      },
  };
}

}  // namespace tessera::task
