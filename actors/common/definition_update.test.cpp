#include "actors/common/definition_update.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "actors/sandbox/messages.hpp"
#include "actors/storage/test_storages.hpp"

using namespace tessera;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

using go_atom = caf::atom_constant<caf::atom("go")>;
using finish_atom = caf::atom_constant<caf::atom("finish")>;
using fail_atom = caf::atom_constant<caf::atom("failall")>;
using started_atom = caf::atom_constant<caf::atom("started")>;

// A sandbox that keeps every check call's body and fails code containing "broken".
sandbox::sandbox_actor::behavior_type checking_sandbox(sandbox::sandbox_actor::pointer,
                                                       std::shared_ptr<std::vector<json>> seen) {
  return {
      [seen](sandbox::run_atom, sandbox::call& c) {
        auto body = json::parse(c.body);
        seen->push_back(body);
        if (c.body.find("broken") != std::string::npos)
          return sandbox::failed_result("syntax_error", "SyntaxError", "invalid syntax");
        return sandbox::call_result{"ok", R"({"ok":true})", 0, 0, ""};
      },
      [](sandbox::status_atom) { return std::string{"{}"}; },
  };
}

struct fixture : storage::test_storages {
  std::shared_ptr<std::vector<json>> checks = std::make_shared<std::vector<json>>();
  sandbox::sandbox_actor sandbox = sys.spawn(checking_sandbox, checks);
  storage::atomic_env env{storages, sandbox, committer, 5s, 5s, 16};
  std::shared_ptr<int> writes = std::make_shared<int>(0);

  // Runs commit_definition for `change` (its write counts itself and answers "written").
  caf::expected<std::string> commit(actors::definition_change change) {
    change.write = [w = writes](actors::definition_done done) {
      ++*w;
      done(std::string{"written"});
    };
    // (`change` is a spawn argument: CAF 0.17 spawns a function actor without one through a
    // null tuple pointer, which UBSan reports.)
    auto runner = sys.spawn(
        [env = env](caf::event_based_actor* runner_self,
                    actors::definition_change change) -> caf::behavior {
          return {
              [runner_self, env, change](go_atom) {
                auto rp = runner_self->make_response_promise<std::string>();
                actors::commit_definition(runner_self, env, change,
                                          [rp](caf::expected<std::string> out) mutable {
                                            actors::deliver(rp, std::move(out));
                                          });
                return rp;
              },
          };
        },
        change);
    auto out = ask<std::string>(runner, go_atom::value);
    caf::anon_send_exit(runner, caf::exit_reason::user_shutdown);
    return out;
  }

  std::string data(const std::string& id) {
    auto r = ask<storage::storage_record>(storages, storage::read_atom::value, id);
    return r ? r->data : "missing";
  }
};

// An actor owning an update_queue whose `run` records each request it starts and waits for a
// (finish_atom, answer) to finish it; (fail_atom) calls fail_all with `deleted`; (started_atom) ->
// the bodies of the updates started so far.
caf::behavior queue_owner(caf::event_based_actor* self, caf::error deleted) {
  auto started = std::make_shared<std::vector<std::string>>();
  auto pending = std::make_shared<actors::definition_done>();
  auto queue = std::make_shared<actors::update_queue>(
      self, [started, pending](const actors::update_request& u, actors::definition_done done) {
        started->push_back(u.body);
        *pending = std::move(done);
      });
  return {
      [queue](go_atom, std::string& body) {
        return queue->push({std::move(body), {}, {}});
      },
      [pending](finish_atom, const std::string& answer) {
        auto done = std::move(*pending);
        if (done) done(answer);
      },
      [queue, deleted](fail_atom) { queue->fail_all(deleted); },
      [started](started_atom) { return *started; },
  };
}

}  // namespace

TEST_CASE("a definition whose code does not compile creates no storage and writes nothing") {
  fixture f;
  actors::definition_change change;
  change.code = sandbox::code{{}, "def broken(:", "on_action"};
  change.storage_ids = {"new-one"};
  auto out = f.commit(change);
  REQUIRE_FALSE(out);
  CHECK(code_of(out.error()) == errc::sandbox_failed);
  CHECK(detail_of(out.error()).find("invalid syntax") != std::string::npos);
  CHECK(*f.writes == 0);
  CHECK(f.data("new-one") == "missing");
}

TEST_CASE("new code is checked for what its kind requires, unchanged code is not checked") {
  fixture f;
  actors::definition_change change;
  change.code = sandbox::code{"<p>{{ x }}</p>", "def on_schedule(storage): pass", "on_schedule"};
  REQUIRE(f.commit(change) == std::string{"written"});
  REQUIRE(f.checks->size() == 1);
  CHECK(f.checks->at(0) == json{{"template", "<p>{{ x }}</p>"},
                                {"handler", "def on_schedule(storage): pass"},
                                {"require", "on_schedule"}});
  REQUIRE(f.commit(actors::definition_change{}) == std::string{"written"});
  CHECK(f.checks->size() == 1);
  CHECK(*f.writes == 2);
}

TEST_CASE("missing storages are created with their defaults before the write, existing ones kept") {
  fixture f;
  REQUIRE(f.ask<storage::storage_record>(f.storages, storage::create_atom::value,
                                         std::string{"kept"}, std::string{R"({"a":1})"}));
  actors::definition_change change;
  change.storage_ids = {"kept", "seeded", "empty"};
  change.defaults = {{"kept", R"({"a":2})"}, {"seeded", R"({"b":2})"}};
  REQUIRE(f.commit(change) == std::string{"written"});
  CHECK(json::parse(f.data("kept")) == json{{"a", 1}});
  CHECK(json::parse(f.data("seeded")) == json{{"b", 2}});
  CHECK(json::parse(f.data("empty")) == json::object());
}

TEST_CASE("If-Match holds when it is empty or names the current version") {
  CHECK_FALSE(actors::if_match_error({}, 3, "panel 'p'"));
  CHECK_FALSE(actors::if_match_error({1, 3}, 3, "panel 'p'"));
  auto err = actors::if_match_error({1, 2}, 3, "panel 'p'");
  CHECK(code_of(err) == errc::precondition_failed);
  CHECK(detail_of(err) == "panel 'p' is at version 3");
}

// The answer the owner sends back for a plain (not requested) message: the text or the error.
std::string next_answer(caf::scoped_actor& self) {
  std::string out = "no answer within 5 s";
  self->receive([&](std::string& a) { out = a; },
                [&](caf::error& e) { out = "error: " + detail_of(e); }, caf::after(5s) >> [] {});
  return out;
}

std::vector<std::string> started(storage::test_storages& t, const caf::actor& owner) {
  auto r = t.ask<std::vector<std::string>>(owner, started_atom::value);
  return r ? *r : std::vector<std::string>{"no answer"};
}

TEST_CASE("updates run one at a time in arrival order, each after the previous one is done") {
  storage::test_storages t;
  auto owner = t.sys.spawn(queue_owner, make_error(errc::not_found, "deleted"));
  for (auto body : {"first", "second", "third"})
    t.self->send(owner, go_atom::value, std::string{body});
  CHECK(started(t, owner) == std::vector<std::string>{"first"});
  t.self->send(owner, finish_atom::value, std::string{"one"});
  CHECK(next_answer(t.self) == "one");
  CHECK(started(t, owner) == std::vector<std::string>{"first", "second"});
  t.self->send(owner, finish_atom::value, std::string{"two"});
  CHECK(next_answer(t.self) == "two");
  CHECK(started(t, owner) == std::vector<std::string>{"first", "second", "third"});
  t.self->send(owner, finish_atom::value, std::string{"three"});
  CHECK(next_answer(t.self) == "three");
  caf::anon_send_exit(owner, caf::exit_reason::user_shutdown);
}

TEST_CASE("fail_all answers every queued update and ignores the running one's later answer") {
  storage::test_storages t;
  auto owner = t.sys.spawn(queue_owner, make_error(errc::not_found, "deleted"));
  for (auto body : {"first", "second"}) t.self->send(owner, go_atom::value, std::string{body});
  t.self->send(owner, fail_atom::value);
  CHECK(next_answer(t.self) == "error: deleted");
  CHECK(next_answer(t.self) == "error: deleted");
  t.self->send(owner, finish_atom::value, std::string{"late"});  // the first one's: ignored
  t.self->send(owner, go_atom::value, std::string{"after"});
  CHECK(started(t, owner) == std::vector<std::string>{"first", "after"});
  t.self->send(owner, finish_atom::value, std::string{"after-answer"});
  CHECK(next_answer(t.self) == "after-answer");  // and no "late" before it
  caf::anon_send_exit(owner, caf::exit_reason::user_shutdown);
}
