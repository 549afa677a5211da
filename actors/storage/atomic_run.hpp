// Runs user code on a consistent snapshot of storages and commits what it changed atomically.
// Panel actions and task runs both go through here.
//
// Contract: `run_atomically` runs on the calling actor and calls `done` exactly once on it,
// from an ordinary reply handler (never awaited: CAF 0.17 mishandles an await issued inside an
// awaited reply's handler). An attempt reads every storage of `ids` (a missing one is {} at
// version 0), asks the sandbox to run `make_call(snapshot)`, checks the untrusted answer (only
// storages of `ids` holding JSON objects may appear in its "changed"), and commits the changed
// storages through a storage transaction (transaction.hpp) that also checks that the unchanged
// ones are still at the versions read. A conflict re-runs on fresh state; after
// `env.max_retries` conflicts, one last attempt locks the storages first, which cannot
// conflict. A caller that knows the state (what its last run committed, not changed since as
// far as it has heard) passes it in `start`, possibly with the answer of a call it already
// made on it: the first attempt runs on that without reading (and without calling). A stale
// state costs only a conflict and a re-run on a fresh read, since the commit checks every
// version, and versions never repeat. A commit that changes exactly one existing storage
// is that storage's conditional replace (If-Match the version read, with the commit budget
// below as the deadline for its turn), which goes in the storage's own write batch without a
// transaction actor. No attempt starts, and no locked call runs, once the budget is gone.
// Every commit's wait is the smaller of request_timeout and what is left
// of `env.deadline` less a second (none left: `timeout`, nothing committed), and a storage
// busy past it writes nothing; so `timeout` means nothing was committed, unless the commit
// itself (RocksDB) or a mailbox stalled for over a second. Outcomes: the answer and
// the snapshot as committed (changed storages one version up, with their new data) | sandbox_failed
// (the call's answer as detail; nothing committed) | the transaction's errors (storage_failure,
// timeout) | what `hooks.before_attempt` returned.
#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "actors/sandbox/messages.hpp"
#include "actors/storage/messages.hpp"
#include "adapters/error.hpp"
#include "config/settings.hpp"
#include "runtime/committer.hpp"

namespace tessera::storage {

struct snapshot_entry {
  std::string data = "{}";  // JSON object text
  int64_t version = 0;      // 0: the storage does not exist
};

using snapshot = std::map<std::string, snapshot_entry>;

namespace detail {
// Counts the replies of several requests down and reports the first error once all are in.
struct gather {
  size_t left;
  caf::error first_error;
  std::function<void(caf::error)> done;

  void report(caf::error err) {
    if (err && !first_error) first_error = std::move(err);
    if (--left == 0) done(std::move(first_error));
  }
};
}  // namespace detail

// Reads every storage in `ids` through the storage directory (a missing one is {} at 0).
void read_snapshot(caf::event_based_actor* self, const directory_actor& storages,
                   std::chrono::milliseconds timeout, const std::vector<std::string>& ids,
                   std::function<void(caf::expected<snapshot>)> done);

std::map<std::string, int64_t> versions_of(const snapshot& s);

// Creates each storage of `ids` that does not exist, with its data from `defaults` (JSON
// object text) or {}; existing ones are left alone. `done` gets the first error, or none.
// (`Self`: any event-based actor, typed or not.)
template <class Self>
void create_missing(Self* self, const directory_actor& storages, std::chrono::milliseconds timeout,
                    const std::vector<std::string>& ids,
                    const std::map<std::string, std::string>& defaults,
                    std::function<void(caf::error)> done) {
  if (ids.empty()) return done({});
  auto g = std::make_shared<detail::gather>(detail::gather{ids.size(), {}, std::move(done)});
  for (auto& id : ids) {
    auto d = defaults.find(id);
    self->request(storages, timeout, create_atom::value, id,
                  d == defaults.end() ? std::string{"{}"} : d->second)
        .then([g](storage_record&) { g->report({}); },
              [g](caf::error& err) {
                g->report(code_of(err) == errc::conflict ? caf::error{} : err);
              });
  }
}

// {"id": data, ...} of a snapshot, the data spliced in as it is (no re-encoding).
std::string storage_object(const snapshot& s);

struct atomic_env {
  directory_actor storages;                      // storage directory
  sandbox::sandbox_actor sandbox;                // sandbox supervisor
  runtime::committer_actor committer;            // group committer
  std::chrono::milliseconds request_timeout{0};  // reads, commits
  std::chrono::milliseconds call_timeout{0};     // one sandbox call, queueing included
  int max_retries = 0;
  // When the run's caller stops waiting for its answer (a panel action: its HTTP or WebSocket
  // request's deadline). No commit starts within a second of it, and a commit's own wait is
  // bounded by it, so an outcome of `timeout` the caller never sees cannot land later.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();

  // The waits of config::actor_wait and config::user_code_wait, panels.max_retries; the
  // actors are the caller's to set.
  static atomic_env from_settings(const config::settings& s) {
    atomic_env e;
    e.request_timeout = config::actor_wait(s);
    e.call_timeout = config::user_code_wait(s);
    e.max_retries = static_cast<int>(s.panel_max_retries);
    return e;
  }
};

struct atomic_hooks {
  std::function<caf::error()> before_attempt;  // an error ends the run with it
  std::function<void()> conflict;              // a commit lost to a concurrent change
  std::function<void()> retry;                 // an optimistic re-run follows
  std::function<void()> locked;                // the locked attempt starts
  // The first attempt's answer is in and its commit starts (never on a retry: the caller's
  // next run then reads afresh): `after` is the state it leaves if it commits (changed storages one
  // version up, with their new data). A caller may start the call of its next run on it meanwhile
  // (atomic_start::answer).
  std::function<void(const snapshot& after)> committing;
};

// How a run's first attempt starts. Default: it reads the storages and calls the sandbox.
struct atomic_start {
  // The state the caller knows (what its last run committed, unchanged as far as it has
  // heard): the first attempt runs on it without reading, when it names exactly the run's ids.
  std::optional<snapshot> known;
  // With `known`: the first attempt's call was made by the caller ahead of time, on `known`.
  // Given a continuation, it calls it once with that call's result, or with nullopt to have
  // the call made now. Its answer is checked like any other.
  using answer_source =
      std::function<void(std::function<void(std::optional<sandbox::call_result>)>)>;
  answer_source answer;
};

struct atomic_outcome {
  snapshot after;         // the state committed: changed storages at version + 1, new data
  nlohmann::json answer;  // the sandbox's answer ("changed" checked, always an object)
  int conflicts = 0;      // commits lost to concurrent changes before this one
};

// `owner` names the caller in error messages ("panel 'todo'").
void run_atomically(caf::event_based_actor* self, const atomic_env& env,
                    std::vector<std::string> ids, std::string owner,
                    std::function<sandbox::call(const snapshot&)> make_call, atomic_hooks hooks,
                    atomic_start start, std::function<void(caf::expected<atomic_outcome>)> done);

}  // namespace tessera::storage
