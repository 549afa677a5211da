#include "runtime/off_scheduler.hpp"

#include <doctest/doctest.h>

#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "adapters/error.hpp"
#include "runtime/system.hpp"

using namespace tessera;

namespace {

using go_atom = caf::atom_constant<caf::atom("go")>;

// An actor that runs `fn` off the scheduler and answers what came back, as its caller would;
// it notes the thread it runs on in `caller`.
template <class Fn>
caf::behavior asker(caf::event_based_actor* self, Fn fn, std::shared_ptr<std::thread::id> caller) {
  return {[self, fn, caller](go_atom) -> caf::result<std::string> {
    *caller = std::this_thread::get_id();  // before the work is spawned: it happens-before
    auto rp = self->make_response_promise<std::string>();
    runtime::off_scheduler(self, std::chrono::seconds(10), fn)
        .then([rp](std::string& value) mutable { rp.deliver(std::move(value)); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
    return rp;
  }};
}

}  // namespace

TEST_SUITE("runtime.off_scheduler") {
  TEST_CASE("the work runs on a thread of its own and its value comes back to the caller") {
    runtime::system_config cfg{1, {}};
    caf::actor_system sys{cfg};
    caf::scoped_actor self{sys};
    auto caller = std::make_shared<std::thread::id>();
    auto fn = [caller]() -> caf::expected<std::string> {
      return std::this_thread::get_id() == *caller ? "the caller's thread" : "its own thread";
    };
    auto a = sys.spawn(asker<decltype(fn)>, fn, caller);
    self->request(a, std::chrono::seconds(10), go_atom::value)
        .receive([](std::string& v) { CHECK(v == "its own thread"); },
                 [](caf::error& e) { FAIL("unexpected error: " << detail_of(e)); });
  }

  TEST_CASE("an error of the work reaches the caller as that error") {
    runtime::system_config cfg{1, {}};
    caf::actor_system sys{cfg};
    caf::scoped_actor self{sys};
    auto fn = []() -> caf::expected<std::string> {
      return make_error(errc::storage_failure, "disk on fire");
    };
    auto a = sys.spawn(asker<decltype(fn)>, fn, std::make_shared<std::thread::id>());
    self->request(a, std::chrono::seconds(10), go_atom::value)
        .receive([](std::string&) { FAIL("a value instead of the error"); },
                 [](caf::error& e) {
                   CHECK(code_of(e) == errc::storage_failure);
                   CHECK(detail_of(e) == "disk on fire");
                 });
  }
}

TEST_SUITE("runtime.blocking_pool") {
  TEST_CASE("with a pool, the work runs on the pool's few threads, never on the caller's") {
    runtime::system_config cfg{1, {}};
    caf::actor_system sys{cfg};
    auto pool = runtime::blocking_pool::start(sys, 2);
    auto threads = std::make_shared<std::set<std::thread::id>>();
    auto mutex = std::make_shared<std::mutex>();
    auto caller = std::make_shared<std::thread::id>();
    {
      caf::scoped_actor self{sys};
      for (int i = 0; i < 40; ++i) {
        auto a = sys.spawn(
            [pool, threads, mutex, caller](caf::event_based_actor* s, int) -> caf::behavior {
              return {[s, pool, threads, mutex, caller](go_atom) -> caf::result<std::string> {
                *caller = std::this_thread::get_id();
                auto rp = s->make_response_promise<std::string>();
                runtime::off_scheduler(s, pool, std::chrono::seconds(10),
                                       [threads, mutex, caller]() -> caf::expected<std::string> {
                                         std::lock_guard lock{*mutex};
                                         threads->insert(std::this_thread::get_id());
                                         return std::this_thread::get_id() == *caller ? "caller"
                                                                                      : "pool";
                                       })
                    .then([rp](std::string& v) mutable { rp.deliver(std::move(v)); },
                          [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
                return rp;
              }};
            },
            0 /* CAF 0.17 needs a spawn argument */);
        self->request(a, std::chrono::seconds(10), go_atom::value)
            .receive([](std::string& v) { CHECK(v == "pool"); },
                     [](caf::error& e) { FAIL("unexpected error: " << detail_of(e)); });
      }
    }
    CHECK(threads->size() >= 1);
    CHECK(threads->size() <= 2);
    pool->stop();
  }

  TEST_CASE("a slow job does not hold up the next one: it goes to an idle thread") {
    runtime::system_config cfg{1, {}};
    caf::actor_system sys{cfg};
    auto pool = runtime::blocking_pool::start(sys, 2);
    auto release = std::make_shared<std::promise<void>>();
    auto released = release->get_future().share();
    caf::scoped_actor self{sys};
    auto ask = [&](std::function<caf::expected<std::string>()> fn) {
      return sys.spawn(
          [pool, fn](caf::event_based_actor* s, int) -> caf::behavior {
            return {[s, pool, fn](go_atom) -> caf::result<std::string> {
              auto rp = s->make_response_promise<std::string>();
              runtime::off_scheduler(s, pool, std::chrono::seconds(10), fn)
                  .then([rp](std::string& v) mutable { rp.deliver(std::move(v)); },
                        [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
              return rp;
            }};
          },
          0 /* CAF 0.17 needs a spawn argument */);
    };
    auto started = std::make_shared<std::promise<void>>();
    auto running = started->get_future();
    auto slow = ask([released, started]() -> caf::expected<std::string> {
      started->set_value();
      released.wait();
      return "slow";
    });
    self->send(slow, go_atom::value);  // its answer comes to `self` later
    running.wait();
    auto quick = ask([]() -> caf::expected<std::string> { return "quick"; });
    // The slow job holds one thread until released; the quick one must not queue behind it.
    self->request(quick, std::chrono::seconds(5), go_atom::value)
        .receive([](std::string& v) { CHECK(v == "quick"); },
                 [](caf::error& e) { FAIL("the quick job waited: " << detail_of(e)); });
    release->set_value();
    self->receive(
        [](std::string& v) { CHECK(v == "slow"); },
        caf::after(std::chrono::seconds(10)) >> [] { FAIL("the slow job never answered"); });
    pool->stop();
  }

  TEST_CASE(
      "no more jobs run at once than the pool has threads, and a job past its wait is not run") {
    runtime::system_config cfg{2, {}};
    caf::actor_system sys{cfg};
    auto pool = runtime::blocking_pool::start(sys, 2);
    auto running = std::make_shared<std::atomic<int>>(0);
    auto most = std::make_shared<std::atomic<int>>(0);
    auto ran = std::make_shared<std::atomic<int>>(0);
    caf::scoped_actor self{sys};
    auto ask = [&](std::chrono::milliseconds wait) {
      return sys.spawn(
          [pool, running, most, ran, wait](caf::event_based_actor* s, int) -> caf::behavior {
            return {[=](go_atom) -> caf::result<std::string> {
              auto rp = s->make_response_promise<std::string>();
              runtime::off_scheduler(
                  s, pool, wait,
                  [running, most, ran]() -> caf::expected<std::string> {
                    int now = ++*running;
                    int seen = most->load();
                    while (now > seen && !most->compare_exchange_weak(seen, now)) {
                    }
                    std::this_thread::sleep_for(std::chrono::milliseconds(50));
                    --*running;
                    ++*ran;
                    return "ran";
                  })
                  .then([rp](std::string& v) mutable { rp.deliver(std::move(v)); },
                        [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
              return rp;
            }};
          },
          0 /* CAF 0.17 needs a spawn argument */);
    };
    // Six jobs of 50 ms on two threads: at most two at once, all six answered.
    std::vector<caf::actor> askers;
    for (int i = 0; i < 6; ++i) askers.push_back(ask(std::chrono::seconds(10)));
    for (auto& a : askers) self->send(a, go_atom::value);
    for (int i = 0; i < 6; ++i)
      self->receive([](std::string& v) { CHECK(v == "ran"); },
                    [](caf::error& e) { FAIL(detail_of(e)); },
                    caf::after(std::chrono::seconds(10)) >> [] { FAIL("a job never answered"); });
    CHECK(most->load() == 2);
    CHECK(ran->load() == 6);
    // Two threads busy for 50 ms, then a job whose caller waits 10 ms: not run when its turn
    // comes, and its caller told timeout.
    askers.clear();
    for (int i = 0; i < 2; ++i) askers.push_back(ask(std::chrono::seconds(10)));
    for (auto& a : askers) self->send(a, go_atom::value);
    while (running->load() < 2) std::this_thread::yield();
    auto impatient = ask(std::chrono::milliseconds(10));
    self->request(impatient, std::chrono::seconds(10), go_atom::value)
        .receive([](std::string&) { FAIL("a job past its wait ran"); },
                 [](caf::error& e) { CHECK(code_of(e) == errc::timeout); });
    for (int i = 0; i < 2; ++i)
      self->receive([](std::string& v) { CHECK(v == "ran"); },
                    caf::after(std::chrono::seconds(10)) >> [] { FAIL("a job never answered"); });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the stale job's turn passes
    CHECK(ran->load() == 8);
    pool->stop();
  }
}
