#include "runtime/cluster/placement.hpp"

#include <algorithm>
#include <caf/all.hpp>

namespace tessera::runtime::cluster {
namespace {

uint64_t fnv1a(std::string_view a, std::string_view b) {
  uint64_t h = 14695981039346656037ull;
  auto add = [&h](unsigned char c) {
    h ^= c;
    h *= 1099511628211ull;
  };
  for (unsigned char c : a) add(c);
  add(0);  // ("ab", "c") and ("a", "bc") differ
  for (unsigned char c : b) add(c);
  return h;
}

// splitmix64's finalizer: FNV-1a's low bits alone spread poorly.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

}  // namespace

std::string owner_of(std::string_view key, const std::vector<std::string>& members) {
  const std::string* best = nullptr;
  uint64_t best_weight = 0;
  for (auto& m : members) {
    auto w = mix(fnv1a(m, key));
    if (!best || w > best_weight || (w == best_weight && m < *best)) {
      best = &m;
      best_weight = w;
    }
  }
  return best ? *best : std::string{};
}

bool placement::set(std::string self, std::vector<std::string> alive) {
  std::sort(alive.begin(), alive.end());
  alive.erase(std::unique(alive.begin(), alive.end()), alive.end());
  std::lock_guard lock{mutex_};
  if (self == self_ && alive == alive_) return false;
  self_ = std::move(self);
  alive_ = std::move(alive);
  ++epoch_;
  return true;
}

bool placement::owns(std::string_view key) const {
  std::lock_guard lock{mutex_};
  if (self_.empty() || !std::binary_search(alive_.begin(), alive_.end(), self_)) return false;
  return owner_of(key, alive_) == self_;
}

uint64_t placement::epoch() const {
  std::lock_guard lock{mutex_};
  return epoch_;
}

std::vector<std::string> placement::members() const {
  std::lock_guard lock{mutex_};
  return alive_;
}

caf::actor follow_members(caf::actor_system& system, const membership_actor& membership,
                          std::shared_ptr<placement> place, std::function<void()> changed) {
  auto follower = system.spawn(
      [](caf::event_based_actor*, std::shared_ptr<placement> place,
         std::function<void()> changed) -> caf::behavior {
        return {[place, changed](const member_view& view) {
          std::vector<std::string> alive;
          for (auto& m : view.alive()) alive.push_back(m.name);
          if (place->set(view.self, std::move(alive)) && changed) changed();
        }};
      },
      std::move(place), std::move(changed));
  caf::anon_send(membership, subscribe_atom::value, follower);
  return follower;
}

}  // namespace tessera::runtime::cluster
