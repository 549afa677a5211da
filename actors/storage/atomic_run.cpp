#include "actors/storage/atomic_run.hpp"

#include <caf/all.hpp>

#include "actors/storage/messages.hpp"
#include "actors/storage/transaction.hpp"
#include "adapters/error.hpp"
#include "runtime/committer.hpp"

namespace tessera::storage {
namespace {

using json = nlohmann::json;

// Calls `done` once every one of `n` parts has reported; the first error wins.
using detail::gather;

// One run: its attempts share this state.
struct run_state : std::enable_shared_from_this<run_state> {
  caf::event_based_actor* self;
  atomic_env env;
  std::vector<std::string> ids;
  std::string owner;
  std::function<sandbox::call(const snapshot&)> make_call;
  atomic_hooks hooks;
  atomic_start start;  // the first attempt's state and answer, instead of a read and a call
  std::function<void(caf::expected<atomic_outcome>)> done;
  int conflicts = 0;

  void attempt() {
    if (hooks.before_attempt)
      if (auto err = hooks.before_attempt()) return done(err);
    if (out_of_time()) return done(too_late());  // a call now would be wasted
    if (conflicts > env.max_retries) return locked_attempt();
    auto me = shared_from_this();
    auto run_on = [me](caf::expected<snapshot> s) {
      if (!s) return me->done(s.error());
      auto snap = std::make_shared<snapshot>(std::move(*s));
      me->call(*snap, [me, snap](caf::expected<json> answer) {
        if (!answer) return me->done(answer.error());
        me->commit_optimistic(std::move(*snap), std::move(*answer));
      });
    };
    if (start.known) {
      auto first = std::exchange(start, {});  // a conflict re-runs on a fresh read
      if (names_exactly(*first.known, ids)) {
        if (!first.answer) return run_on(std::move(*first.known));
        auto snap = std::make_shared<snapshot>(std::move(*first.known));
        return first.answer([me, snap](std::optional<sandbox::call_result> r) {
          auto then = [me, snap](caf::expected<json> answer) {
            if (!answer) return me->done(answer.error());
            me->commit_optimistic(std::move(*snap), std::move(*answer));
          };
          if (!r) return me->call(*snap, then);
          then(me->checked(*snap, *r));
        });
      }
    }
    read_snapshot(self, env.storages, env.request_timeout, ids, std::move(run_on));
  }

  static bool names_exactly(const snapshot& s, const std::vector<std::string>& ids) {
    if (s.size() != ids.size()) return false;
    for (auto& id : ids)
      if (!s.count(id)) return false;
    return true;
  }

  // Runs the call on `s`; the answer is untrusted (a hostile handler can forge it), so only
  // storages of `ids` holding objects pass.
  void call(const snapshot& s, std::function<void(caf::expected<json>)> then) {
    auto bound = std::make_shared<snapshot>(s);
    self->request(env.sandbox, env.call_timeout, sandbox::run_atom::value, make_call(s))
        .then([me = shared_from_this(), then,
               bound](sandbox::call_result& r) { then(me->checked(*bound, r)); },
              [then](caf::error& err) { then(err); });
  }

  caf::expected<json> checked(const snapshot& s, const sandbox::call_result& r) const {
    if (!sandbox::is_ok(r)) return make_error(errc::sandbox_failed, r.body);
    auto answer = json::parse(r.body, nullptr, false);
    if (!answer.is_object()) answer = json::object();
    if (!answer.contains("changed") || !answer["changed"].is_object())
      answer["changed"] = json::object();
    for (auto& [id, data] : answer["changed"].items())
      if (!s.count(id) || !data.is_object())
        return make_error(errc::sandbox_failed,
                          sandbox::failed_result("invalid_result", "ValueError",
                                                 "the handler returned storage '" + id +
                                                     "', which is not an object bound to " + owner)
                              .body);
    return answer;
  }

  // What `s` becomes if `answer` commits.
  static snapshot after_commit(snapshot s, const json& answer) {
    for (auto& [id, data] : answer["changed"].items()) {
      s[id].version += 1;
      s[id].data = data.dump();
    }
    return s;
  }

  void commit_optimistic(snapshot s, json answer) {
    const json& changed = answer["changed"];
    std::vector<txn_entry> entries;
    for (auto& [id, entry] : s)
      entries.push_back({id, entry.version, changed.contains(id) ? changed[id].dump() : ""});
    // (After a conflict the caller reads afresh, so a call made on this state would be wasted.)
    if (hooks.committing && conflicts == 0) hooks.committing(after_commit(s, answer));
    if (entries.size() == 1 && !entries[0].data.empty() && entries[0].expected > 0)
      return replace_one(std::move(s), std::move(answer), std::move(entries[0]));
    auto budget = commit_budget();
    if (budget.count() <= 0) return done(too_late());
    auto txn = self->spawn(transaction, env.storages, env.committer, budget);
    self->request(txn, budget + std::chrono::seconds(1), runtime::commit_atom::value,
                  std::move(entries))
        .then([me = shared_from_this(), snap = std::move(s),
               answer](caf::ok_atom) mutable { me->committed(std::move(snap), std::move(answer)); },
              [me = shared_from_this()](caf::error& err) { me->commit_failed(err); });
  }

  // How long a commit may take: request_timeout, or less when the caller's deadline is
  // nearer (a second is kept for the answer's way back). Zero or less: too late to commit.
  std::chrono::milliseconds commit_budget() const {
    if (env.deadline == std::chrono::steady_clock::time_point::max()) return env.request_timeout;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        env.deadline - std::chrono::steady_clock::now() - std::chrono::seconds(1));
    return std::min(env.request_timeout, left);
  }

  bool out_of_time() const { return commit_budget().count() <= 0; }

  caf::error too_late() const {
    return make_error(errc::timeout,
                      owner + "'s caller stopped waiting before the commit; nothing was committed");
  }

  // One existing storage changed: its own conditional replace is the whole transaction (the
  // storage checks the version and commits in its write batch, in one request). The replace
  // has a deadline of its own (the commit budget), and the request waits a second longer, so
  // a storage held past it (by a locked transaction) answers `timeout` having written
  // nothing, rather than committing after this run has answered `timeout`, which a retry
  // would apply twice. As with the transaction, only a commit that itself stalls past that
  // second leaves the outcome unknown.
  void replace_one(snapshot s, json answer, txn_entry e) {
    auto budget = commit_budget();
    if (budget.count() <= 0) return done(too_late());
    self->request(env.storages, budget + std::chrono::seconds(1), replace_atom::value, e.id,
                  std::move(e.data), version_list{e.expected}, static_cast<int64_t>(budget.count()))
        .then(
            [me = shared_from_this(), snap = std::move(s), answer](storage_record& r) mutable {
              snap[r.id] = {std::move(r.data), r.version};
              me->done(atomic_outcome{std::move(snap), std::move(answer), me->conflicts});
            },
            [me = shared_from_this()](caf::error& err) {
              // conflict: the store's fence (another server wrote since this one read);
              // nothing was written, and the storage reads afresh on the next attempt.
              auto code = code_of(err);
              if (code == errc::precondition_failed || code == errc::not_found ||
                  code == errc::conflict)
                return me->commit_failed(make_error(errc::conflict, detail_of(err)));
              me->done(err);
            });
  }

  void commit_failed(const caf::error& err) {
    if (code_of(err) != errc::conflict) return done(err);
    if (hooks.conflict) hooks.conflict();
    if (++conflicts <= env.max_retries && hooks.retry) hooks.retry();
    attempt();  // on fresh state (locked once retries are used up)
  }

  // The last attempt: the transaction locks every storage first (other writers wait), hands
  // over what they hold, and commits what the call changed.
  void locked_attempt() {
    if (hooks.locked) hooks.locked();
    auto hold = env.call_timeout + env.request_timeout;
    auto txn = self->spawn(transaction, env.storages, env.committer, hold);
    self->request(txn, hold, lock_atom::value, ids)
        .then(
            [me = shared_from_this(), txn, hold](std::vector<txn_entry>& held) {
              if (me->out_of_time()) {  // locked too late: unlock at once
                me->self->request(txn, hold, runtime::commit_atom::value, std::vector<txn_entry>{})
                    .then([me](caf::ok_atom) { me->done(me->too_late()); },
                          [me](caf::error& err) { me->done(err); });
                return;
              }
              snapshot s;
              for (auto& e : held) s[e.id] = {std::move(e.data), e.expected};
              auto snap = std::make_shared<snapshot>(std::move(s));
              me->call(*snap, [me, txn, hold, snap](caf::expected<json> answer) {
                std::vector<txn_entry> writes;
                if (answer && me->out_of_time()) answer = me->too_late();
                if (answer)
                  for (auto& [id, data] : (*answer)["changed"].items())
                    writes.push_back({id, 0, data.dump()});
                // Without writes this only unlocks the storages.
                me->self->request(txn, hold, runtime::commit_atom::value, std::move(writes))
                    .then(
                        [me, snap, answer](caf::ok_atom) {
                          if (!answer) return me->done(answer.error());
                          me->committed(*snap, *answer);
                        },
                        [me](caf::error& err) { me->done(err); });
              });
            },
            [me = shared_from_this()](caf::error& err) { me->done(err); });
  }

  void committed(snapshot s, json answer) {
    auto after = after_commit(std::move(s), answer);
    done(atomic_outcome{std::move(after), std::move(answer), conflicts});
  }
};

}  // namespace

void read_snapshot(caf::event_based_actor* self, const directory_actor& storages,
                   std::chrono::milliseconds timeout, const std::vector<std::string>& ids,
                   std::function<void(caf::expected<snapshot>)> done) {
  if (ids.empty()) return done(snapshot{});
  auto result = std::make_shared<snapshot>();
  auto g = std::make_shared<gather>(gather{ids.size(), {}, [result, done](caf::error err) {
                                             if (err) return done(err);
                                             done(std::move(*result));
                                           }});
  for (auto& id : ids) {
    self->request(storages, timeout, read_atom::value, id)
        .then(
            [result, g, id](storage_record& r) {
              (*result)[id] = {std::move(r.data), r.version};
              g->report({});
            },
            [result, g, id](caf::error& err) {
              if (code_of(err) == errc::not_found) {
                (*result)[id] = {};
                return g->report({});
              }
              g->report(err);
            });
  }
}

std::map<std::string, int64_t> versions_of(const snapshot& s) {
  std::map<std::string, int64_t> out;
  for (auto& [id, entry] : s) out[id] = entry.version;
  return out;
}

std::string storage_object(const snapshot& s) {
  std::string out = "{";
  for (auto& [id, entry] : s) {
    if (out.size() > 1) out += ',';
    out += json(id).dump() + ":" + entry.data;
  }
  return out + "}";
}

void run_atomically(caf::event_based_actor* self, const atomic_env& env,
                    std::vector<std::string> ids, std::string owner,
                    std::function<sandbox::call(const snapshot&)> make_call, atomic_hooks hooks,
                    atomic_start start, std::function<void(caf::expected<atomic_outcome>)> done) {
  auto st = std::make_shared<run_state>();
  st->self = self;
  st->env = env;
  st->ids = std::move(ids);
  st->owner = std::move(owner);
  st->make_call = std::move(make_call);
  st->hooks = std::move(hooks);
  st->start = std::move(start);
  st->done = std::move(done);
  st->attempt();
}

}  // namespace tessera::storage
