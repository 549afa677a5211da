#include "web/ws_outbox.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

using namespace tessera::web;

namespace {

// A connected pair of stream sockets: the outbox writes to `ours`, the test reads `theirs`.
struct socket_pair {
  int ours = -1, theirs = -1;
  explicit socket_pair(int sndbuf = 0) {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    ours = fds[0];
    theirs = fds[1];
    if (sndbuf) ::setsockopt(ours, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    ::fcntl(theirs, F_SETFL, O_NONBLOCK);
  }
  ~socket_pair() {
    ::close(ours);
    if (theirs >= 0) ::close(theirs);
  }
  // Everything readable now.
  std::string take() {
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(theirs, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }
};

std::shared_ptr<const std::string> text(std::string s) {
  return std::make_shared<const std::string>(std::move(s));
}

// The frame a client would read for a text message.
std::string text_frame(const std::string& payload) {
  auto h = ws::server_header(ws::opcode::text, payload.size());
  return std::string{h.bytes.data(), h.size} + payload;
}

}  // namespace

TEST_SUITE("web.ws_outbox") {
  TEST_CASE("raw bytes and frames leave whole and in order") {
    socket_pair s;
    ws_outbox out;
    out.push(text("HTTP/1.1 101 Switching Protocols\r\n\r\n"), {});
    out.push(text("one"), ws::server_header(ws::opcode::text, 3), true);
    out.push(text("two"), ws::server_header(ws::opcode::text, 3), true);
    CHECK(out.flush(s.ours) == ws_outbox::flushed::empty);
    CHECK(s.take() ==
          "HTTP/1.1 101 Switching Protocols\r\n\r\n" + text_frame("one") + text_frame("two"));
    CHECK(out.messages_sent() == 2);
    CHECK(out.pending_bytes() == 0);
  }

  TEST_CASE("a socket that takes part of a frame gets the rest of it first, later") {
    socket_pair s{4096};
    ws_outbox out;
    std::string big(300'000, 'x');
    big.back() = 'y';
    out.render(text(big), "p", 1);
    out.push(text("after"), ws::server_header(ws::opcode::text, 5), true);
    std::string received;
    int rounds = 0;
    for (auto r = out.flush(s.ours); r != ws_outbox::flushed::empty; r = out.flush(s.ours)) {
      REQUIRE(r == ws_outbox::flushed::blocked);
      received += s.take();
      ++rounds;
    }
    received += s.take();
    CHECK(rounds > 1);  // the socket really did fill up
    CHECK(received == text_frame(big) + text_frame("after"));
    CHECK(out.bytes_written() == received.size());
  }

  TEST_CASE("a newer render replaces a queued one of its panel and an older one is dropped") {
    ws_outbox out;
    CHECK(out.render(text("p:1"), "p", 1) == ws_outbox::queued::ok);
    CHECK(out.render(text("q:1"), "q", 1) == ws_outbox::queued::ok);
    CHECK(out.render(text("p:3 longer"), "p", 3) == ws_outbox::queued::replaced);
    CHECK(out.render(text("p:2"), "p", 2) == ws_outbox::queued::dropped);
    CHECK(out.render(text("p:3"), "p", 3) == ws_outbox::queued::dropped);
    CHECK(out.size() == 2);
    CHECK(out.pending_bytes() == std::string{"p:3 longer"}.size() + 3);
    socket_pair s;
    out.flush(s.ours);
    CHECK(s.take() == text_frame("p:3 longer") + text_frame("q:1"));
  }

  TEST_CASE("a render already part-written is not replaced; the newer one follows it") {
    socket_pair s{4096};
    ws_outbox out;
    std::string first(200'000, 'a');
    out.render(text(first), "p", 1);
    REQUIRE(out.flush(s.ours) == ws_outbox::flushed::blocked);
    CHECK(out.render(text("p:2"), "p", 2) == ws_outbox::queued::ok);
    std::string received;
    while (out.flush(s.ours) != ws_outbox::flushed::empty) received += s.take();
    received += s.take();
    CHECK(received == text_frame(first) + text_frame("p:2"));
  }

  TEST_CASE("forget drops a panel's queued renders and lets an older version through again") {
    ws_outbox out;
    out.render(text("p:5"), "p", 5);
    out.render(text("q:1"), "q", 1);
    out.forget("p");
    CHECK(out.size() == 1);
    CHECK(out.pending_bytes() == 3);
    CHECK(out.render(text("p:1"), "p", 1) == ws_outbox::queued::ok);
  }

  TEST_CASE("queued bytes past the limit answer too_slow") {
    ws_outbox out{10};
    CHECK(out.render(text("12345"), "p", 1) == ws_outbox::queued::ok);
    CHECK(out.render(text("123456"), "q", 1) == ws_outbox::queued::too_slow);
  }

  TEST_CASE("after a closing frame nothing more is written") {
    socket_pair s;
    ws_outbox out;
    auto close = ws::close_payload(1001, "bye");
    out.push(text(close), ws::server_header(ws::opcode::close, close.size()), false, true);
    out.push(text("late"), ws::server_header(ws::opcode::text, 4), true);
    CHECK(out.flush(s.ours) == ws_outbox::flushed::closed);
    auto h = ws::server_header(ws::opcode::close, close.size());
    CHECK(s.take() == std::string{h.bytes.data(), h.size} + close);
    CHECK(out.size() == 0);
    CHECK(out.messages_sent() == 0);
  }

  TEST_CASE("a peer that is gone is reported, not retried") {
    socket_pair s;
    ::close(s.theirs);
    s.theirs = -1;
    ws_outbox out;
    out.push(text("x"), ws::server_header(ws::opcode::text, 1), true);
    CHECK(out.flush(s.ours) == ws_outbox::flushed::gone);
  }

  TEST_CASE("bound fixes the send buffer and leaves the queue the rest of the bound") {
    socket_pair s;
    ws_outbox out;
    out.bound(s.ours, 1024 * 1024);
    int kernel = 0;
    socklen_t len = sizeof kernel;
    REQUIRE(::getsockopt(s.ours, SOL_SOCKET, SO_SNDBUF, &kernel, &len) == 0);
    CHECK(kernel >= 64 * 1024);      // asked for 64 KiB; Linux reports twice that
    CHECK(kernel <= 2 * 64 * 1024);  // and no autotuned megabytes
    CHECK(out.limit() + static_cast<uint64_t>(kernel) == 1024 * 1024);
  }

  TEST_CASE("a bound smaller than the kernel's least buffer leaves the queue nothing") {
    socket_pair s;
    ws_outbox out;
    out.bound(s.ours, 1000);
    CHECK(out.limit() == 0);
    CHECK(out.render(text("x"), "p", 1) == ws_outbox::queued::too_slow);
  }
}
