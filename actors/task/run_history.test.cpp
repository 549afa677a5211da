#include "actors/task/run_history.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "actors/task/run_log.hpp"
#include "actors/task/task_codec.hpp"
#include "adapters/kv/rocks_store.hpp"

using namespace tessera;
using namespace tessera::task;
using json = nlohmann::json;

namespace {

// A throwaway RocksDB holding the history of task "t" (and of its neighbour "t2").
struct history {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      ("tessera-history-test-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
  std::shared_ptr<adapters::kv_store> store =
      *adapters::rocks_store::open({dir.string(), /*sync=*/false, nullptr});

  ~history() {
    store.reset();
    std::filesystem::remove_all(dir);
  }

  // Writes run `seq` of `task` with `status` and one log line.
  void run(const std::string& task, int64_t seq, const std::string& status = "succeeded") {
    run_record r;
    r.task_id = task;
    r.seq = seq;
    r.trigger = "manual";
    r.started_at = 1000 * seq;
    r.finished_at = status == "running" ? 0 : 1000 * seq + 5;
    r.status = status;
    auto logs = json::array({{{"level", "INFO"},
                              {"time", 1000.0 * seq},
                              {"message", "run " + std::to_string(seq)},
                              {"source", "stdout"}}});
    auto ops = log_ops(task, seq, logs, 1000 * seq, nullptr);
    ops.push_back({run_key(task, seq), encode(r), false});
    if (status == "running") ops.push_back({running_key(task, seq), "", false});
    REQUIRE_FALSE(store->write(ops));
  }

  void apply(const std::vector<adapters::write_op>& ops) { REQUIRE_FALSE(store->write(ops)); }

  std::vector<int64_t> seqs(const std::string& task) {
    auto page = runs_page(*store, task, 0, 1000);
    REQUIRE(page);
    std::vector<int64_t> out;
    auto runs = json::parse(*page)["runs"];
    for (auto& r : runs)
      out.push_back(std::stoll(r["run_id"].get<std::string>().substr(task.size() + 1)));
    return out;
  }

  size_t keys(const std::string& prefix) {
    auto rows = store->scan(prefix, "", 1'000'000);
    REQUIRE(rows);
    return rows->size();
  }
};

}  // namespace

TEST_SUITE("actors.task.run_history") {
  TEST_CASE("runs are listed newest first with their logs, a page at a time") {
    history h;
    for (int64_t seq = 1; seq <= 5; ++seq) h.run("t", seq);
    h.run("t2", 1);
    auto first = json::parse(*runs_page(*h.store, "t", 0, 2));
    REQUIRE(first["runs"].size() == 2);
    CHECK(first["runs"][0]["run_id"] == "t:5");
    CHECK(first["runs"][0]["logs"][0]["message"] == "run 5");
    CHECK(first["next_cursor"] == 4);
    auto second = json::parse(*runs_page(*h.store, "t", 4, 10));
    REQUIRE(second["runs"].size() == 3);
    CHECK(second["runs"][0]["run_id"] == "t:3");
    CHECK(second["runs"][2]["run_id"] == "t:1");
    CHECK(second["next_cursor"].is_null());
  }

  TEST_CASE("trimming keeps the newest runs and never a running or a held one") {
    history h;
    for (int64_t seq = 1; seq <= 6; ++seq) h.run("t", seq, seq == 2 ? "running" : "succeeded");
    auto held = [](int64_t seq) { return seq == 3; };
    // Run 6 is written with keep_runs 2: runs 1 to 4 fall out, but 2 runs and 3 is awaited.
    h.apply(trim_ops(*h.store, "t", 6, 2, held));
    CHECK(h.seqs("t") == std::vector<int64_t>{6, 5, 3, 2});
    CHECK(h.keys("tlog/t/") == 4);  // the trimmed runs' log lines went with them
  }

  TEST_CASE("nothing is trimmed while the history is within keep_runs") {
    history h;
    for (int64_t seq = 1; seq <= 3; ++seq) h.run("t", seq);
    CHECK(trim_ops(*h.store, "t", 3, 3, {}).empty());
    CHECK(trim_ops(*h.store, "t", 3, 100, {}).empty());
  }

  TEST_CASE("deleting a task deletes all it left behind and nothing of its neighbour") {
    history h;
    REQUIRE_FALSE(h.store->write({{task_key("t"), "{}", false}, {state_key("t"), "{}", false}}));
    for (int64_t seq = 1; seq <= 3; ++seq) h.run("t", seq, seq == 3 ? "running" : "succeeded");
    h.run("t2", 1);
    auto ops = erase_task_ops(*h.store, "t");
    REQUIRE(ops);
    h.apply(*ops);
    CHECK_FALSE(*h.store->get(task_key("t")));
    CHECK_FALSE(*h.store->get(state_key("t")));
    CHECK(h.seqs("t").empty());
    CHECK(h.keys(std::string{running_prefix} + "t/") == 0);
    CHECK(h.keys("tlog/t/") == 0);
    CHECK(h.keys("log/") == 1);  // t2's line, by time
    CHECK(h.seqs("t2") == std::vector<int64_t>{1});
  }
}
