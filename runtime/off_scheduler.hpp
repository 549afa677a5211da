// Blocking work (a RocksDB scan of a whole prefix, say) run on a thread of its own instead of
// one of the CAF scheduler's workers, which it would otherwise hold for its whole length.
//
// Contract: off_scheduler(self, timeout, fn) spawns a detached one-shot actor that calls `fn`
// (returning caf::expected<T>) on its own thread and answers with the value or the error; it
// returns the request handle, so the caller continues with `.then(on_value, on_error)` on its
// own actor, as with any request. `fn` must own what it touches (capture shared_ptrs, not
// actor state): it runs concurrently with the caller. When `timeout` runs out first the caller
// gets CAF's request_timeout error. T must be a type CAF can put in a message.
#pragma once

#include <caf/all.hpp>
#include <memory>
#include <utility>

#include "runtime/blocking_pool.hpp"

namespace tessera::runtime {

using blocking_atom = caf::atom_constant<caf::atom("blocking")>;

template <class Self, class Duration, class Fn>
auto off_scheduler(Self* self, Duration timeout, Fn fn) {
  using value_type = typename decltype(fn())::value_type;
  // `fn` travels as a spawn argument: CAF 0.17 spawns a function actor without arguments
  // through a null tuple pointer, which UBSan reports.
  auto worker = self->template spawn<caf::detached>(
      [](caf::event_based_actor* s, Fn work) -> caf::behavior {
        return {[s, work = std::move(work)](blocking_atom) mutable -> caf::result<value_type> {
          s->quit();
          auto out = work();
          if (!out) return std::move(out.error());
          return std::move(*out);
        }};
      },
      std::move(fn));
  return self->request(worker, timeout, blocking_atom::value);
}

// The same on `pool`'s threads (runtime/blocking_pool.hpp) for a short call; without a pool
// (tests, tools) on a one-shot thread as above.
template <class Self, class Duration, class Fn>
auto off_scheduler(Self* self, const std::shared_ptr<blocking_pool>& pool, Duration timeout,
                   Fn fn) {
  if (!pool) return off_scheduler(self, timeout, std::move(fn));
  blocking_job job{[fn = std::move(fn)]() mutable -> caf::expected<caf::message> {
                     auto out = fn();
                     if (!out) return std::move(out.error());
                     return caf::make_message(std::move(*out));
                   },
                   std::chrono::steady_clock::now() + timeout};
  return self->request(pool->pick(), timeout, blocking_job_atom::value, std::move(job));
}

}  // namespace tessera::runtime
