#include "web/ws_protocol.hpp"

#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/websocket/detail/hybi13.hpp>
#include <boost/beast/websocket/detail/utf8_checker.hpp>

namespace tessera::web::ws {
namespace {

namespace detail = boost::beast::websocket::detail;

constexpr size_t max_control_payload = 125;

// Codes a peer may send (RFC 6455 7.4.1 and the IANA registry, as Beast reads them).
bool valid_close_code(uint16_t c) {
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) || (c >= 3000 && c <= 4999);
}

bool valid_utf8(std::string_view s) { return detail::check_utf8(s.data(), s.size()); }

}  // namespace

std::optional<upgrade_refusal> check_upgrade(std::string_view key, std::string_view version) {
  if (version != "13") return upgrade_refusal{426, "Sec-WebSocket-Version must be 13"};
  // The key is 16 random bytes in base64: 24 characters ending in "==".
  bool base64 = key.size() == 24 && key.substr(22) == "==";
  for (size_t i = 0; base64 && i < 22; ++i) {
    char c = key[i];
    base64 = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
             c == '+' || c == '/';
  }
  if (!base64) return upgrade_refusal{400, "Sec-WebSocket-Key must be 16 bytes in base64"};
  return std::nullopt;
}

std::string accept_key(std::string_view key) {
  detail::sec_ws_accept_type accept;
  detail::make_sec_ws_accept(accept, {key.data(), key.size()});
  return {accept.data(), accept.size()};
}

std::string upgrade_response(std::string_view key) {
  return "HTTP/1.1 101 Switching Protocols\r\n"
         "Upgrade: websocket\r\n"
         "Connection: Upgrade\r\n"
         "Server: tessera\r\n"
         "Sec-WebSocket-Accept: " +
         accept_key(key) + "\r\n\r\n";
}

frame_header server_header(opcode op, uint64_t n) {
  frame_header h;
  h.bytes[0] = static_cast<char>(0x80 | static_cast<uint8_t>(op));
  if (n < 126) {
    h.bytes[1] = static_cast<char>(n);
    h.size = 2;
  } else if (n <= 0xFFFF) {
    h.bytes[1] = 126;
    h.bytes[2] = static_cast<char>(n >> 8);
    h.bytes[3] = static_cast<char>(n);
    h.size = 4;
  } else {
    h.bytes[1] = 127;
    for (int i = 0; i < 8; ++i) h.bytes[2 + i] = static_cast<char>(n >> (56 - 8 * i));
    h.size = 10;
  }
  return h;
}

std::string close_payload(uint16_t code, std::string_view reason) {
  std::string p;
  p += static_cast<char>(code >> 8);
  p += static_cast<char>(code & 0xFF);
  reason = reason.substr(0, max_control_payload - 2);
  // Cut at a character boundary, so the reason stays valid UTF-8.
  while (!reason.empty() && !valid_utf8(reason)) reason.remove_suffix(1);
  p += reason;
  return p;
}

void frame_reader::fail(std::vector<event>& out, uint16_t code, std::string reason) {
  failed_ = true;
  message_.clear();
  message_.shrink_to_fit();
  out.push_back({event::kind::error, opcode::close, std::move(reason), code});
}

void frame_reader::feed(std::string& in, std::vector<event>& out) {
  size_t at = 0;
  while (!failed_ && next(in, at, out)) {
  }
  in.erase(0, failed_ ? in.size() : at);
}

bool frame_reader::next(std::string& in, size_t& at, std::vector<event>& out) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(in[at + i]); };
  size_t available = in.size() - at;
  if (available < 2) return false;
  bool fin = byte(0) & 0x80;
  auto op = static_cast<opcode>(byte(0) & 0x0F);
  bool masked = byte(1) & 0x80;
  uint64_t length = byte(1) & 0x7F;
  size_t header = 2;
  if (length == 126) {
    header = 4;
    if (available < header) return false;
    length = (uint64_t{byte(2)} << 8) | byte(3);
  } else if (length == 127) {
    header = 10;
    if (available < header) return false;
    length = 0;
    for (int i = 0; i < 8; ++i) length = (length << 8) | byte(2 + i);
    if (length >> 63) return fail(out, close_protocol_error, "frame length over 2^63"), false;
  }
  if (byte(0) & 0x70)
    return fail(out, close_protocol_error, "reserved bits set (no extension was agreed)"), false;
  bool control = static_cast<uint8_t>(op) & 0x8;
  switch (op) {
    case opcode::continuation:
      if (!in_message_)
        return fail(out, close_protocol_error, "a continuation frame outside a message"), false;
      break;
    case opcode::text:
    case opcode::binary:
      if (in_message_)
        return fail(out, close_protocol_error, "a new message before the last one ended"), false;
      break;
    case opcode::close:
    case opcode::ping:
    case opcode::pong:
      if (!fin || length > max_control_payload)
        return fail(out, close_protocol_error, "a control frame must be final and short"), false;
      break;
    default:
      return fail(out, close_protocol_error, "unknown opcode"), false;
  }
  if (!masked) return fail(out, close_protocol_error, "client frames must be masked"), false;
  if (!control && message_.size() + length > max_message_)
    return fail(out, close_too_big,
                "message over the limit of " + std::to_string(max_message_) + " bytes"),
           false;
  if (available < header + 4 + length) return false;
  const char* mask = in.data() + at + header;
  std::string_view raw{in.data() + at + header + 4, length};
  std::string payload;
  std::string& target = control ? payload : message_;
  size_t base = target.size();
  target.append(raw);
  for (size_t i = 0; i < length; ++i) target[base + i] ^= mask[i % 4];
  at += header + 4 + length;

  if (control) {
    if (op == opcode::ping) {
      out.push_back({event::kind::ping, op, std::move(payload)});
    } else if (op == opcode::pong) {
      out.push_back({event::kind::pong, op, std::move(payload)});
    } else if (payload.empty()) {
      out.push_back({event::kind::close, op, {}, 1005});
    } else {
      if (payload.size() < 2)
        return fail(out, close_protocol_error, "a close frame with a 1-byte payload"), false;
      auto code = static_cast<uint16_t>((uint8_t(payload[0]) << 8) | uint8_t(payload[1]));
      if (!valid_close_code(code))
        return fail(out, close_protocol_error, "invalid close code " + std::to_string(code)), false;
      auto reason = payload.substr(2);
      if (!valid_utf8(reason))
        return fail(out, close_invalid_data, "a close reason that is not UTF-8"), false;
      out.push_back({event::kind::close, op, std::move(reason), code});
    }
    return true;
  }
  if (op != opcode::continuation) {
    message_type_ = op;
    in_message_ = true;
  }
  if (!fin) return true;
  in_message_ = false;
  if (message_type_ == opcode::text && !valid_utf8(message_))
    return fail(out, close_invalid_data, "a text message that is not UTF-8"), false;
  out.push_back({event::kind::message, message_type_, std::move(message_)});
  message_ = {};
  return true;
}

}  // namespace tessera::web::ws
