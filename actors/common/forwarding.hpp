// How a kind's directory sends a request to the node owning the id (runtime/cluster/
// placement.hpp), shared by the storage and panel directories.
//
// Contract (on the directory actor `self`):
// - owner_elsewhere(self, place, key) is the owner's node actor when another node owns `key`
//   and the request being handled came from this node; null otherwise: no cluster, this node
//   owns it, the owner is not connected, or the requester is on another node (it was sent
//   here as to the owner, and is served here).
// - forward_to_owner(...) requests `msg` from the owner's node actor as (forward_atom, kind,
//   msg) and hands the answer to the requester (`Result` on success, the owner's error as it
//   is). When the owner does not answer within `timeout` (paused), or its node is lost first
//   (killed: its connection drops, CAF kills the gateway's proxy), `fallback` gets the promise
//   and the CAF error: the kind serves a read here, or answers a write with its outcome
//   unknown. Counts requests, failures and round trips in `m`.
// - The loss is seen through a monitor on each owner's gateway, kept in `forwards_in_flight`:
//   the directory's down handler gives every down_msg to its `down` first. A frozen owner
//   keeps its connection: the directory hears (peer_lost_atom, gateway) when the membership
//   declares it dead (placement::on_gateway_lost) and gives it to `lost`.
#pragma once

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/message.hpp>
#include <caf/system_messages.hpp>
#include <caf/typed_response_promise.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "adapters/error.hpp"
#include "runtime/cluster/node_actor.hpp"
#include "runtime/cluster/placement.hpp"

namespace tessera::actors {

// The forwards of one directory waiting for their owner's answer, by owner. The directory's
// own; not thread-safe.
class forwards_in_flight {
 public:
  using on_lost = std::function<void(const caf::error&)>;

  // Registers a forward to `owner` (monitored from now on, once per gateway); `lost` runs
  // if the owner's node is lost before `finish(ticket)`.
  template <class Self>
  uint64_t begin(Self* self, const caf::actor& owner, on_lost lost) {
    auto addr = owner.address();
    if (monitored_.insert(addr).second) self->monitor(owner);
    auto ticket = ++next_;
    pending_.emplace(ticket, entry{std::move(addr), std::move(lost)});
    return ticket;
  }

  // The forward ended (an answer or its timeout). False when it had already been failed as
  // lost: its requester has its answer.
  bool finish(uint64_t ticket) { return pending_.erase(ticket) > 0; }

  // True when `msg` is about a monitored gateway: its forwards in flight get their `lost`.
  bool down(const caf::down_msg& msg) {
    if (monitored_.erase(msg.source) == 0) return false;
    lost(msg.source, msg.reason);
    return true;
  }

  // The gateway's node is lost (declared dead): its forwards in flight get their `lost`.
  void lost(const caf::actor_addr& gateway, const caf::error& reason) {
    std::vector<on_lost> failed;
    for (auto it = pending_.begin(); it != pending_.end();)
      if (it->second.owner == gateway) {
        failed.push_back(std::move(it->second.lost));
        it = pending_.erase(it);
      } else {
        ++it;
      }
    for (auto& f : failed) f(reason);
  }

  size_t pending() const { return pending_.size(); }

 private:
  struct entry {
    caf::actor_addr owner;
    on_lost lost;
  };
  std::unordered_map<uint64_t, entry> pending_;
  std::unordered_set<caf::actor_addr> monitored_;
  uint64_t next_ = 0;
};

template <class Self>
caf::actor owner_elsewhere(Self* self, const std::shared_ptr<runtime::cluster::placement>& place,
                           const std::string& key) {
  if (!place) return {};
  auto& sender = self->current_sender();
  if (sender && sender->node() != self->node()) return {};
  return place->gateway_for(key);
}

template <class Result, class Self>
caf::typed_response_promise<Result> forward_to_owner(
    Self* self, const std::shared_ptr<forwards_in_flight>& in_flight, caf::actor owner,
    std::string kind, caf::message msg, std::chrono::milliseconds timeout,
    runtime::cluster::forward_metrics::kind m,
    std::function<void(caf::typed_response_promise<Result>&, const caf::error&)> fallback) {
  auto rp = self->template make_response_promise<Result>();
  if (m.requests) m.requests->Increment();
  auto start = std::chrono::steady_clock::now();
  auto ticket = in_flight->begin(self, owner, [=](const caf::error& err) mutable {
    if (m.failures) m.failures->Increment();
    fallback(rp, err);
  });
  self->request(owner, timeout, runtime::cluster::forward_atom::value, std::move(kind),
                std::move(msg))
      .then(
          [=](Result& r) mutable {
            if (!in_flight->finish(ticket)) return;
            if (m.seconds)
              m.seconds->Observe(
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
            rp.deliver(std::move(r));
          },
          [=](caf::error& err) mutable {
            if (!in_flight->finish(ticket)) return;
            if (err.category() == error_category) {  // the owner's answer
              rp.deliver(err);
              return;
            }
            if (m.failures) m.failures->Increment();
            fallback(rp, err);
          });
  return rp;
}

}  // namespace tessera::actors
