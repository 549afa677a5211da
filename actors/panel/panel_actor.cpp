#include "actors/panel/panel_actor.hpp"

#include <caf/all.hpp>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "actors/common/definition_update.hpp"
#include "actors/panel/action_batch.hpp"
#include "actors/panel/call_ahead.hpp"
#include "actors/panel/panel_ops.hpp"
#include "actors/panel/panel_renderer.hpp"
#include "actors/sandbox/messages.hpp"
#include "actors/storage/atomic_run.hpp"
#include "actors/storage/messages.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"
#include "runtime/committer.hpp"
#include "runtime/log.hpp"

namespace tessera::panel {
namespace {

using clock = std::chrono::steady_clock;
using json = nlohmann::json;
using reply_promise = caf::typed_response_promise<std::string>;

struct pending_action {
  std::string action;
  std::string payload;
  reply_promise rp;
  clock::time_point start = clock::now();
  bool alone = false;  // its batch failed as a whole: it runs in a call of its own
  uint64_t seq = 0;    // arrival number
};

class panel_state {
 public:
  panel_state(caf::event_based_actor* self, panel_env env, directory_impl directory, panel_record r)
      : self_(self),
        env_(std::move(env)),
        directory_(std::move(directory)),
        rec_(std::move(r)),
        updates_(self, [this](const actors::update_request& u, actors::definition_done done) {
          run_update(u, std::move(done));
        }) {}

  const panel_record& record() const { return rec_; }

  // --- renders -------------------------------------------------------------------------------

  caf::result<std::string> render() { return renders_.render(); }
  void retry_render() { renders_.retry(); }

  void storage_changed(const std::string& id, int64_t version) {
    auto& heard = heard_[id];
    heard = std::max(heard, version);
    if (known_) {
      auto it = known_->find(id);
      if (it == known_->end() || it->second.version != version) known_.reset();
    }
    if (!renders_.shows(id, version)) renders_.changed();
  }

  // --- actions -------------------------------------------------------------------------------

  caf::result<std::string> action(std::string name, std::string payload) {
    auto rp = self_->make_response_promise<std::string>();
    if (rec_.handler.empty()) {
      rp.deliver(make_error(errc::invalid_argument, "panel '" + rec_.id + "' has no handler"));
      return rp;
    }
    if (actions_.size() >= max_queued_actions) {
      rp.deliver(make_error(errc::unavailable, "panel '" + rec_.id + "' has " +
                                                   std::to_string(actions_.size()) +
                                                   " actions waiting; try again later"));
      return rp;
    }
    actions_.push_back({std::move(name), std::move(payload), rp});
    actions_.back().seq = next_seq_++;
    if (!acting_) next_action();
    return rp;
  }

  // --- definition ----------------------------------------------------------------------------

  // Updates run one at a time, each validated against the result of the previous one.
  caf::result<std::string> update(actors::update_request u) { return updates_.push(std::move(u)); }

  caf::result<std::string> erase() {
    auto rp = self_->make_response_promise<std::string>();
    std::vector<adapters::write_op> ops{{panel_key(rec_.id), {}, true}};
    self_
        ->request(env_.atomic.committer, env_.atomic.request_timeout, runtime::commit_atom::value,
                  ops)
        .await(
            [this, rp](caf::ok_atom) mutable {
              deleted();
              rp.deliver(std::string{R"({"success":true})"});
              self_->quit();
            },
            [rp](caf::error& err) mutable { rp.deliver(err); });
    return rp;
  }

  // Another node changed this panel: `value` is its record now (empty: deleted).
  void changed_elsewhere(const std::string& value) {
    if (value.empty()) {
      deleted();
      return self_->quit();
    }
    auto r = decode(value, env_.limits);
    if (!r) return runtime::log_error("unreadable panel record for " + rec_.id);
    // Newer; or created again (another created_at); or another node's update of the same
    // version won the race (what the store holds is the definition everywhere).
    if (r->version > rec_.version || r->created_at != rec_.created_at ||
        (r->version == rec_.version && encode(*r) != encode(rec_)))
      adopt(std::move(*r));
  }

  caf::result<std::string> export_bundle() {
    auto rp = self_->make_response_promise<std::string>();
    auto& e = env_.atomic;
    storage::read_snapshot(
        self_, e.storages, e.request_timeout, rec_.storage_ids,
        [this, rp](caf::expected<snapshot> s) mutable {
          if (!s) {
            rp.deliver(s.error());
            return;
          }
          auto meta = metadata_json(rec_);
          meta["timeout"] = static_cast<double>(rec_.timeout_ms) / 1000;
          meta["fresh_process"] = rec_.fresh_process;
          json storages = json::object();
          for (auto& [id, entry] : *s) storages[id] = json::parse(entry.data, nullptr, false);
          meta["storages"] = std::move(storages);
          rp.deliver(
              json{{"metadata", meta}, {"template", rec_.template_}, {"handler", rec_.handler}}
                  .dump());
        });
    return rp;
  }

 private:
  // Check the new code, create new storages, write the record, then make it current.
  void run_update(const actors::update_request& u, actors::definition_done done) {
    auto next = apply_update(rec_, json::parse(u.body, nullptr, false), u.allowed, env_.limits);
    if (!next) return done(next.error());
    if (auto err = actors::if_match_error(u.if_match, rec_.version, "panel '" + rec_.id + "'"))
      return done(err);
    auto candidate = std::make_shared<panel_record>(std::move(*next));
    actors::definition_change change;
    if (candidate->template_ != rec_.template_ || candidate->handler != rec_.handler)
      change.code = code_to_check(*candidate);
    change.storage_ids = candidate->storage_ids;
    change.write = [this, candidate](actors::definition_done d) { write(candidate, d); };
    actors::commit_definition(self_, env_.atomic, std::move(change), std::move(done));
  }

  // Commits an updated definition and makes it current.
  void write(std::shared_ptr<panel_record> candidate, actors::definition_done done) {
    candidate->version = rec_.version + 1;
    candidate->updated_at = std::max(runtime::now_ms(), rec_.updated_at);
    std::vector<adapters::write_op> ops{{panel_key(rec_.id), encode(*candidate), false}};
    self_
        ->request(env_.atomic.committer, env_.atomic.request_timeout, runtime::commit_atom::value,
                  ops)
        .then(
            [this, candidate, done](caf::ok_atom) {
              adopt(*candidate);
              done(to_json(rec_).dump());
            },
            [done](caf::error& err) { done(err); });
  }

  // Makes `next` the definition: what the old one cached is dropped, and the panel renders.
  void adopt(panel_record next) {
    bool rebound = next.storage_ids != rec_.storage_ids;
    auto old_key = warm_key(rec_);
    bool limits_changed = next.timeout_ms != rec_.timeout_ms;
    rec_ = std::move(next);
    ++definition_;
    known_.reset();
    if (rebound) heard_.clear();
    if (old_key != warm_key(rec_) || limits_changed)
      sandbox::discard_warm(env_.atomic.sandbox, old_key);
    if (rebound) self_->send(directory_, bound_atom::value, rec_.id, rec_.storage_ids);
    renders_.changed();
  }

  // The panel is gone (erased here or elsewhere): subscribers are told, waiting work is
  // answered not_found, and the directory forgets it; the caller then quits.
  void deleted() {
    if (env_.sink) env_.sink({render_event::kind::deleted, rec_.id, 0, {}});
    self_->send(directory_, gone_atom::value, rec_.id);
    auto gone = make_error(errc::not_found, "panel '" + rec_.id + "' was deleted");
    for (auto& a : actions_) a.rp.deliver(gone);
    renders_.fail_waiting(gone);
    updates_.fail_all(gone);
    actions_.clear();
    sandbox::discard_warm(env_.atomic.sandbox, warm_key(rec_));
  }

  // The run of the actions at the queue's head: it commits nothing once the oldest one's
  // requester has stopped waiting (web/ waits env.call_timeout for an action's answer).
  storage::atomic_env atomic_env() const {
    auto e = env_.atomic;
    if (!actions_.empty()) e.deadline = actions_.front().start + env_.atomic.call_timeout;
    return e;
  }

  // What an action run (one action or a batch) does between its attempts.
  storage::atomic_hooks action_hooks(size_t n) {
    storage::atomic_hooks hooks;
    hooks.committing = [this, n](const snapshot& after) { speculate(n, after); };
    hooks.before_attempt = [this]() -> caf::error {
      // Actions whose oldest caller has given up by now are not run.
      if (clock::now() - actions_.front().start > env_.atomic.call_timeout)
        return make_error(errc::timeout, "the action waited too long in its queue");
      action_generation_ = renders_.generation();
      return {};
    };
    if (env_.metrics) {
      hooks.conflict = [m = env_.metrics] { m->count_conflict(); };
      hooks.retry = [m = env_.metrics] { m->count_retry(); };
      hooks.locked = [m = env_.metrics] { m->count_locked_run(); };
    }
    return hooks;
  }

  // Runs the actions at the queue's head, up to env.max_batch in one sandbox call
  // (action_batch.hpp), through storage/atomic_run.hpp: optimistically up to env.max_retries
  // conflicts, then once more with the storages locked, which cannot conflict.
  void next_action() {
    if (actions_.empty()) {
      acting_ = false;
      return;
    }
    acting_ = true;
    auto start = ahead();
    size_t n = start.answer ? spec_->count : runnable(0);
    spec_.reset();
    if (n > 1) return next_batch(n, std::move(start));
    storage::run_atomically(
        self_, atomic_env(), rec_.storage_ids, "panel '" + rec_.id + "'", call_for(0, 1),
        action_hooks(1), std::move(start), [this](caf::expected<storage::atomic_outcome> out) {
          if (!out) return finish_action(out.error());
          remember_state(*out);
          const json& changed = out->answer["changed"];
          action_committed(out->after, out->answer, changed, action_generation_);
        });
  }

  void action_committed(const snapshot& s, const json& answer, const json& changed,
                        uint64_t generation) {
    auto version = renders_.committed(s, answer, generation);
    json ids = json::array();
    for (auto& [id, _] : changed.items()) ids.push_back(id);
    finish_action(
        action_reply(version, std::move(ids), answer.value("logs", json::array()), answer));
  }

  // The n actions at the queue's head in one call. The commit holds what the ones that
  // succeeded changed; each action gets its own reply. When the call fails as a whole (a
  // timeout, a crash, a forged answer) each action runs again in a call of its own, so each
  // gets its own outcome.
  void next_batch(size_t n, storage::atomic_start start) {
    if (env_.metrics) env_.metrics->count_batch(n);
    storage::run_atomically(
        self_, atomic_env(), rec_.storage_ids, "panel '" + rec_.id + "'", call_for(0, n),
        action_hooks(n), std::move(start), [this, n](caf::expected<storage::atomic_outcome> out) {
          if (out) remember_state(*out);
          auto outcomes = out ? split_batch(out->answer, n, out->after) : std::nullopt;
          bool failed_whole = out ? !outcomes : code_of(out.error()) == errc::sandbox_failed;
          if (failed_whole) {
            // (a forged answer may have committed: the ones run alone see that state)
            for (size_t i = 0; i < n; ++i) actions_[i].alone = true;
            return next_action();
          }
          if (!out) {
            for (size_t i = 0; i < n; ++i) finish_one(out.error());
            return next_action();
          }
          auto version = renders_.committed(out->after, out->answer, action_generation_);
          for (auto& o : *outcomes) {
            if (o.ok)
              finish_one(
                  action_reply(version, std::move(o.changed), std::move(o.logs), out->answer));
            else
              finish_one(make_error(errc::sandbox_failed, std::move(o.failure)));
          }
          next_action();
        });
  }

  // The next run starts on the state this one committed, without reading it, unless this one
  // had to retry (others write these storages too: the next run reads) or a change heard
  // meanwhile is newer. A state gone stale unheard costs one conflict (atomic_run.hpp).
  void remember_state(const storage::atomic_outcome& out) {
    if (out.conflicts > 0) return;
    for (auto& [id, entry] : out.after) {
      auto h = heard_.find(id);
      if (h != heard_.end() && h->second > entry.version) return;
    }
    known_ = out.after;
  }

  // How many actions from queue position `from` go in one call: up to env.max_batch, and one
  // alone when its batch failed as a whole.
  size_t runnable(size_t from) const {
    if (from >= actions_.size()) return 0;
    if (actions_[from].alone) return 1;
    size_t n = 1;
    while (from + n < actions_.size() && n < env_.max_batch && !actions_[from + n].alone) ++n;
    return n;
  }

  // The sandbox call of the `n` actions from queue position `from` (a batch when n > 1).
  std::function<sandbox::call(const snapshot&)> call_for(size_t from, size_t n) {
    std::vector<queued_action> batch;
    for (size_t i = from; i < from + n; ++i)
      batch.push_back({actions_[i].action, actions_[i].payload});
    return [this, batch = std::move(batch)](const snapshot& s) {
      auto body = batch.size() == 1 ? call_body(rec_, s, &batch[0].name, &batch[0].payload)
                                    : batch_body(rec_, s, batch);
      return sandbox::call{sandbox::call_kind::action, std::move(body), call_timeout_ms(rec_), 0,
                           warm_key(rec_)};
    };
  }

  // The run of the first `n` queued actions is committing, and would leave `after`: the
  // actions behind them get their call now, on that state, so the sandbox works while the
  // commit and its replies are on their way. Their own commit waits for this one (ahead()).
  void speculate(size_t n, const snapshot& after) {
    spec_.reset();  // an earlier attempt's guess
    size_t m = runnable(n);
    if (m == 0 || actions_[n].alone) return;
    auto sp = std::make_shared<call_ahead>();
    sp->first = actions_[n].seq;
    sp->count = m;
    sp->definition = definition_;
    sp->state = after;
    spec_ = sp;
    if (env_.metrics) env_.metrics->count_call_ahead(false);
    self_
        ->request(env_.atomic.sandbox, env_.atomic.call_timeout, sandbox::run_atom::value,
                  call_for(n, m)(after))
        .then([sp](sandbox::call_result& r) { sp->answer(std::move(r)); },
              [sp](caf::error&) { sp->answer(std::nullopt); });
  }

  // How the run at the queue's head starts: on the call made ahead for it when the run before
  // committed exactly the state that call saw (versions never repeat, so that commit's
  // If-Match then holds only if nothing else wrote since), else on the state the last run
  // committed, if any (remember_state), else on a read.
  storage::atomic_start ahead() {
    storage::atomic_start start{std::exchange(known_, std::nullopt), {}};
    auto sp = spec_;
    if (!sp) return start;
    bool usable = start.known && sp->first == actions_.front().seq &&
                  sp->count <= actions_.size() && sp->definition == definition_ &&
                  same_state(*start.known, sp->state);
    // (No action among them runs alone: speculate() made the call for runnable() actions.)
    if (!usable) return start;
    start.answer = [sp, m = env_.metrics](auto k) {
      sp->when_answered([k = std::move(k), m](std::optional<sandbox::call_result> r) {
        if (r && m) m->count_call_ahead(true);
        k(std::move(r));
      });
    };
    return start;
  }

  void finish_action(caf::expected<std::string> result) {
    finish_one(std::move(result));
    next_action();
  }

  void finish_one(caf::expected<std::string> result) {
    auto a = std::move(actions_.front());
    actions_.pop_front();
    if (env_.metrics)
      env_.metrics->count_action(result ? "ok"
                                 : code_of(result.error()) == errc::sandbox_failed
                                     ? sandbox::error_kind(detail_of(result.error()))
                                     : std::string{to_string(code_of(result.error()))},
                                 clock::now() - a.start);
    if (result)
      a.rp.deliver(std::move(*result));
    else
      a.rp.deliver(result.error());
  }

  caf::event_based_actor* self_;
  panel_env env_;
  directory_impl directory_;
  panel_record rec_;
  static constexpr size_t max_queued_actions = 1024;
  std::deque<pending_action> actions_;
  bool acting_ = false;
  uint64_t action_generation_ = 0;        // the generation the current attempt read
  std::optional<snapshot> known_;         // what the last action run committed (remember_state)
  std::shared_ptr<call_ahead> spec_;      // the call made ahead for the next run (speculate)
  uint64_t next_seq_ = 0;                 // the next action's arrival number
  uint64_t definition_ = 0;               // +1 per change of the panel's definition
  std::map<std::string, int64_t> heard_;  // the newest version heard of each bound storage
  actors::update_queue updates_;
  panel_renderer renders_{self_, env_, rec_};
};

}  // namespace

caf::behavior panel_actor(caf::event_based_actor* self, panel_env env, directory_impl directory,
                          panel_record record) {
  auto st =
      std::make_shared<panel_state>(self, std::move(env), std::move(directory), std::move(record));
  return {
      [st](get_atom, const std::string&) { return to_json(st->record()).dump(); },
      [st](update_atom, const std::string&, std::string& body, std::vector<std::string>& allowed,
           storage::version_list& if_match) {
        return st->update({std::move(body), std::move(allowed), std::move(if_match)});
      },
      [st](erase_atom, const std::string&) { return st->erase(); },
      [st](render_atom, const std::string&) { return st->render(); },
      [st](retry_atom) { st->retry_render(); },
      [st](action_atom, const std::string&, std::string& name, std::string& payload) {
        return st->action(std::move(name), std::move(payload));
      },
      [st](export_atom, const std::string&) { return st->export_bundle(); },
      [st](storage::changed_atom, const std::string& id, int64_t version) {
        st->storage_changed(id, version);
      },
      [st](storage::refresh_atom, const std::string&, const std::string& record) {
        st->changed_elsewhere(record);
      },
  };
}

}  // namespace tessera::panel
