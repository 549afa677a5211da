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

#include "runtime/off_scheduler.hpp"

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

// Runs the short blocking `fn` (returning caf::expected<T>: a page of the durable store, say)
// on `pool`'s threads, off the scheduler's workers and the I/O threads
// (runtime/off_scheduler.hpp), and calls `done` as `ask` does, with its value or error
// (timeout after `timeout`).
template <class T, class Fn>
void ask_blocking(caf::actor_system& sys, std::shared_ptr<runtime::blocking_pool> pool,
                  std::chrono::milliseconds timeout, std::function<void(caf::expected<T>)> done,
                  Fn fn) {
  sys.spawn(
      [pool, timeout, done = std::move(done)](caf::event_based_actor* self, Fn work) mutable {
        runtime::off_scheduler(self, pool, timeout, std::move(work))
            .then([done](T& r) { done(std::move(r)); },
                  [done](caf::error& e) { done(std::move(e)); });
      },
      std::move(fn));
}

}  // namespace tessera::web
