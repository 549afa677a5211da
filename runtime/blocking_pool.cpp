#include "runtime/blocking_pool.hpp"

#include <exception>

#include "adapters/error.hpp"

namespace tessera::runtime {
namespace {

caf::behavior pool_worker(caf::event_based_actor*, std::shared_ptr<std::atomic<size_t>> in_flight,
                          std::shared_ptr<std::atomic<bool>> stopping) {
  return {
      [in_flight, stopping](blocking_job_atom, blocking_job& job) -> caf::expected<caf::message> {
        struct done_guard {
          std::atomic<size_t>& n;
          ~done_guard() { --n; }
        } done{*in_flight};
        if (*stopping) return make_error(errc::unavailable, "the server is stopping");
        if (std::chrono::steady_clock::now() > job.due)
          return make_error(errc::timeout, "the read waited past its caller's timeout; not run");
        try {
          return job.run();
        } catch (const std::exception& e) {
          return make_error(errc::internal, std::string{"a blocking job threw: "} + e.what());
        } catch (...) {
          return make_error(errc::internal, "a blocking job threw");
        }
      }};
}

}  // namespace

std::shared_ptr<blocking_pool> blocking_pool::start(caf::actor_system& sys, size_t threads) {
  auto pool = std::make_shared<blocking_pool>();
  for (size_t i = 0; i < std::max<size_t>(threads, 1); ++i) {
    auto in_flight = std::make_shared<std::atomic<size_t>>(0);
    pool->workers_.push_back(
        {sys.spawn<caf::detached>(pool_worker, in_flight, pool->stopping_), in_flight});
  }
  return pool;
}

blocking_pool::~blocking_pool() { stop(); }

caf::actor blocking_pool::pick() {
  auto* best = &workers_.front();
  for (auto& w : workers_)
    if (*w.in_flight < *best->in_flight) best = &w;
  ++*best->in_flight;
  return best->handle;
}

void blocking_pool::stop() {
  *stopping_ = true;
  for (auto& w : workers_)
    if (w.handle) caf::anon_send_exit(w.handle, caf::exit_reason::user_shutdown);
}

}  // namespace tessera::runtime
