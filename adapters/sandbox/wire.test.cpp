#include "adapters/sandbox/wire.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>
#include <vector>

using namespace tessera::sandbox_wire;
using namespace std::chrono_literals;

namespace {

struct pipe_pair {
  int fds[2];
  pipe_pair() {
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  }
  ~pipe_pair() {
    ::close(fds[0]);
    if (fds[1] >= 0) ::close(fds[1]);
  }
  void close_writer() {
    ::close(fds[1]);
    fds[1] = -1;
  }
};

}  // namespace

TEST_SUITE("adapters.sandbox") {
  TEST_CASE("a frame arrives whole, with its length prefix stripped") {
    pipe_pair p;
    REQUIRE(write_frame(p.fds[1], "{\"kind\":\"check\"}\n{}") == status::ok);
    std::string out;
    CHECK(read_frame(p.fds[0], out, 1024, clock::now() + 1s) == status::ok);
    CHECK(out == "{\"kind\":\"check\"}\n{}");
    auto parts = split_request(out);
    CHECK(parts.header == "{\"kind\":\"check\"}");
    CHECK(parts.body == "{}");
  }

  TEST_CASE("a frame longer than the limit is refused before its body is read") {
    pipe_pair p;
    REQUIRE(write_frame(p.fds[1], std::string(100, 'x')) == status::ok);
    std::string out;
    CHECK(read_frame(p.fds[0], out, 99, clock::now() + 1s) == status::too_large);
  }

  TEST_CASE("a reader waits no longer than its deadline") {
    pipe_pair p;
    std::string out;
    auto started = clock::now();
    CHECK(read_frame(p.fds[0], out, 1024, started + 50ms) == status::timed_out);
    CHECK(clock::now() - started >= 50ms);
  }

  TEST_CASE("end of stream between frames is closed, inside a frame an error") {
    SUBCASE("between frames") {
      pipe_pair p;
      p.close_writer();
      std::string out;
      CHECK(read_frame(p.fds[0], out, 1024, clock::now() + 1s) == status::closed);
    }
    SUBCASE("inside a frame") {
      pipe_pair p;
      REQUIRE(write_all(p.fds[1], std::string("\0\0\0\x10half", 8)) == status::ok);
      p.close_writer();
      std::string out;
      CHECK(read_frame(p.fds[0], out, 1024, clock::now() + 1s) == status::io_error);
    }
  }

  TEST_CASE("read_to_end stops at the byte limit") {
    pipe_pair p;
    REQUIRE(write_all(p.fds[1], std::string(5000, 'y')) == status::ok);
    p.close_writer();
    std::string out;
    CHECK(read_to_end(p.fds[0], out, 4096, clock::now() + 1s) == status::too_large);
  }

  TEST_CASE("a frame over a Unix socket carries descriptors the receiver can use") {
    int sock[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock) == 0);
    pipe_pair lent;                // the receiver gets its write end and talks through it
    std::string big(200000, 'z');  // more than the socket takes in one send
    std::string out;
    std::vector<int> fds;
    std::thread reader{[&] {
      CHECK(read_frame_with_fds(sock[1], out, 1 << 20, clock::now() + 5s, fds) == status::ok);
    }};
    REQUIRE(write_frame_with_fds(sock[0], big, {lent.fds[1]}) == status::ok);
    reader.join();
    CHECK(out == big);
    REQUIRE(fds.size() == 1);
    CHECK(fds[0] != lent.fds[1]);
    CHECK((::fcntl(fds[0], F_GETFD) & FD_CLOEXEC) != 0);
    REQUIRE(write_frame(fds[0], "through the passed pipe") == status::ok);
    CHECK(read_frame(lent.fds[0], out, 1024, clock::now() + 1s) == status::ok);
    CHECK(out == "through the passed pipe");
    ::close(fds[0]);
    ::close(sock[0]);
    ::close(sock[1]);
  }

  TEST_CASE("on a pipe, the descriptor-passing read is a plain read with no descriptors") {
    pipe_pair p;
    REQUIRE(write_frame(p.fds[1], "plain") == status::ok);
    std::string out;
    std::vector<int> fds;
    CHECK(read_frame_with_fds(p.fds[0], out, 1024, clock::now() + 1s, fds) == status::ok);
    CHECK(out == "plain");
    CHECK(fds.empty());
  }
}
