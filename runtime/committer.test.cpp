#include "runtime/committer.hpp"

#include <doctest/doctest.h>

#include <caf/all.hpp>
#include <future>
#include <thread>

#include "adapters/error.hpp"
#include "adapters/kv/test_backends.hpp"
#include "runtime/system.hpp"

using namespace tessera;
using namespace std::chrono_literals;

namespace {

// A store whose first write waits until released, so that commits sent meanwhile form the
// committer's next batch together.
struct held_first_write final : adapters::testing::forwarding_store {
  std::shared_future<void> released;
  std::atomic<int> writes{0};
  held_first_write(std::shared_ptr<adapters::kv_store> s, std::shared_future<void> r)
      : forwarding_store(std::move(s)), released(std::move(r)) {}
  caf::error write(const std::vector<adapters::write_op>& ops) override {
    if (writes++ == 0) released.wait();
    return inner->write(ops);
  }
};

}  // namespace

TEST_SUITE("runtime.committer") {
  TEST_CASE("a commit whose condition fails is refused alone, not the batch it came in") {
    adapters::testing::temp_dir dir;
    auto rocks = adapters::rocks_store::open({dir.path.string(), false, nullptr});
    REQUIRE(rocks);
    std::promise<void> release;
    auto store = std::make_shared<held_first_write>(*rocks, release.get_future().share());
    runtime::system_config cfg{2, {runtime::add_committer_messages}};
    caf::actor_system sys{cfg};
    auto committer = runtime::spawn_committer(sys, store);
    caf::scoped_actor self{sys};
    auto commit = [&](std::vector<adapters::write_op> ops) {
      return self->request(committer, 10s, runtime::commit_atom::value, std::move(ops));
    };
    adapters::write_op stale{"k", "new", false, adapters::write_op::has_prefix, "old"};
    auto first = commit({{"a", "1"}});  // held in the store until released
    while (store->writes == 0) std::this_thread::yield();
    auto refused = commit({stale});
    auto plain = commit({{"b", "2"}});
    release.set_value();
    first.receive([](caf::ok_atom) {}, [](caf::error& e) { FAIL(detail_of(e)); });
    refused.receive([](caf::ok_atom) { FAIL("a stale condition was applied"); },
                    [](caf::error& e) { CHECK(code_of(e) == errc::conflict); });
    plain.receive([](caf::ok_atom) {}, [](caf::error& e) { FAIL(detail_of(e)); });
    CHECK(store->get("b")->value() == "2");
    CHECK_FALSE(store->get("k")->has_value());
    caf::anon_send(committer, runtime::stop_atom::value);
  }
}
