#include "web/ws_inbox.hpp"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

using namespace tessera::web;
using namespace std::chrono_literals;

namespace {

// A connected pair of stream sockets: the test writes to `theirs` as a client, the inbox
// reads `ours`.
struct socket_pair {
  int ours = -1, theirs = -1;
  socket_pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    ours = fds[0];
    theirs = fds[1];
  }
  ~socket_pair() {
    ::close(ours);
    if (theirs >= 0) ::close(theirs);
  }
  void send(const std::string& bytes) {
    REQUIRE(::write(theirs, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  }
  void hang_up() {
    ::close(theirs);
    theirs = -1;
  }
};

// A client frame as a browser sends it: masked (with a fixed key), FIN set unless `fin`.
std::string client_frame(ws::opcode op, std::string_view payload, bool fin = true) {
  std::string f;
  f += static_cast<char>((fin ? 0x80 : 0) | static_cast<uint8_t>(op));
  if (payload.size() < 126) {
    f += static_cast<char>(0x80 | payload.size());
  } else if (payload.size() <= 0xFFFF) {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>(payload.size() >> 8);
    f += static_cast<char>(payload.size() & 0xFF);
  } else {
    f += static_cast<char>(0x80 | 127);
    for (int i = 0; i < 8; ++i) f += static_cast<char>(uint64_t(payload.size()) >> (56 - 8 * i));
  }
  const char key[4] = {0x11, 0x22, 0x33, 0x44};
  f.append(key, 4);
  for (size_t i = 0; i < payload.size(); ++i) f += static_cast<char>(payload[i] ^ key[i % 4]);
  return f;
}

std::vector<ws::event> events_of(ws_inbox& in) {
  std::vector<ws::event> out;
  in.take_events(out);
  return out;
}

}  // namespace

TEST_SUITE("web.ws_inbox") {
  TEST_CASE("frames read from the socket become events in the order they were sent") {
    socket_pair s;
    ws_inbox in{1024};
    s.send(client_frame(ws::opcode::text, "one") + client_frame(ws::opcode::ping, "p") +
           client_frame(ws::opcode::text, "two"));
    auto got = in.read(s.ours);
    CHECK(got.bytes == 3 * 2 + 4 * 3 + 3 + 1 + 3);
    CHECK_FALSE(got.ended);
    auto ev = events_of(in);
    REQUIRE(ev.size() == 3);
    CHECK(ev[0].what == ws::event::kind::message);
    CHECK(ev[0].data == "one");
    CHECK(ev[1].what == ws::event::kind::ping);
    CHECK(ev[1].data == "p");
    CHECK(ev[2].data == "two");
    CHECK(in.buffered() == 0);
  }

  TEST_CASE("a frame split across reads waits for its rest") {
    socket_pair s;
    ws_inbox in{1024};
    auto frame = client_frame(ws::opcode::text, "hello, world");
    s.send(frame.substr(0, 5));
    in.read(s.ours);
    CHECK(events_of(in).empty());
    CHECK(in.buffered() == 5);
    s.send(frame.substr(5));
    in.read(s.ours);
    auto ev = events_of(in);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].data == "hello, world");
  }

  TEST_CASE("bytes that came with the upgrade request are read first") {
    socket_pair s;
    ws_inbox in{1024};
    auto frame = client_frame(ws::opcode::text, "early then late");
    in.append(frame.substr(0, 7));
    s.send(frame.substr(7));
    in.read(s.ours);
    auto ev = events_of(in);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].data == "early then late");
  }

  TEST_CASE("an empty socket reads nothing and has not ended") {
    socket_pair s;
    ws_inbox in{1024};
    auto got = in.read(s.ours);
    CHECK(got.bytes == 0);
    CHECK_FALSE(got.ended);
  }

  TEST_CASE("a client that hangs up ends the input after what it sent") {
    socket_pair s;
    ws_inbox in{1024};
    s.send(client_frame(ws::opcode::text, "last words"));
    s.hang_up();
    in.read(s.ours);  // what it sent; the end shows at the next wake-up
    auto ev = events_of(in);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].data == "last words");
    auto got = in.read(s.ours);
    CHECK(got.ended);
    CHECK(got.bytes == 0);
  }

  TEST_CASE("one read takes about max_per_read, so other connections get a turn") {
    socket_pair s;
    int big = 1 << 20;
    ::setsockopt(s.theirs, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    ::setsockopt(s.ours, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    ws_inbox in{1 << 20, 128 * 1024};
    std::string payload(400 * 1024, 'x');
    auto frame = client_frame(ws::opcode::binary, payload);
    size_t written = 0;
    // Write as much as the pair takes without blocking the test.
    while (written < frame.size()) {
      auto n = ::send(s.theirs, frame.data() + written, frame.size() - written, MSG_DONTWAIT);
      if (n <= 0) break;
      written += static_cast<size_t>(n);
    }
    REQUIRE(written > 2 * 64 * 1024 + 128 * 1024);  // more than one turn's worth is waiting
    auto first = in.read(s.ours);
    CHECK(first.bytes >= 128 * 1024);
    CHECK(first.bytes < 128 * 1024 + 64 * 1024);  // stops within one chunk of the turn
    CHECK_FALSE(first.ended);
    size_t total = first.bytes;
    while (total < frame.size()) {
      if (written < frame.size()) {
        auto n = ::send(s.theirs, frame.data() + written, frame.size() - written, MSG_DONTWAIT);
        if (n > 0) written += static_cast<size_t>(n);
      }
      total += in.read(s.ours).bytes;
    }
    auto ev = events_of(in);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].data.size() == payload.size());
  }

  TEST_CASE("after discard what arrives is read, counted and dropped, and no event comes") {
    socket_pair s;
    ws_inbox in{1024};
    s.send(client_frame(ws::opcode::text, "kept"));
    in.read(s.ours);
    auto ev = events_of(in);
    REQUIRE(ev.size() == 1);
    in.discard();
    CHECK(in.discarding());
    s.send(client_frame(ws::opcode::text, "dropped"));
    auto got = in.read(s.ours);
    CHECK(got.bytes == 2 + 4 + 7);  // still heard: the client is alive
    CHECK(in.buffered() == 0);
    CHECK(events_of(in).empty());
  }

  TEST_CASE("a message over the limit is one error event with close code 1009") {
    socket_pair s;
    ws_inbox in{8};
    s.send(client_frame(ws::opcode::text, "far more than eight bytes"));
    in.read(s.ours);
    auto ev = events_of(in);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].what == ws::event::kind::error);
    CHECK(ev[0].code == 1009);
  }
}

TEST_SUITE("web.ws_inbox keepalive") {
  TEST_CASE("a client heard from recently is looked at again when half the timeout is reached") {
    auto step = keepalive(10s, 60s, false);
    CHECK(step.what == keepalive_step::act::wait);
    CHECK(step.next == 20s);
  }

  TEST_CASE("a client silent for half the timeout is pinged once, then looked at by the whole") {
    auto step = keepalive(35s, 60s, false);
    CHECK(step.what == keepalive_step::act::ping);
    CHECK(step.next == 25s);
    auto again = keepalive(40s, 60s, true);
    CHECK(again.what == keepalive_step::act::wait);
    CHECK(again.next == 20s);
  }

  TEST_CASE("a client silent for the whole timeout is closed") {
    CHECK(keepalive(60s, 60s, true).what == keepalive_step::act::close);
    CHECK(keepalive(61s, 60s, false).what == keepalive_step::act::close);
  }

  TEST_CASE("the next look is never sooner than 10 ms") {
    CHECK(keepalive(29999ms, 60s, false).next == 10ms);
    CHECK(keepalive(59999ms, 60s, true).next == 10ms);
  }
}
