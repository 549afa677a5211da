#include "web/ws_protocol.hpp"

#include <doctest/doctest.h>

#include <random>

using namespace tessera::web::ws;

namespace {

// A client frame as a browser sends it: masked with a fixed key.
std::string client_frame(opcode op, std::string_view payload, bool fin = true, bool masked = true,
                         uint8_t rsv = 0) {
  std::string f;
  f += static_cast<char>((fin ? 0x80 : 0) | rsv | static_cast<uint8_t>(op));
  uint8_t mask_bit = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    f += static_cast<char>(mask_bit | payload.size());
  } else if (payload.size() <= 0xFFFF) {
    f += static_cast<char>(mask_bit | 126);
    f += static_cast<char>(payload.size() >> 8);
    f += static_cast<char>(payload.size() & 0xFF);
  } else {
    f += static_cast<char>(mask_bit | 127);
    for (int i = 0; i < 8; ++i) f += static_cast<char>(uint64_t(payload.size()) >> (56 - 8 * i));
  }
  const char key[4] = {0x37, static_cast<char>(0xfa), 0x21, 0x3d};
  if (masked) f.append(key, 4);
  for (size_t i = 0; i < payload.size(); ++i) f += masked ? payload[i] ^ key[i % 4] : payload[i];
  return f;
}

std::vector<event> read_all(frame_reader& r, std::string bytes) {
  std::vector<event> out;
  r.feed(bytes, out);
  return out;
}

uint16_t error_code_of(const std::vector<event>& events) {
  REQUIRE_FALSE(events.empty());
  REQUIRE(events.back().what == event::kind::error);
  return events.back().code;
}

}  // namespace

TEST_SUITE("web.ws_protocol") {
  TEST_CASE("the accept key is the RFC 6455 example's") {
    CHECK(accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  }

  TEST_CASE("the 101 response switches to websocket with the key's accept value, then ends") {
    auto r = upgrade_response("dGhlIHNhbXBsZSBub25jZQ==");
    CHECK(r.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0) == 0);
    CHECK(r.find("\r\nUpgrade: websocket\r\n") != std::string::npos);
    CHECK(r.find("\r\nConnection: Upgrade\r\n") != std::string::npos);
    CHECK(r.find("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") !=
          std::string::npos);
    CHECK(r.size() >= 4);
    CHECK(r.substr(r.size() - 4) == "\r\n\r\n");
    CHECK(r.find("\r\n\r\n") == r.size() - 4);  // one header block, nothing after it
  }

  TEST_CASE("an upgrade needs version 13 and a key of 16 bytes in base64") {
    CHECK_FALSE(check_upgrade("dGhlIHNhbXBsZSBub25jZQ==", "13"));
    CHECK(check_upgrade("dGhlIHNhbXBsZSBub25jZQ==", "8")->status == 426);
    CHECK(check_upgrade("", "13")->status == 400);
    CHECK(check_upgrade("short==", "13")->status == 400);
    CHECK(check_upgrade("dGhlIHNhbXBsZSBub25j!Q==", "13")->status == 400);
  }

  TEST_CASE("server headers use the shortest length encoding") {
    auto small = server_header(opcode::text, 5);
    CHECK(small.size == 2);
    CHECK(uint8_t(small.bytes[0]) == 0x81);
    CHECK(uint8_t(small.bytes[1]) == 5);
    auto medium = server_header(opcode::text, 300);
    CHECK(medium.size == 4);
    CHECK(uint8_t(medium.bytes[1]) == 126);
    CHECK(((uint8_t(medium.bytes[2]) << 8) | uint8_t(medium.bytes[3])) == 300);
    auto large = server_header(opcode::binary, 70000);
    CHECK(large.size == 10);
    CHECK(uint8_t(large.bytes[0]) == 0x82);
    CHECK(uint8_t(large.bytes[1]) == 127);
    CHECK(uint8_t(large.bytes[7]) == 0x01);  // 70000 = 0x011170
    CHECK(uint8_t(large.bytes[8]) == 0x11);
    CHECK(uint8_t(large.bytes[9]) == 0x70);
  }

  TEST_CASE("a masked text frame is read as one message, also when it arrives byte by byte") {
    frame_reader r{1 << 20};
    auto frame = client_frame(opcode::text, R"({"type":"subscribe","panel":"p"})");
    SUBCASE("at once") {
      auto events = read_all(r, frame);
      REQUIRE(events.size() == 1);
      CHECK(events[0].what == event::kind::message);
      CHECK(events[0].data == R"({"type":"subscribe","panel":"p"})");
    }
    SUBCASE("byte by byte") {
      std::string in;
      std::vector<event> events;
      for (char c : frame) {
        in += c;
        r.feed(in, events);
      }
      REQUIRE(events.size() == 1);
      CHECK(events[0].data == R"({"type":"subscribe","panel":"p"})");
      CHECK(in.empty());
    }
  }

  TEST_CASE("fragments join into one message with control frames between them") {
    frame_reader r{1 << 20};
    auto events =
        read_all(r, client_frame(opcode::text, "hel", false) + client_frame(opcode::ping, "p1") +
                        client_frame(opcode::continuation, "lo", false) +
                        client_frame(opcode::continuation, "!"));
    REQUIRE(events.size() == 2);
    CHECK(events[0].what == event::kind::ping);
    CHECK(events[0].data == "p1");
    CHECK(events[1].what == event::kind::message);
    CHECK(events[1].data == "hello!");
  }

  TEST_CASE("lengths of 16 and 64 bits are read") {
    frame_reader r{1 << 20};
    std::string medium(300, 'a'), large(70000, 'b');
    auto events =
        read_all(r, client_frame(opcode::text, medium) + client_frame(opcode::binary, large));
    REQUIRE(events.size() == 2);
    CHECK(events[0].data == medium);
    CHECK(events[1].type == opcode::binary);
    CHECK(events[1].data == large);
  }

  TEST_CASE("a close frame carries its code and reason; an empty one means 1005") {
    frame_reader r{1 << 20};
    auto events = read_all(r, client_frame(opcode::close, close_payload(1000, "bye")));
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == event::kind::close);
    CHECK(events[0].code == 1000);
    CHECK(events[0].data == "bye");
    frame_reader r2{1 << 20};
    auto empty = read_all(r2, client_frame(opcode::close, ""));
    REQUIRE(empty.size() == 1);
    CHECK(empty[0].code == 1005);
  }

  TEST_CASE("protocol violations end the reading with the close code to answer") {
    frame_reader r{1024};
    SUBCASE("an unmasked client frame") {
      CHECK(error_code_of(read_all(r, client_frame(opcode::text, "x", true, false))) == 1002);
    }
    SUBCASE("reserved bits") {
      CHECK(error_code_of(read_all(r, client_frame(opcode::text, "x", true, true, 0x40))) == 1002);
    }
    SUBCASE("an unknown opcode") {
      CHECK(error_code_of(read_all(r, client_frame(static_cast<opcode>(3), "x"))) == 1002);
    }
    SUBCASE("a fragmented ping") {
      CHECK(error_code_of(read_all(r, client_frame(opcode::ping, "x", false))) == 1002);
    }
    SUBCASE("a control frame over 125 bytes") {
      CHECK(error_code_of(read_all(r, client_frame(opcode::ping, std::string(126, 'x')))) == 1002);
    }
    SUBCASE("a continuation without a message") {
      CHECK(error_code_of(read_all(r, client_frame(opcode::continuation, "x"))) == 1002);
    }
    SUBCASE("a new message inside a fragmented one") {
      CHECK(error_code_of(read_all(r, client_frame(opcode::text, "a", false) +
                                          client_frame(opcode::text, "b"))) == 1002);
    }
    SUBCASE("text that is not UTF-8") {
      CHECK(error_code_of(read_all(r, client_frame(opcode::text, "\xc3\x28"))) == 1007);
    }
    SUBCASE("an invalid close code") {
      CHECK(error_code_of(read_all(r, client_frame(opcode::close, close_payload(1005, "")))) ==
            1002);
    }
    SUBCASE("a message over the limit, refused from its header before its payload arrives") {
      auto frame = client_frame(opcode::text, std::string(2000, 'x'));
      CHECK(error_code_of(read_all(r, frame.substr(0, 8))) == 1009);
    }
    SUBCASE("fragments that add up to more than the limit") {
      CHECK(error_code_of(read_all(
                r, client_frame(opcode::text, std::string(600, 'x'), false) +
                       client_frame(opcode::continuation, std::string(600, 'x')))) == 1009);
    }
  }

  TEST_CASE("nothing is read after an error, and events before it are kept") {
    frame_reader r{1024};
    auto events = read_all(r, client_frame(opcode::text, "ok") +
                                  client_frame(opcode::text, "x", true, false) +
                                  client_frame(opcode::text, "after"));
    REQUIRE(events.size() == 2);
    CHECK(events[0].data == "ok");
    CHECK(events[1].what == event::kind::error);
    CHECK(read_all(r, client_frame(opcode::text, "later")).empty());
  }

  TEST_CASE("any split of a stream of frames into reads yields the same events") {
    std::string stream;
    std::vector<std::string> sent;
    std::mt19937 rng{20261201};
    for (int i = 0; i < 200; ++i) {
      std::string text(std::uniform_int_distribution<size_t>{0, 70000}(rng) % (i % 3 ? 300 : 70000),
                       static_cast<char>('a' + i % 26));
      if (i % 5 == 0) {  // fragmented, with a ping in between
        stream +=
            client_frame(opcode::text, std::string_view{text}.substr(0, text.size() / 2), false);
        stream += client_frame(opcode::ping, "x");
        stream +=
            client_frame(opcode::continuation, std::string_view{text}.substr(text.size() / 2));
      } else {
        stream += client_frame(opcode::text, text);
      }
      sent.push_back(std::move(text));
    }
    for (int round = 0; round < 5; ++round) {
      frame_reader r{1 << 20};
      std::vector<event> events;
      std::string in;
      for (size_t at = 0; at < stream.size();) {
        size_t n = std::uniform_int_distribution<size_t>{1, 9000}(rng);
        in.append(stream, at, n);
        at += n;
        r.feed(in, events);
      }
      CHECK(in.empty());
      std::vector<std::string> messages;
      size_t pings = 0;
      for (auto& e : events) {
        REQUIRE(e.what != event::kind::error);
        if (e.what == event::kind::ping) ++pings;
        if (e.what == event::kind::message) messages.push_back(e.data);
      }
      CHECK(pings == 40);
      CHECK(messages == sent);
    }
  }

  TEST_CASE("a close payload keeps a long reason within 125 bytes and valid UTF-8") {
    std::string reason;
    for (int i = 0; i < 100; ++i) reason += "\xc3\xa9";  // é, two bytes each
    auto p = close_payload(1001, reason);
    CHECK(p.size() <= 125);
    CHECK(p.size() % 2 == 0);  // the code, then whole two-byte characters
    CHECK(uint8_t(p[0]) == 0x03);
    CHECK(uint8_t(p[1]) == 0xE9);
  }
}
