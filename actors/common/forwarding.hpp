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
//   is). When the owner does not answer within `timeout` (lost, or paused), `fallback` gets
//   the promise and the CAF error: the kind serves a read here, or answers a write with its
//   outcome unknown. Counts requests, failures and round trips in `m`.
#pragma once

#include <caf/actor.hpp>
#include <caf/message.hpp>
#include <caf/typed_response_promise.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "adapters/error.hpp"
#include "runtime/cluster/node_actor.hpp"
#include "runtime/cluster/placement.hpp"

namespace tessera::actors {

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
    Self* self, caf::actor owner, std::string kind, caf::message msg,
    std::chrono::milliseconds timeout, runtime::cluster::forward_metrics::kind m,
    std::function<void(caf::typed_response_promise<Result>&, const caf::error&)> fallback) {
  auto rp = self->template make_response_promise<Result>();
  if (m.requests) m.requests->Increment();
  auto start = std::chrono::steady_clock::now();
  self->request(owner, timeout, runtime::cluster::forward_atom::value, std::move(kind),
                std::move(msg))
      .then(
          [=](Result& r) mutable {
            if (m.seconds)
              m.seconds->Observe(
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
            rp.deliver(std::move(r));
          },
          [=](caf::error& err) mutable {
            if (err.category() == error_category) return rp.deliver(err);  // the owner's answer
            if (m.failures) m.failures->Increment();
            fallback(rp, err);
          });
  return rp;
}

}  // namespace tessera::actors
