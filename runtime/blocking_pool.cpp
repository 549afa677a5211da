#include "runtime/blocking_pool.hpp"

namespace tessera::runtime {
namespace {

caf::behavior pool_worker(caf::event_based_actor*, std::shared_ptr<std::atomic<size_t>> in_flight) {
  return {[in_flight](blocking_job_atom, blocking_job& job) -> caf::expected<caf::message> {
    auto out = job.run();
    --*in_flight;
    return out;
  }};
}

}  // namespace

std::shared_ptr<blocking_pool> blocking_pool::start(caf::actor_system& sys, size_t threads) {
  auto pool = std::make_shared<blocking_pool>();
  for (size_t i = 0; i < std::max<size_t>(threads, 1); ++i) {
    auto in_flight = std::make_shared<std::atomic<size_t>>(0);
    pool->workers_.push_back({sys.spawn<caf::detached>(pool_worker, in_flight), in_flight});
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
  for (auto& w : workers_)
    if (w.handle) caf::anon_send_exit(w.handle, caf::exit_reason::user_shutdown);
}

}  // namespace tessera::runtime
