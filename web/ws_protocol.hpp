// The server side of RFC 6455 without any I/O: the upgrade's checks and accept key, server
// frames (never masked, never fragmented, no extensions), and a reader of client frames.
//
// Contract of frame_reader: it consumes bytes as they arrive and yields whole messages and
// control frames in order. It enforces the RFC's rules for a server (client frames masked,
// reserved bits clear, control frames final and at most 125 bytes, continuation frames only
// inside a fragmented message, text valid UTF-8, close codes valid) and the message size limit,
// checked from the frame headers before any payload is buffered. The first violation yields one
// `error` event with the close code to answer (1002, 1007 or 1009) and nothing after it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::web::ws {

enum class opcode : uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA
};

constexpr uint16_t close_normal = 1000;
constexpr uint16_t close_going_away = 1001;
constexpr uint16_t close_protocol_error = 1002;
constexpr uint16_t close_invalid_data = 1007;
constexpr uint16_t close_too_big = 1009;

// Why an upgrade request cannot be accepted (400, or 426 for a version other than 13), or
// nullopt. `key` is Sec-WebSocket-Key, `version` Sec-WebSocket-Version.
struct upgrade_refusal {
  int status;
  std::string detail;
};
std::optional<upgrade_refusal> check_upgrade(std::string_view key, std::string_view version);

// Sec-WebSocket-Accept for a valid client key.
std::string accept_key(std::string_view key);

// The whole 101 response that accepts the upgrade of a valid client key.
std::string upgrade_response(std::string_view key);

// The header of a server frame: FIN set, no mask, the shortest length encoding.
struct frame_header {
  std::array<char, 10> bytes{};
  uint8_t size = 0;
};
frame_header server_header(opcode op, uint64_t payload_size);

// The payload of a close frame: the code, then the reason cut to fit 125 bytes.
std::string close_payload(uint16_t code, std::string_view reason);

struct event {
  enum class kind { message, ping, pong, close, error } what;
  opcode type = opcode::text;  // of a message: text or binary
  std::string data;            // message, ping or pong payload; close or error reason
  uint16_t code = 0;           // close: the peer's code (1005 when it sent none); error: ours
};

class frame_reader {
 public:
  explicit frame_reader(uint64_t max_message) : max_message_(max_message) {}

  // Appends the events of the complete frames at the front of `in`, erasing those bytes; what
  // is left is the start of a frame still arriving. After an error it consumes nothing more.
  void feed(std::string& in, std::vector<event>& out);

 private:
  // One frame at the front of `in`: false when it is not all there yet.
  bool next(std::string& in, size_t& at, std::vector<event>& out);
  void fail(std::vector<event>& out, uint16_t code, std::string reason);

  uint64_t max_message_;
  std::string message_;  // a fragmented message so far
  opcode message_type_ = opcode::text;
  bool in_message_ = false;
  bool failed_ = false;
};

}  // namespace tessera::web::ws
