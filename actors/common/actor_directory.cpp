#include "actors/common/actor_directory.hpp"

#include <caf/all.hpp>

namespace tessera::actors {

actor_directory::actor_directory(caf::local_actor* self, directory_policy policy,
                                 runtime::actor_kind_metrics metrics)
    : self_(self), policy_(std::move(policy)), metrics_(metrics) {}

void actor_directory::add(const std::string& id, caf::actor a) {
  if (auto old = live_.find(id); old != live_.end()) forget(old);
  self_->monitor(a);
  by_address_[a.address()] = id;
  // The use order is kept only under a live limit (100,000 tasks would pay ~130 bytes each).
  auto recent = policy_.max_live ? recent_.insert(recent_.begin(), id) : recent_.end();
  live_.emplace(id, entry{std::move(a), 0, recent});
  metrics_.activations->Increment();
  metrics_.live->Increment();
  if (policy_.max_live && live_.size() > policy_.max_live) ask_least_recent();
}

void actor_directory::reserve(size_t n) {
  live_.reserve(n);
  by_address_.reserve(n);
}

caf::actor actor_directory::find(const std::string& id) const {
  auto it = live_.find(id);
  return it == live_.end() ? caf::actor{} : it->second.handle;
}

std::vector<std::string> actor_directory::live_ids() const {
  std::vector<std::string> ids;
  ids.reserve(live_.size());
  for (auto& [id, _] : live_) ids.push_back(id);
  return ids;
}

caf::actor actor_directory::route(const std::string& id) {
  auto it = live_.find(id);
  if (it == live_.end()) {
    if (!policy_.activate) return {};
    auto a = policy_.activate(id);
    if (!a) return {};
    add(id, std::move(a));
    it = live_.find(id);
  } else if (policy_.max_live && it->second.recent != recent_.begin()) {
    recent_.splice(recent_.begin(), recent_, it->second.recent);
  }
  ++it->second.delegated;
  return it->second.handle;
}

// Asked ones move to the front, so a busy one is not asked again before the others.
void actor_directory::ask_least_recent() {
  auto over = live_.size() - policy_.max_live;
  for (size_t n = 0; n < over && recent_.size() > 1; ++n) {
    auto& e = live_.at(recent_.back());
    caf::anon_send(e.handle, passivate_atom::value);
    recent_.splice(recent_.begin(), recent_, e.recent);
  }
}

void actor_directory::passivate(const std::string& id) {
  if (auto it = live_.find(id); it != live_.end())
    caf::anon_send(it->second.handle, passivate_atom::value);
}

bool actor_directory::retire(const std::string& id, uint64_t handled,
                             const caf::strong_actor_ptr& sender) {
  auto it = live_.find(id);
  if (it == live_.end() || it->second.handle != caf::actor_cast<caf::actor>(sender) ||
      it->second.delegated != handled)
    return false;
  forget(it);  // by_address_ keeps it until it exits
  metrics_.passivations->Increment();
  return true;
}

void actor_directory::gone(const std::string& id) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  by_address_.erase(it->second.handle.address());
  forget(it);
}

void actor_directory::gone(const std::string& id, const caf::strong_actor_ptr& sender) {
  auto it = live_.find(id);
  if (it == live_.end() || it->second.handle != caf::actor_cast<caf::actor>(sender)) return;
  gone(id);
}

void actor_directory::down(const caf::down_msg& msg) {
  auto by = by_address_.find(msg.source);
  if (by == by_address_.end()) return;
  auto id = std::move(by->second);
  by_address_.erase(by);
  auto it = live_.find(id);
  if (it == live_.end() || it->second.handle.address() != msg.source) return;  // retired
  forget(it);
  if (policy_.stopped) policy_.stopped(id);
}

void actor_directory::stop_all() {
  for (auto& [address, _] : by_address_) self_->send_exit(address, caf::exit_reason::user_shutdown);
  metrics_.live->Decrement(static_cast<double>(live_.size()));
  live_.clear();
  recent_.clear();
  by_address_.clear();
}

caf::error actor_directory::reserve(const std::string& id) {
  if (live_.count(id) || !reserved_.insert(id).second)
    return make_error(errc::conflict, policy_.kind + " '" + id + "' already exists");
  return {};
}

caf::error actor_directory::not_found(const std::string& id) const {
  return make_error(errc::not_found, policy_.kind + " '" + id + "' does not exist");
}

void actor_directory::forget(std::unordered_map<std::string, entry>::iterator it) {
  if (policy_.max_live) recent_.erase(it->second.recent);
  live_.erase(it);
  metrics_.live->Decrement();
}

}  // namespace tessera::actors
