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

void placement::set_gateways(std::map<std::string, caf::actor> by_name,
                             std::vector<caf::node_id> accepted) {
  std::vector<caf::actor> lost;
  std::function<void(const caf::actor&)> tell;
  {
    std::lock_guard lock{mutex_};
    for (auto& [name, gateway] : gateways_)
      if (auto it = by_name.find(name); it == by_name.end() || it->second != gateway)
        lost.push_back(gateway);
    gateways_ = std::move(by_name);
    accepted_ = std::move(accepted);
    tell = lost_;
  }
  if (tell)
    for (auto& gateway : lost) tell(gateway);
}

void placement::claim(const std::string& key) const {
  std::function<void(const std::string&)> f;
  {
    std::lock_guard lock{mutex_};
    f = claim_;
  }
  if (f) f(key);
}

void placement::on_claim(std::function<void(const std::string&)> claim) {
  std::lock_guard lock{mutex_};
  claim_ = std::move(claim);
}

void placement::on_gateway_lost(std::function<void(const caf::actor&)> lost) {
  std::lock_guard lock{mutex_};
  lost_ = std::move(lost);
}

caf::actor placement::gateway_for(std::string_view key) const {
  std::lock_guard lock{mutex_};
  if (alive_.empty()) return {};
  auto owner = owner_of(key, alive_);
  if (owner == self_) return {};
  auto it = gateways_.find(owner);
  return it == gateways_.end() ? caf::actor{} : it->second;
}

bool placement::connected(const caf::node_id& node) const {
  std::lock_guard lock{mutex_};
  return std::find(accepted_.begin(), accepted_.end(), node) != accepted_.end();
}

forward_metrics::forward_metrics(prometheus::Registry& registry) {
  auto& requests = prometheus::BuildCounter()
                       .Name("tessera_cluster_forwarded_requests_total")
                       .Help("Requests this node forwarded to the node owning their actor")
                       .Register(registry);
  auto& failures = prometheus::BuildCounter()
                       .Name("tessera_cluster_forward_failures_total")
                       .Help("Forwarded requests the owning node did not answer")
                       .Register(registry);
  auto& seconds = prometheus::BuildHistogram()
                      .Name("tessera_cluster_forward_seconds")
                      .Help("Round trip of a forwarded request, owner's work included")
                      .Register(registry);
  auto add = [&](const std::string& name) {
    return kind{&requests.Add({{"kind", name}}), &failures.Add({{"kind", name}}),
                &seconds.Add({{"kind", name}}, prometheus::Histogram::BucketBoundaries{
                                                   0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                                                   0.1, 0.25, 0.5, 1, 2.5, 5})};
  };
  storage = add("storage");
  panel = add("panel");
  task = add("task");
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
      [](caf::event_based_actor*, std::shared_ptr<placement> kept,
         std::function<void()> on_change) -> caf::behavior {
        return {[kept, on_change](const member_view& view) {
          std::vector<std::string> alive;
          for (auto& m : view.alive()) alive.push_back(m.name);
          if (kept->set(view.self, std::move(alive)) && on_change) on_change();
        }};
      },
      std::move(place), std::move(changed));
  caf::anon_send(membership, subscribe_atom::value, follower);
  return follower;
}

}  // namespace tessera::runtime::cluster
