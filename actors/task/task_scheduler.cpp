#include "actors/task/task_scheduler.hpp"

#include <caf/all.hpp>
#include <set>
#include <unordered_map>

#include "actors/task/messages.hpp"
#include "runtime/clock.hpp"

namespace tessera::task {
namespace {

struct entry {
  int64_t at = 0;
  caf::actor task;
};

class scheduler_state {
 public:
  scheduler_state(scheduler_actor::pointer self, task_metrics* metrics)
      : self_(self), metrics_(metrics) {}

  void schedule(const std::string& id, int64_t at, caf::actor task) {
    auto it = by_id_.find(id);
    if (it != by_id_.end()) {
      queue_.erase({it->second.at, id});
      by_id_.erase(it);
    }
    if (at > 0) {
      by_id_.emplace(id, entry{at, std::move(task)});
      queue_.emplace(at, id);
    }
    if (metrics_) metrics_->set_queue_size(static_cast<double>(queue_.size()));
    arm();
  }

  void tick(uint64_t token) {
    if (token != token_) return;  // superseded by an earlier timer
    armed_at_ = 0;
    auto now = runtime::now_ms();
    while (!queue_.empty() && queue_.begin()->first <= now) {
      auto [at, id] = *queue_.begin();
      queue_.erase(queue_.begin());
      auto it = by_id_.find(id);
      if (it != by_id_.end()) {
        caf::anon_send(it->second.task, fire_atom::value, at);
        by_id_.erase(it);
      }
    }
    if (metrics_) metrics_->set_queue_size(static_cast<double>(queue_.size()));
    arm();
  }

 private:
  // One timer, for the earliest entry; an earlier entry replaces it.
  void arm() {
    if (queue_.empty()) return;
    auto first = queue_.begin()->first;
    if (armed_at_ != 0 && armed_at_ <= first) return;
    armed_at_ = first;
    ++token_;
    auto delay = std::max<int64_t>(first - runtime::now_ms(), 0);
    self_->delayed_send(self_, std::chrono::milliseconds(delay), tick_atom::value, token_);
  }

  scheduler_actor::pointer self_;
  task_metrics* metrics_;
  std::set<std::pair<int64_t, std::string>> queue_;
  std::unordered_map<std::string, entry> by_id_;
  int64_t armed_at_ = 0;  // the time the pending timer is for, 0: none
  uint64_t token_ = 0;
};

}  // namespace

scheduler_actor::behavior_type task_scheduler(scheduler_actor::pointer self,
                                              task_metrics* metrics) {
  auto st = std::make_shared<scheduler_state>(self, metrics);
  return {
      [st](schedule_atom, const std::string& id, int64_t at, caf::actor& task) {
        st->schedule(id, at, std::move(task));
      },
      [st](tick_atom, uint64_t token) { st->tick(token); },
  };
}

}  // namespace tessera::task
