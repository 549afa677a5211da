// How a panel's or a task's definition changes: the steps both kinds share when one is created
// or updated, and the queue that runs one definition's updates one at a time.
//
// Contract (everything runs on the owning actor `self`; every `done` is called exactly once, from
// an ordinary reply handler or at once, never awaited: CAF 0.17 mishandles an await issued
// inside an awaited reply's handler):
//   - commit_definition(): the code check when `code` is set (sandbox/code_check.hpp), then every
//     storage of `storage_ids` that does not exist created with its data from `defaults` (JSON
//     object text) or {}, then `write`, in which the kind commits the definition, makes it
//     current and gives the answer. The first failure ends it with its error: an update whose
//     code does not compile writes nothing and the old definition keeps serving.
//   - if_match_error(): precondition_failed naming `what` and its version, unless `if_match`
//     is empty or holds `version`.
//   - update_queue: push() queues an update and returns its reply's promise. Updates run one
//     at a time in arrival order, each through the kind's `run` (which reads the request before
//     it returns), so each is validated against the result of the previous one; the next
//     starts when `run` calls its `done`.
//     fail_all(err) answers every queued update with `err` (the definition was deleted); a
//     `done` of an update already running is then ignored.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/fwd.hpp>
#include <caf/typed_response_promise.hpp>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "actors/common/actor_directory.hpp"
#include "actors/sandbox/code_check.hpp"
#include "actors/storage/atomic_run.hpp"
#include "actors/storage/messages.hpp"

namespace tessera::actors {

using definition_done = std::function<void(caf::expected<std::string>)>;

struct definition_change {
  std::optional<sandbox::code> code;  // set: new code, checked first
  std::vector<std::string> storage_ids;
  std::map<std::string, std::string> defaults;  // storage id -> data of a created one
  std::function<void(definition_done)> write;
};

// Delivers `out` (the answer or the error) to `rp`.
void deliver(caf::typed_response_promise<std::string>& rp, caf::expected<std::string> out);

caf::error if_match_error(const storage::version_list& if_match, int64_t version,
                          const std::string& what);

struct update_request {
  std::string body;                  // JSON text
  std::vector<std::string> allowed;  // the fields the route may change
  storage::version_list if_match;    // empty: no precondition
};

class update_queue {
 public:
  using run_fn = std::function<void(const update_request&, definition_done)>;

  update_queue(caf::event_based_actor* self, run_fn run) : self_(self), run_(std::move(run)) {}

  caf::result<std::string> push(update_request r);
  void fail_all(const caf::error& err);

 private:
  void start_head();

  struct queued {
    update_request request;
    caf::typed_response_promise<std::string> rp;
  };
  caf::event_based_actor* self_;
  run_fn run_;
  std::deque<queued> queue_;  // the head is running
  uint64_t epoch_ = 0;        // +1 per fail_all
};

// (`Self`: any event-based actor, typed or not.)
template <class Self>
void commit_definition(Self* self, const storage::atomic_env& env, definition_change change,
                       definition_done done) {
  auto c = std::make_shared<definition_change>(std::move(change));
  auto create_storages = [self, env, c, done](caf::error err) {
    if (err) return done(err);
    storage::create_missing(self, env.storages, env.request_timeout, c->storage_ids, c->defaults,
                            [c, done](caf::error e) {
                              if (e) return done(e);
                              c->write(done);
                            });
  };
  if (c->code)
    sandbox::check_code(self, env.sandbox, env.call_timeout, *c->code, create_storages);
  else
    create_storages({});
}

// Creates `id`: conflict when `dir` has it live or being created; else `id` is reserved in `dir`
// while commit_definition runs `change` (whose write adds the actor), and the outcome goes to
// `rp`.
template <class Self>
void create_definition(Self* self, const storage::atomic_env& env, actor_directory& dir,
                       const std::string& id, definition_change change,
                       caf::typed_response_promise<std::string> rp) {
  if (auto err = dir.reserve(id)) {
    rp.deliver(err);
    return;
  }
  commit_definition(self, env, std::move(change),
                    [&dir, id, rp](caf::expected<std::string> out) mutable {
                      dir.release(id);
                      deliver(rp, std::move(out));
                    });
}

}  // namespace tessera::actors
