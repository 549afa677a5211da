#include "actors/common/forwarding.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <caf/all.hpp>

#include "runtime/system.hpp"

using namespace tessera;
using namespace std::chrono_literals;
using runtime::cluster::forward_atom;

namespace {

using ask_atom = caf::atom_constant<caf::atom("ask")>;
using retire_atom = caf::atom_constant<caf::atom("retire")>;

// Stands for another node's gateway: (forward_atom, kind, (ask_atom, word)) answers "owner
// <word>", the word "refuse" gets a tessera error, and the word "hold" is never answered;
// (retire_atom) ends it, as a lost connection ends a gateway's proxy. `unused`: CAF 0.17
// dereferences a null argument tuple when a function actor is spawned with none.
caf::behavior owner(caf::event_based_actor* self, int /*unused*/) {
  auto held = std::make_shared<std::vector<caf::response_promise>>();
  return {
      [=](forward_atom, const std::string&, caf::message& msg) -> caf::result<std::string> {
        std::string word;
        msg.apply([&](ask_atom, const std::string& w) { word = w; });
        if (word == "refuse") return make_error(errc::conflict, "the owner says no");
        if (word == "hold") {
          held->push_back(self->make_response_promise());
          return caf::delegated<std::string>{};
        }
        return "owner " + word;
      },
      [=](retire_atom) { self->quit(); },
  };
}

// A kind's directory that forwards every (ask_atom, word, owner) to `owner` with `timeout`;
// the fallback answers "fallback" and counts itself in `fallbacks`.
caf::behavior forwarder(caf::event_based_actor* self, std::chrono::milliseconds timeout,
                        std::shared_ptr<std::atomic<int>> fallbacks) {
  auto in_flight = std::make_shared<actors::forwards_in_flight>();
  self->set_down_handler([in_flight](caf::down_msg& msg) { in_flight->down(msg); });
  return {
      [=](ask_atom, const std::string& word, caf::actor to) {
        return actors::forward_to_owner<std::string>(
            self, in_flight, to, "item", caf::make_message(ask_atom::value, word), timeout, {},
            [fallbacks](caf::typed_response_promise<std::string>& rp, const caf::error&) {
              ++*fallbacks;
              rp.deliver(std::string{"fallback"});
            });
      },
  };
}

struct fixture {
  runtime::system_config cfg{2, {}};
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  std::shared_ptr<std::atomic<int>> fallbacks = std::make_shared<std::atomic<int>>(0);

  caf::actor start_forwarder(std::chrono::milliseconds timeout) {
    return sys.spawn(forwarder, timeout, fallbacks);
  }

  // The answer to (ask_atom, word, to) through `dir`, or "error: ..." ; "no answer" when none
  // comes within `wait`.
  std::string ask(const caf::actor& dir, const std::string& word, const caf::actor& to,
                  std::chrono::milliseconds wait = 5000ms) {
    std::string out = "no answer";
    self->request(dir, wait, ask_atom::value, word, to)
        .receive([&](std::string& s) { out = s; },
                 [&](caf::error& e) {
                   out = e == caf::sec::request_timeout ? "no answer" : "error: " + detail_of(e);
                 });
    return out;
  }

  ~fixture() { self->send_exit(caf::actor_cast<caf::actor>(self), caf::exit_reason::normal); }
};

}  // namespace

TEST_CASE("a forwarded request gets the owner's answer, and its error as it is") {
  fixture f;
  auto dir = f.start_forwarder(5000ms);
  auto to = f.sys.spawn(owner, 0);
  CHECK(f.ask(dir, "hello", to) == "owner hello");
  CHECK(f.ask(dir, "refuse", to) == "error: the owner says no");
  CHECK(*f.fallbacks == 0);
  f.self->send(to, retire_atom::value);
}

TEST_CASE(
    "a forward in flight when its owner is lost gets the fallback at once, not at its "
    "timeout") {
  fixture f;
  auto dir = f.start_forwarder(60000ms);  // far longer than the test waits
  auto to = f.sys.spawn(owner, 0);
  auto held = f.self->request(dir, 5000ms, ask_atom::value, std::string{"hold"}, to);
  CHECK(f.ask(dir, "still there", to) == "owner still there");  // the held one is in flight
  f.self->send(to, retire_atom::value);
  std::string answer = "no answer";
  held.receive([&](std::string& s) { answer = s; }, [](caf::error&) {});
  CHECK(answer == "fallback");
  CHECK(*f.fallbacks == 1);
}

TEST_CASE("a forward that timed out is answered once, even when its owner is lost later") {
  fixture f;
  auto dir = f.start_forwarder(100ms);
  auto to = f.sys.spawn(owner, 0);
  CHECK(f.ask(dir, "hold", to) == "fallback");
  f.self->send(to, retire_atom::value);
  // A request to a lost owner is failed over as well, and answered once.
  CHECK(f.ask(dir, "after", to) == "fallback");
  CHECK(*f.fallbacks == 2);
}

TEST_CASE("forwards to an owner that is still there are untouched when another is lost") {
  fixture f;
  auto dir = f.start_forwarder(60000ms);
  auto lost = f.sys.spawn(owner, 0);
  auto kept = f.sys.spawn(owner, 0);
  CHECK(f.ask(dir, "one", lost) == "owner one");
  CHECK(f.ask(dir, "two", kept) == "owner two");
  f.self->send(lost, retire_atom::value);
  CHECK(f.ask(dir, "three", lost) == "fallback");
  CHECK(f.ask(dir, "four", kept) == "owner four");
  CHECK(*f.fallbacks == 1);
  f.self->send(kept, retire_atom::value);
}
