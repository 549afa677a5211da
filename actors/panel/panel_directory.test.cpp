#include "actors/panel/panel_directory.hpp"

#include <doctest/doctest.h>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/panel/panel_codec.hpp"
#include "adapters/error.hpp"
#include "adapters/kv/test_backends.hpp"
#include "adapters/metrics/registry.hpp"
#include "runtime/actor_metrics.hpp"
#include "runtime/system.hpp"

using namespace tessera;
using namespace tessera::panel;
using namespace std::chrono_literals;

TEST_SUITE("actors.panel") {
  TEST_CASE("a panel actor that crashed starts again from the store, asked for meanwhile") {
    adapters::testing::temp_dir dir;
    std::shared_ptr<adapters::kv_store> store =
        *adapters::rocks_store::open({dir.path.string(), false, nullptr});
    panel_record r;
    r.id = "p";
    r.title = "kept";
    r.storage_ids = {"s"};
    r.template_ = "{{ s }}";
    r.handler = "def on_action(action, payload, storage):\n    pass\n";
    r.version = 3;
    REQUIRE_FALSE(store->write({{panel_key("p"), encode(r)}}));
    auto registry = adapters::make_metrics_registry();
    runtime::actor_metrics metrics{*registry};
    runtime::system_config cfg{2, {}};
    caf::actor_system sys{cfg};
    caf::scoped_actor self{sys};
    panel_env env;
    env.atomic.request_timeout = 5s;
    auto panels =
        sys.spawn(panel_directory, directory_config{store, env, metrics.for_kind("panel")});
    // The demo check waits for the load, which runs off the scheduler.
    self->request(panels, 10s, fresh_atom::value)
        .receive([](bool fresh) { CHECK_FALSE(fresh); },  // a panel is there
                 [](caf::error& e) { FAIL(detail_of(e)); });
    caf::actor first;
    self->request(panels, 10s, get_atom::value, std::string{"p"})
        .receive(
            [&](std::string& text) {
              CHECK(nlohmann::json::parse(text)["title"] == "kept");
              first = caf::actor_cast<caf::actor>(self->current_sender());
            },
            [](caf::error& e) { FAIL(detail_of(e)); });
    REQUIRE(first);
    self->send_exit(first, caf::exit_reason::kill);  // a crash: not deleted, not retired
    bool again = false;
    for (int i = 0; i < 200 && !again; ++i) {
      self->request(panels, 10s, get_atom::value, std::string{"p"})
          .receive(
              [&](std::string& text) {
                auto from = caf::actor_cast<caf::actor>(self->current_sender());
                again = from != first && nlohmann::json::parse(text)["version"] == 3;
              },
              [&](caf::error& e) {
                // Only while the dead actor is still routed to: never not_found.
                CHECK(code_of(e) != errc::not_found);
              });
      if (!again) std::this_thread::sleep_for(10ms);
    }
    CHECK(again);
    self->send_exit(panels, caf::exit_reason::user_shutdown);
  }
}
