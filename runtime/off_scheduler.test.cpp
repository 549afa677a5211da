#include "runtime/off_scheduler.hpp"

#include <doctest/doctest.h>

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
