#include "actors/common/actor_directory.hpp"

#include <doctest/doctest.h>

#include <caf/all.hpp>
#include <set>

#include "adapters/metrics/registry.hpp"
#include "runtime/system.hpp"

using namespace tessera;
using namespace std::chrono_literals;

namespace {

using ask_atom = caf::atom_constant<caf::atom("ask")>;
using crash_atom = caf::atom_constant<caf::atom("crash")>;
using delete_atom = caf::atom_constant<caf::atom("delete")>;
using idle_atom = caf::atom_constant<caf::atom("idle")>;
using stopped_atom = caf::atom_constant<caf::atom("stopped")>;
using retire_atom = caf::atom_constant<caf::atom("retire")>;
using count_atom = caf::atom_constant<caf::atom("count")>;
using gone_atom = caf::atom_constant<caf::atom("gone")>;
using exited_atom = caf::atom_constant<caf::atom("exited")>;
using reserve_atom = caf::atom_constant<caf::atom("reserve")>;
using release_atom = caf::atom_constant<caf::atom("release")>;

// A kind's actor: answers (ask_atom, id) with its id and its own address; (crash_atom) fails it;
// (delete_atom) tells the directory it is gone (gone_atom) and quits; asked to passivate it answers
// with the number of requests it served, like a storage actor.
caf::behavior item(caf::event_based_actor* self, caf::actor directory, std::string id) {
  auto served = std::make_shared<uint64_t>(0);
  return {
      [=](ask_atom, const std::string&) {
        ++*served;
        return std::make_tuple(id, caf::actor_cast<caf::actor>(self));
      },
      [=](crash_atom, const std::string&) {
        ++*served;
        self->quit(caf::exit_reason::kill);
      },
      [=](delete_atom, const std::string&) {
        ++*served;
        self->send(directory, gone_atom::value, id);
        self->quit();
      },
      [=](actors::passivate_atom) { self->send(directory, idle_atom::value, id, *served); },
      [=](retire_atom) { self->quit(); },
  };
}

// A directory of items: ids starting with "x" have none. It tells `observer` what policy.stopped
// is told, and then (exited_atom, id) for every exit it hears of, in that order.
caf::behavior item_directory(caf::event_based_actor* self, runtime::actor_kind_metrics metrics,
                             size_t max_live, caf::actor observer) {
  actors::directory_policy policy{"item", nullptr, nullptr, max_live};
  policy.activate = [self](const std::string& id) {
    return id.front() == 'x' ? caf::actor{} : self->spawn(item, caf::actor{self}, id);
  };
  policy.stopped = [self, observer](const std::string& id) {
    self->send(observer, stopped_atom::value, id);
  };
  auto dir = std::make_shared<actors::actor_directory>(self, std::move(policy), metrics);
  auto ids = std::make_shared<std::map<caf::actor_addr, std::string>>();
  self->set_down_handler([self, dir, observer, ids](caf::down_msg& msg) {
    dir->down(msg);
    self->send(observer, exited_atom::value, (*ids)[msg.source]);
  });
  self->set_exit_handler([self, dir](caf::exit_msg&) {
    dir->stop_all();
    self->quit(caf::exit_reason::user_shutdown);
  });
  return {
      [self, dir, ids](ask_atom a, const std::string& id) -> caf::result<caf::message> {
        auto found = dir->route(id);
        if (!found) return dir->not_found(id);
        (*ids)[found.address()] = id;
        return self->delegate(found, a, id);
      },
      [dir](crash_atom a, const std::string& id) { return dir->forward(id, a, id); },
      [dir](delete_atom a, const std::string& id) { return dir->forward(id, a, id); },
      [dir](gone_atom, const std::string& id) { dir->gone(id); },
      [self, dir](idle_atom, const std::string& id, uint64_t handled) {
        if (dir->retire(id, handled, self->current_sender()))
          self->send(caf::actor_cast<caf::actor>(self->current_sender()), retire_atom::value);
      },
      [dir](count_atom) { return static_cast<uint64_t>(dir->live()); },
      [dir](reserve_atom, const std::string& id) -> caf::result<bool> {
        if (auto err = dir->reserve(id)) return err;
        return true;
      },
      [dir](release_atom, const std::string& id) { dir->release(id); },
  };
}

struct fixture {
  std::shared_ptr<prometheus::Registry> registry = adapters::make_metrics_registry();
  runtime::actor_metrics metrics{*registry};
  runtime::actor_kind_metrics kind = metrics.for_kind("item");
  runtime::system_config cfg{2, {}};
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};

  caf::actor start(size_t max_live = 0) {
    return sys.spawn(item_directory, kind, max_live, caf::actor{self});
  }

  // The id and the actor that served (ask_atom, id), or the error.
  caf::expected<std::pair<std::string, caf::actor>> ask(const caf::actor& dir,
                                                        const std::string& id) {
    caf::expected<std::pair<std::string, caf::actor>> out = make_error(errc::internal, "none");
    self->request(dir, 5s, ask_atom::value, id)
        .receive([&](std::string& who, caf::actor& a) { out = std::make_pair(who, a); },
                 [&](caf::error& e) { out = std::move(e); });
    return out;
  }

  uint64_t live(const caf::actor& dir) {
    uint64_t n = 0;
    self->request(dir, 5s, count_atom::value)
        .receive([&](uint64_t v) { n = v; }, [](caf::error&) {});
    return n;
  }

  // The next report of the directory: "stopped <id>" or "exited <id>".
  std::string next_report() {
    std::string out = "nothing within 5 s";
    self->receive([&](stopped_atom, const std::string& id) { out = "stopped " + id; },
                  [&](exited_atom, const std::string& id) { out = "exited " + id; },
                  caf::after(5s) >> [] {});
    return out;
  }

  ~fixture() { self->send_exit(caf::actor_cast<caf::actor>(self), caf::exit_reason::normal); }
};

}  // namespace

TEST_CASE("a request for an id that has no actor is not_found, naming the kind and the id") {
  fixture f;
  auto dir = f.start();
  auto r = f.ask(dir, "x1");
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::not_found);
  CHECK(detail_of(r.error()) == "item 'x1' does not exist");
  CHECK(f.live(dir) == 0);
  f.self->send_exit(dir, caf::exit_reason::user_shutdown);
}

TEST_CASE("an id is activated on first use and every later request reaches the same actor") {
  fixture f;
  auto dir = f.start();
  auto first = f.ask(dir, "a");
  REQUIRE(first);
  CHECK(first->first == "a");
  for (int i = 0; i < 3; ++i) CHECK(f.ask(dir, "a")->second == first->second);
  CHECK(f.ask(dir, "b")->second != first->second);
  CHECK(f.live(dir) == 2);
  CHECK(f.kind.activations->Value() == 2);
  CHECK(f.kind.live->Value() == 2);
  f.self->send_exit(dir, caf::exit_reason::user_shutdown);
}

TEST_CASE("an actor that stops while live is forgotten and its kind is told, once") {
  fixture f;
  auto dir = f.start();
  auto before = f.ask(dir, "a");
  REQUIRE(before);
  f.self->send(dir, crash_atom::value, std::string{"a"});
  CHECK(f.next_report() == "stopped a");
  CHECK(f.next_report() == "exited a");
  CHECK(f.live(dir) == 0);
  CHECK(f.kind.live->Value() == 0);
  auto after = f.ask(dir, "a");  // activated again on the next use
  REQUIRE(after);
  CHECK(after->second != before->second);
  f.self->send_exit(dir, caf::exit_reason::user_shutdown);
}

TEST_CASE("an actor that ends itself through gone() is forgotten without a stop report") {
  fixture f;
  auto dir = f.start();
  auto a = f.ask(dir, "a");
  REQUIRE(a);
  f.self->send(dir, delete_atom::value, std::string{"a"});
  CHECK(f.next_report() == "exited a");  // and no "stopped a" before it
  CHECK(f.live(dir) == 0);
  CHECK(f.kind.live->Value() == 0);
  f.self->send_exit(dir, caf::exit_reason::user_shutdown);
}

TEST_CASE("over max_live the least recently used is passivated and a later use activates it") {
  fixture f;
  auto dir = f.start(/*max_live=*/2);
  auto a = f.ask(dir, "a");
  REQUIRE(a);
  REQUIRE(f.ask(dir, "b"));
  REQUIRE(f.ask(dir, "a"));  // b is now the least recently used
  auto b = f.ask(dir, "b");
  REQUIRE(f.ask(dir, "a"));
  REQUIRE(f.ask(dir, "c"));              // over the limit: b is asked, answers idle, retires
  CHECK(f.next_report() == "exited b");  // retired, not stopped
  CHECK(f.live(dir) == 2);
  CHECK(f.kind.passivations->Value() == 1);
  CHECK(f.ask(dir, "a")->second == a->second);  // a stayed
  auto b2 = f.ask(dir, "b");
  REQUIRE(b2);
  CHECK(b2->second != b->second);
  f.self->send_exit(dir, caf::exit_reason::user_shutdown);
}

TEST_CASE("a passivation whose count of handled requests is stale is refused") {
  fixture f;
  auto dir = f.start();
  auto a = f.ask(dir, "a");
  REQUIRE(a);
  // The actor reports one request handled while two were delegated: it stays live.
  f.ask(dir, "a");
  caf::send_as(a->second, dir, idle_atom::value, std::string{"a"}, uint64_t{1});
  CHECK(f.live(dir) == 1);
  CHECK(f.ask(dir, "a")->second == a->second);
  // With the right count (3 so far) it retires and exits.
  caf::send_as(a->second, dir, idle_atom::value, std::string{"a"}, uint64_t{3});
  CHECK(f.next_report() == "exited a");
  CHECK(f.live(dir) == 0);
  f.self->send_exit(dir, caf::exit_reason::user_shutdown);
}

TEST_CASE("an id being created, or live, is a conflict until its creation ends") {
  fixture f;
  auto dir = f.start();
  auto reserve = [&](const std::string& id) {
    std::string out = "no answer";
    f.self->request(dir, 5s, reserve_atom::value, id)
        .receive([&](bool) { out = "reserved"; }, [&](caf::error& e) { out = detail_of(e); });
    return out;
  };
  CHECK(reserve("new") == "reserved");
  CHECK(reserve("new") == "item 'new' already exists");
  f.self->send(dir, release_atom::value, std::string{"new"});
  CHECK(reserve("new") == "reserved");
  REQUIRE(f.ask(dir, "a"));
  CHECK(reserve("a") == "item 'a' already exists");
  f.self->send_exit(dir, caf::exit_reason::user_shutdown);
}

TEST_CASE("stopping the directory stops every actor it started") {
  fixture f;
  auto dir = f.start();
  std::vector<caf::actor> items;
  for (auto id : {"a", "b", "c"}) items.push_back(f.ask(dir, id)->second);
  for (auto& a : items) f.self->monitor(a);
  f.self->send_exit(dir, caf::exit_reason::user_shutdown);
  std::set<caf::actor_addr> exited;
  for (int i = 0; i < 3; ++i)
    f.self->receive([&](caf::down_msg& m) { exited.insert(m.source); },
                    [](exited_atom, const std::string&) {}, caf::after(5s) >> [] {});
  CHECK(exited.size() == 3);
  CHECK(f.kind.live->Value() == 0);
}
