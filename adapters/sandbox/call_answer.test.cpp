#include "adapters/sandbox/call_answer.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

using namespace tessera::sandbox_wire;

TEST_SUITE("adapters.sandbox") {
  TEST_CASE("an answer frame splits into the runner's JSON and the process's figures") {
    std::string frame = std::string{R"({"ok":true,"logs":[]})"} + '\0' +
                        "1 250 3 0 12 2048 4096 it changed sys.modules";
    auto a = split_answer(frame);
    REQUIRE(a);
    CHECK(a->json == R"({"ok":true,"logs":[]})");
    CHECK(a->fresh);
    CHECK(a->cpu_us == 250);
    CHECK(a->faults == 3);
    CHECK_FALSE(a->keep);
    CHECK(a->check_us == 12);
    CHECK(a->uss_kib == 2048);
    CHECK(a->pss_kib == 4096);
    CHECK(a->spoiled == "it changed sys.modules");
  }

  TEST_CASE("an answer frame that is not JSON and a trailer is refused") {
    for (std::string frame :
         {std::string{"no trailer"}, std::string{"{}"} + '\0' + "1 2",
          std::string{"[1]"} + '\0' + "0 1 1 1 1 1 1 ",
          std::string{"{\"a\":"} + '\0' + "0 1 1 1 1 1 1 ", std::string{'\0'} + "0 1 1 1 1 1 1 "})
      CHECK_FALSE(split_answer(frame));
  }

  TEST_CASE("the sandbox's members close the runner's answer as one JSON object") {
    std::string answer = R"({"ok":true,"logs":[]})";
    call_report r;
    r.call_us = 300;
    r.cpu_us = 200;
    r.reused = true;
    r.calls = 7;
    r.kept = true;
    r.pid = 5;
    r.uss_kib = 2000;
    r.pss_kib = 9000;
    r.lent = true;
    r.retired_json = R"([["panel:b","evicted",9]])";
    close_answer(answer, r);
    auto j = nlohmann::json::parse(answer);
    CHECK(j["ok"] == true);
    CHECK(j["zygote_us"]["call"] == 300);
    CHECK(j["process"]["cpu_us"] == 200);
    CHECK(j["process"]["compiled"] == false);
    CHECK(j["warm"]["calls"] == 7);
    CHECK(j["warm"]["lent"] == true);
    CHECK(j["warm"]["pid"] == 5);
    CHECK(j["warm"]["retired"][0][1] == "evicted");
    CHECK_FALSE(j["warm"].contains("discarded"));
  }

  TEST_CASE("a process that does not stay reports why and no pid") {
    std::string answer = R"({"ok":false,"error":{"kind":"timeout"},"logs":[]})";
    call_report r;
    r.discarded = "the call \"failed\"";
    close_answer(answer, r);
    auto j = nlohmann::json::parse(answer);
    CHECK(j["warm"]["kept"] == false);
    CHECK(j["warm"]["discarded"] == "the call \"failed\"");
    CHECK_FALSE(j["warm"].contains("pid"));
    CHECK_FALSE(j["warm"].contains("lent"));
  }

  TEST_CASE("the answer bound leaves room for storages, HTML and logs") {
    CHECK(max_answer_bytes(1 << 20, 64 << 10, 1000) ==
          2 * (1 << 20) + 2 * (64 << 10) + 64 * 1000 + (64 << 10));
  }
}
