#include "actors/sandbox/lent_pool.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

using namespace tessera::sandbox;
using namespace std::chrono_literals;
using clock_type = tessera::sandbox_wire::clock;

namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

// A lent process with a real pipe pair, so the test can tell when the pool closed it.
lent_process process(int64_t pid, clock_type::time_point used) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  lent_process l;
  l.pid = pid;
  l.request_fd = fds[1];
  l.result_fd = fds[0];
  l.calls = pid * 10;
  l.last_used = used;
  return l;
}

}  // namespace

TEST_SUITE("actors.sandbox") {
  TEST_CASE("a warm answer that says lent with two pipes becomes a lent process") {
    auto now = clock_type::now();
    auto warm = nlohmann::json{
        {"lent", true}, {"pid", 7}, {"calls", 3}, {"uss_kib", 2000}, {"pss_kib", 9000}};
    auto l = lent_from(warm, {11, 12}, now);
    REQUIRE(l);
    CHECK(l->pid == 7);
    CHECK(l->calls == 3);
    CHECK(l->request_fd == 11);
    CHECK(l->result_fd == 12);
    CHECK(l->uss_kib == 2000);
    CHECK_FALSE(lent_from(warm, {11}, now));
    CHECK_FALSE(lent_from(nlohmann::json{{"pid", 7}}, {11, 12}, now));
  }

  TEST_CASE("the lend key is the reuse key and the call's limits") {
    call c;
    c.reuse_key = "panel:a:h";
    c.timeout_ms = 2000;
    c.memory_mb = 256;
    CHECK(lend_key(c) == "panel:a:h|2000|256");
  }

  TEST_CASE("a process leaving the pool has its pipes closed") {
    auto now = clock_type::now();
    lent_pool pool;
    auto a = process(1, now);
    CHECK_FALSE(pool.adopt("a", a));
    REQUIRE(pool.find("a"));
    pool.drop("a");
    CHECK_FALSE(pool.find("a"));
    CHECK_FALSE(is_open(a.request_fd));
    CHECK_FALSE(is_open(a.result_fd));
  }

  TEST_CASE("adopting a second process for a key hands back the first one's pid") {
    auto now = clock_type::now();
    lent_pool pool;
    auto first = process(1, now);
    pool.adopt("k", first);
    CHECK(pool.adopt("k", process(2, now)) == int64_t{1});
    CHECK_FALSE(is_open(first.request_fd));
    CHECK(pool.find("k")->pid == 2);
  }

  TEST_CASE("the zygote's retired records drop the processes they name by pid") {
    auto now = clock_type::now();
    lent_pool pool;
    auto a = process(1, now), b = process(2, now);
    pool.adopt("a", a);
    pool.adopt("b", b);
    pool.forget_retired(nlohmann::json::parse(R"([["api:x","evicted",2],["api:y","idle"]])"));
    CHECK(pool.find("a"));
    CHECK_FALSE(pool.find("b"));
    CHECK_FALSE(is_open(b.result_fd));
  }

  TEST_CASE("idle processes are taken out, the others reported with their use") {
    auto now = clock_type::now();
    lent_pool pool;
    pool.adopt("old", process(1, now - 5s));
    pool.adopt("new", process(2, now - 100ms));
    CHECK(pool.take_idle(now, 1s) == std::vector<int64_t>{1});
    auto use = pool.use(now);
    REQUIRE(use.size() == 1);
    CHECK(use[0][0] == 2);
    CHECK(use[0][1].get<int64_t>() >= 100);
    CHECK(use[0][2] == 20);
    pool.clear();
    CHECK(pool.empty());
  }
}
