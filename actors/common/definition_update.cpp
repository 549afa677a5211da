#include "actors/common/definition_update.hpp"

#include <algorithm>
#include <caf/all.hpp>

#include "adapters/error.hpp"

namespace tessera::actors {

void deliver(caf::typed_response_promise<std::string>& rp, caf::expected<std::string> out) {
  if (out)
    rp.deliver(std::move(*out));
  else
    rp.deliver(out.error());
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
