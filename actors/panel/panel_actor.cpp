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
#include "actors/sandbox/messages.hpp"
#include "actors/storage/atomic_run.hpp"
#include "actors/storage/messages.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"
#include "runtime/committer.hpp"

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

// The outcome of a render: what subscribers and GET /render get.
struct rendered {
  bool ok = false;
  int64_t version = 0;
  std::string body;  // ok: HTML; else the sandbox's JSON answer (with "version")
};

std::string render_reply(const rendered& r) {
  return json{{"html", r.body}, {"version", r.version}}.dump();
}

caf::error render_failure(const rendered& r) { return make_error(errc::sandbox_failed, r.body); }

// A string member of an untrusted answer ("" when missing or not a string).
std::string string_member(const json& answer, const char* key) {
  if (!answer.is_object()) return {};
  auto it = answer.find(key);
  return it != answer.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

using retry_atom = caf::atom_constant<caf::atom("prretry")>;

class panel_state {
 public:
  panel_state(caf::event_based_actor* self, panel_env env, caf::actor directory, panel_record r)
      : self_(self),
        env_(std::move(env)),
        directory_(std::move(directory)),
        rec_(std::move(r)),
        updates_(self, [this](const actors::update_request& u, actors::definition_done done) {
          run_update(u, std::move(done));
        }) {}

  const panel_record& record() const { return rec_; }

  // --- renders -------------------------------------------------------------------------------

  // The cache is served only after reading that the bound storages are still at the versions
  // it showed: the change notice (storage_changed) can lose the race with a client's next
  // request, and a client that wrote a storage must see its write in the next render.
  caf::result<std::string> render() {
    auto rp = self_->make_response_promise<std::string>();
    if (!cache_valid_) {
      waiters_.push_back(rp);
      start_render();
      return rp;
    }
    read_bound([this, rp](caf::expected<snapshot> s) mutable {
      if (s && cache_valid_ && versions_of(*s) == cache_versions_) {
        if (cache_.ok)
          rp.deliver(render_reply(cache_));
        else
          rp.deliver(render_failure(cache_));
        return;
      }
      if (s && cache_valid_) changed();  // what the change notice will say
      waiters_.push_back(rp);
      start_render();
    });
    return rp;
  }

  void storage_changed(const std::string& id, int64_t version) {
    auto& heard = heard_[id];
    heard = std::max(heard, version);
    if (known_) {
      auto it = known_->find(id);
      if (it == known_->end() || it->second.version != version) known_.reset();
    }
    if (cache_valid_) {
      auto it = cache_versions_.find(id);
      if (it != cache_versions_.end() && it->second == version) return;  // the state we show
    }
    changed();
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
              if (env_.sink) env_.sink({render_event::kind::deleted, rec_.id, 0, {}});
              self_->send(directory_, gone_atom::value, rec_.id);
              auto gone = make_error(errc::not_found, "panel '" + rec_.id + "' was deleted");
              for (auto& a : actions_) a.rp.deliver(gone);
              for (auto& w : waiters_) w.deliver(gone);
              updates_.fail_all(gone);
              actions_.clear();
              waiters_.clear();
              rp.deliver(std::string{R"({"success":true})"});
              sandbox::discard_warm(env_.atomic.sandbox, warm_key());
              self_->quit();
            },
            [rp](caf::error& err) mutable { rp.deliver(err); });
    return rp;
  }

  caf::result<std::string> export_bundle() {
    auto rp = self_->make_response_promise<std::string>();
    read_bound([this, rp](caf::expected<snapshot> s) mutable {
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
          json{{"metadata", meta}, {"template", rec_.template_}, {"handler", rec_.handler}}.dump());
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
              bool rebound = candidate->storage_ids != rec_.storage_ids;
              auto old_key = warm_key();
              bool limits_changed = candidate->timeout_ms != rec_.timeout_ms;
              rec_ = *candidate;
              ++definition_;
              known_.reset();
              if (rebound) heard_.clear();
              if (old_key != warm_key() || limits_changed)
                sandbox::discard_warm(env_.atomic.sandbox, old_key);
              if (rebound) self_->send(directory_, bound_atom::value, rec_.id, rec_.storage_ids);
              changed();
              done(to_json(rec_).dump());
            },
            [done](caf::error& err) { done(err); });
  }

  void read_bound(std::function<void(caf::expected<snapshot>)> done) {
    storage::read_snapshot(self_, env_.atomic.storages, env_.atomic.request_timeout,
                           rec_.storage_ids, std::move(done));
  }

  // Something the cached render showed has changed.
  void changed() {
    if (rendering_ && generation_ != render_generation_ && env_.metrics)
      env_.metrics->count_coalesced();  // a render of a newer state is already due
    ++generation_;
    cache_valid_ = false;
    if (watched()) start_render();
  }

  bool watched() const { return env_.watched && env_.watched(rec_.id); }

  // Versions subscribers see never go down (a bound storage deleted or re-created, or
  // storages rebound, can lower the sum): a lower one becomes the last one + 1.
  int64_t stamp(int64_t computed) {
    last_version_ = computed >= last_version_ ? computed : last_version_ + 1;
    return last_version_;
  }

  // A render retried later rather than cached: the sandbox had no capacity, or a read failed.
  void retry_render_later() {
    if (retry_pending_ || !watched()) return;
    retry_pending_ = true;
    self_->delayed_send(self_, std::chrono::seconds(1), retry_atom::value);
  }

 public:
  void retry_render() {
    retry_pending_ = false;
    if (!cache_valid_ && watched()) start_render();
  }

 private:
  int64_t version_of(const snapshot& s) const {
    int64_t v = rec_.version;
    for (auto& [_, entry] : s) v += entry.version;
    return v;
  }

  // This panel's calls share a warm process while its code stays the same (none when the
  // panel asks for a fresh process per call).
  std::string warm_key() const {
    if (rec_.fresh_process) return {};
    return sandbox::reuse_key("panel:" + rec_.id, rec_.handler, rec_.template_);
  }

  void start_render() {
    if (rendering_) return;  // render_done() starts another if the state moved on
    rendering_ = true;
    render_generation_ = generation_;
    auto started = clock::now();
    read_bound([this, started](caf::expected<snapshot> s) {
      if (!s) return render_done(started, {}, s.error(), {});
      auto version = stamp(version_of(*s));
      auto versions = versions_of(*s);
      sandbox::call c{sandbox::call_kind::render, call_body(rec_, *s, nullptr, nullptr),
                      call_timeout_ms(rec_), 0, warm_key()};
      self_
          ->request(env_.atomic.sandbox, env_.atomic.call_timeout, sandbox::run_atom::value,
                    std::move(c))
          .then(
              [this, started, version, versions](sandbox::call_result& r) {
                rendered out{sandbox::is_ok(r), version, {}};
                if (out.ok) {
                  out.body = string_member(json::parse(r.body, nullptr, false), "html");
                } else {
                  auto answer = json::parse(r.body, nullptr, false);
                  if (answer.is_object()) answer["version"] = version;
                  out.body = answer.dump();
                }
                render_done(started, std::move(out), {}, versions);
              },
              [this, started](caf::error& err) { render_done(started, {}, err, {}); });
    });
  }

  void render_done(clock::time_point started, rendered out, caf::error err,
                   std::map<std::string, int64_t> versions) {
    rendering_ = false;
    if (env_.metrics)
      env_.metrics->count_render(err      ? std::string{to_string(code_of(err))}
                                 : out.ok ? "ok"
                                          : sandbox::error_kind(out.body),
                                 clock::now() - started);
    auto waiting = std::move(waiters_);
    waiters_.clear();
    auto kind = out.ok ? std::string{} : sandbox::error_kind(out.body);
    bool transient = !err && (kind == "overloaded" || kind == "unavailable");
    if (err || transient) {
      // Not cached and not published: subscribers keep the last good render until a retry.
      for (auto& w : waiting) {
        if (err)
          w.deliver(err);
        else
          w.deliver(render_failure(out));
      }
      retry_render_later();
    } else {
      if (generation_ == render_generation_) remember(out, std::move(versions));
      for (auto& w : waiting) {
        if (out.ok)
          w.deliver(render_reply(out));
        else
          w.deliver(render_failure(out));
      }
      publish(out);
    }
    if (watched() && generation_ != render_generation_) start_render();
  }

  void remember(const rendered& out, std::map<std::string, int64_t> versions) {
    cache_ = out;
    cache_versions_ = std::move(versions);
    cache_valid_ = true;
  }

  void publish(const rendered& out) {
    if (!env_.sink || !watched()) return;
    env_.sink({out.ok ? render_event::kind::render : render_event::kind::render_error, rec_.id,
               out.version, out.body});
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
      action_generation_ = generation_;
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
    auto version = committed_version(s, answer, generation);
    json ids = json::array();
    for (auto& [id, _] : changed.items()) ids.push_back(id);
    finish_action(
        action_reply(version, std::move(ids), answer.value("logs", json::array()), answer));
  }

  // The version of a committed state; its render (in `answer`) is published and cached only if
  // nothing else changed the panel or its storages meanwhile, otherwise the change that did
  // triggers a render of the newer state.
  int64_t committed_version(const snapshot& s, const json& answer, uint64_t generation) {
    bool current = generation_ == generation && !rendering_;
    auto version = current ? stamp(version_of(s)) : version_of(s);
    auto html = answer.find("html");
    if (current && html != answer.end() && html->is_string()) {
      rendered out{true, version, html->get<std::string>()};
      remember(out, versions_of(s));
      publish(out);
    }
    return version;
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
          auto version = committed_version(out->after, out->answer, action_generation_);
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
                           warm_key()};
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
  caf::actor directory_;
  panel_record rec_;
  static constexpr size_t max_queued_actions = 1024;
  int64_t last_version_ = 0;  // the highest version stamped
  bool retry_pending_ = false;
  // The render cache: valid while nothing it showed has changed.
  uint64_t generation_ = 0;         // +1 per change of the panel or a bound storage
  uint64_t render_generation_ = 0;  // the generation the render in flight started at
  bool rendering_ = false;
  bool cache_valid_ = false;
  rendered cache_;
  std::map<std::string, int64_t> cache_versions_;
  std::vector<reply_promise> waiters_;
  std::deque<pending_action> actions_;
  bool acting_ = false;
  uint64_t action_generation_ = 0;        // the generation the current attempt read
  std::optional<snapshot> known_;         // what the last action run committed (remember_state)
  std::shared_ptr<call_ahead> spec_;      // the call made ahead for the next run (speculate)
  uint64_t next_seq_ = 0;                 // the next action's arrival number
  uint64_t definition_ = 0;               // +1 per change of the panel's definition
  std::map<std::string, int64_t> heard_;  // the newest version heard of each bound storage
  actors::update_queue updates_;
};

}  // namespace

caf::behavior panel_actor(caf::event_based_actor* self, panel_env env, caf::actor directory,
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
  };
}

}  // namespace tessera::panel
