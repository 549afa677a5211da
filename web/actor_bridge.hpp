// Asking an actor from web code without blocking an I/O thread.
//
// Contract: `ask<Result>(sys, dst, timeout, done, xs...)` sends `xs...` to `dst` as a request
// with `timeout` from a short-lived actor and calls `done` exactly once, on a CAF worker
// thread, with the reply or the error (tessera's, or CAF's request_timeout /
// request_receiver_down, which adapters/error.hpp maps to timeout / unavailable). `done` must
// not block; web code posts its response back to the connection's strand.
#pragma once

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <chrono>
#include <functional>

namespace tessera::web {

template <class Result, class Handle, class... Ts>
void ask(caf::actor_system& sys, const Handle& dst, std::chrono::milliseconds timeout,
         std::function<void(caf::expected<Result>)> done, Ts... xs) {
  // `dst` travels as a spawn argument: CAF 0.17 dereferences a null argument tuple when a
  // function actor is spawned with none (UBSan reports it).
  sys.spawn(
      [timeout, done = std::move(done), ... xs = std::move(xs)](caf::event_based_actor* self,
                                                                Handle to) mutable {
        self->request(to, timeout, std::move(xs)...)
            .then([done](Result& r) { done(std::move(r)); },
                  [done](caf::error& e) { done(std::move(e)); });
      },
      dst);
}

}  // namespace tessera::web
