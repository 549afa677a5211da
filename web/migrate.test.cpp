#include "web/migrate.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "adapters/error.hpp"
#include "adapters/kv/rocks_store.hpp"
#include "tests/support/throwaway_postgres.hpp"

using namespace tessera;
using namespace tessera::web;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct temp_root {
  fs::path path;
  temp_root() {
    static int n = 0;
    path = fs::temp_directory_path() /
           ("tessera-migrate-" + std::to_string(::getpid()) + "-" + std::to_string(++n));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_root() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream{p} << text;
}

// The origin app's data directory, as it wrote it: a storage as its bare data, a panel in its
// metadata format, a task in a directory and two in the older tasks.json.
void origin_data(const fs::path& root) {
  write(root / "storages/todos.json", R"({"items": [{"id": 1, "text": "milk", "done": false}],
                                          "next_id": 2})");
  write(root / "storages/weather.json", R"({"id": "weather", "data": {"city": "Taipei"},
                                            "version": 7})");
  write(root / "panels/todo-v2-demo/metadata.json",
        R"({"id": "todo-v2-demo", "title": "Todo", "desc": "d", "icon": "x", "size": "medium",
            "storage_ids": ["todos"]})");
  write(root / "panels/todo-v2-demo/template.html",
        "<ul>{% for i in todos['items'] %}"
        "<li>{{ i.text }}</li>{% endfor %}</ul>");
  write(root / "panels/todo-v2-demo/handler.py",
        "def on_action(action, payload, storage):\n    return storage\n");
  write(root / "tasks/refresh/metadata.json",
        R"({"name": "Refresh", "schedule": "*/5 * * * *", "storage_ids": ["weather"]})");
  write(root / "tasks/refresh/handler.py", "def on_schedule(storage):\n    return storage\n");
  write(root / "tasks.json",
        R"([{"id": "old-one", "name": "Old", "schedule": "0 * * * *", "storage_ids": [],
             "handler": "def on_schedule(storage):\n    return storage\n"}])");
}

endpoint at(const std::string& text) {
  auto e = parse_endpoint(text);
  REQUIRE_MESSAGE(e, detail_of(e.error()));
  return *e;
}

void require_equal_copy(const migrate_result& r, bool to_files = false) {
  for (auto& [kind, s] : r.source) {
    CAPTURE(kind);
    if (to_files && kind != "storages" && kind != "panels" && kind != "tasks") continue;
    REQUIRE(r.target.count(kind));
    CHECK(r.target.at(kind).count == s.count);
    CHECK(r.target.at(kind).checksum == s.checksum);
  }
}

}  // namespace

TEST_SUITE("web.migrate") {
  TEST_CASE("stores are named rocksdb:DIR, files:DIR or a PostgreSQL URL, its password masked") {
    CHECK(at("rocksdb:/d").what == endpoint::kind::rocksdb);
    CHECK(at("files:/d").where == "/d");
    auto pg = at("postgresql://u:secret@h/db");
    CHECK(pg.what == endpoint::kind::postgres);
    CHECK(pg.where == "postgresql://u:secret@h/db");
    CHECK(pg.shown == "postgresql://u:***@h/db");
    CHECK(at("postgres:host=/tmp dbname=x password=pw-9137").shown ==
          "postgres:host=/tmp dbname=x password=***");
    auto bad = parse_endpoint("sqlite:/x?password=secret");
    REQUIRE_FALSE(bad);
    CHECK(detail_of(bad.error()).find("rocksdb:DIR") != std::string::npos);
  }

  TEST_CASE("files to rocksdb to postgres to files keeps equal checksums of every kind") {
    temp_root t;
    origin_data(t.path / "origin");
    auto first = migrate(at("files:" + (t.path / "origin").string()),
                         at("rocksdb:" + (t.path / "rocks").string()), false);
    REQUIRE_MESSAGE(first, detail_of(first.error()));
    CHECK(first->problems.empty());
    CHECK(first->source.at("storages").count == 2);
    CHECK(first->source.at("panels").count == 1);
    CHECK(first->source.at("tasks").count == 2);  // one in tasks/, one in tasks.json
    require_equal_copy(*first);

    auto url = testing::throwaway_postgres::shared().fresh_database();
    auto second =
        migrate(at("rocksdb:" + (t.path / "rocks").string()), at("postgres:" + url), false);
    REQUIRE_MESSAGE(second, detail_of(second.error()));
    require_equal_copy(*second);
    CHECK(second->source.at("storages").checksum == first->source.at("storages").checksum);

    auto third = migrate(at("postgres:" + url), at("files:" + (t.path / "back").string()), false);
    REQUIRE_MESSAGE(third, detail_of(third.error()));
    require_equal_copy(*third, true);
    for (auto* kind : {"storages", "panels", "tasks"})
      CHECK(third->target.at(kind).checksum == first->source.at(kind).checksum);
    // The storage kept its version through all three.
    std::ifstream in{t.path / "back/storages/weather.json"};
    auto weather = json::parse(in);
    CHECK(weather["version"] == 7);
    CHECK(weather["data"]["city"] == "Taipei");
  }

  TEST_CASE("a target that is not empty is refused unless forced; forced twice, the same copy") {
    temp_root t;
    origin_data(t.path / "origin");
    auto from = at("files:" + (t.path / "origin").string());
    auto to = at("rocksdb:" + (t.path / "rocks").string());
    REQUIRE(migrate(from, to, false));
    auto again = migrate(from, to, false);
    REQUIRE_FALSE(again);
    CHECK(detail_of(again.error()).find("not empty") != std::string::npos);
    auto forced = migrate(from, to, true);
    REQUIRE(forced);
    for (auto* kind : {"storages", "panels", "tasks"}) {
      CAPTURE(kind);
      CHECK(forced->target.at(kind).checksum == forced->source.at(kind).checksum);
    }
  }

  TEST_CASE("a file that cannot be read is named with its reason, and the rest is copied") {
    temp_root t;
    origin_data(t.path / "origin");
    write(t.path / "origin/storages/broken.json", "{not json");
    write(t.path / "origin/panels/nameless/metadata.json", R"({"storage_ids": "todos"})");
    write(t.path / "origin/tasks/twice/metadata.json",  // tasks.json defines old-one too
          R"({"id": "old-one", "name": "Again", "schedule": "0 * * * *", "storage_ids": []})");
    write(t.path / "origin/tasks/twice/handler.py",
          "def on_schedule(storage):\n    return storage\n");
    auto r = migrate(at("files:" + (t.path / "origin").string()),
                     at("rocksdb:" + (t.path / "rocks").string()), false);
    REQUIRE(r);
    REQUIRE(r->problems.size() == 3);
    CHECK(r->problems[0].find("broken.json: is not valid JSON") != std::string::npos);
    CHECK(r->problems[1].find("nameless") != std::string::npos);
    CHECK(r->problems[2].find("task 'old-one' is defined twice; not copied") != std::string::npos);
    CHECK(r->target.at("storages").count == 2);
    CHECK(r->target.at("panels").count == 1);
    CHECK(run_migrate_command("files:" + (t.path / "origin").string(),
                              "rocksdb:" + (t.path / "rocks2").string(), false) == 3);
  }

  TEST_CASE("an empty source copies nothing and says so; a missing files dir is an error") {
    temp_root t;
    fs::create_directories(t.path / "empty");
    auto r = migrate(at("files:" + (t.path / "empty").string()),
                     at("rocksdb:" + (t.path / "rocks").string()), false);
    REQUIRE(r);
    CHECK(r->copied == 0);
    auto missing = migrate(at("files:" + (t.path / "nowhere").string()),
                           at("rocksdb:" + (t.path / "rocks2").string()), false);
    REQUIRE_FALSE(missing);
    CHECK(detail_of(missing.error()).find("is not a directory") != std::string::npos);
  }
}
