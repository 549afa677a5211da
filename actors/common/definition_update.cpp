#include "actors/common/definition_update.hpp"

#include <algorithm>
#include <caf/all.hpp>

#include "adapters/error.hpp"

namespace tessera::actors {

void commit_definition(caf::event_based_actor* self, const storage::atomic_env& env,
                       definition_change change, definition_done done) {
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

void deliver(caf::typed_response_promise<std::string>& rp, caf::expected<std::string> out) {
  if (out)
    rp.deliver(std::move(*out));
  else
    rp.deliver(out.error());
}

void create_definition(caf::event_based_actor* self, const storage::atomic_env& env,
                       actor_directory& dir, const std::string& id, definition_change change,
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

caf::error if_match_error(const storage::version_list& if_match, int64_t version,
                          const std::string& what) {
  if (if_match.empty() || std::find(if_match.begin(), if_match.end(), version) != if_match.end())
    return {};
  return make_error(errc::precondition_failed, what + " is at version " + std::to_string(version));
}

caf::result<std::string> update_queue::push(update_request r) {
  auto rp = self_->make_response_promise<std::string>();
  queue_.push_back({std::move(r), rp});
  if (queue_.size() == 1) start_head();
  return rp;
}

void update_queue::fail_all(const caf::error& err) {
  ++epoch_;
  for (auto& q : queue_) q.rp.deliver(err);
  queue_.clear();
}

void update_queue::start_head() {
  run_(queue_.front().request, [this, epoch = epoch_](caf::expected<std::string> r) {
    if (epoch != epoch_) return;  // answered by fail_all
    auto rp = std::move(queue_.front().rp);
    queue_.pop_front();
    deliver(rp, std::move(r));
    if (!queue_.empty()) start_head();
  });
}

}  // namespace tessera::actors
