// What one WebSocket connection receives: the reads of a non-blocking socket, the bytes not
// yet a whole frame, the events of the whole ones, and what the client's silence calls for.
// The pure core of ws_session's input side (the session adds the strand, the timers and the
// handler), as ws_outbox is of its output side.
//
// Contract:
// - Not thread-safe: the session's strand makes every call. No Asio: when `read` has taken
//   what there is, the caller waits for the descriptor to become readable and calls it again.
// - `read(fd)` takes what the socket holds now (MSG_DONTWAIT), stopping after about
//   `max_per_read` bytes so other connections get a turn; it says how many bytes came and
//   whether the client's side ended (EOF, or an error other than EAGAIN).
// - `take_events` turns the whole frames received so far into events, in order
//   (ws_protocol.hpp's frame_reader: a violation is one error event; nothing after it is
//   parsed). Bytes of a frame still arriving stay for the next call.
// - After `discard()` (the connection is closing) what arrives is read and dropped, and no
//   event comes any more.
// - `keepalive`: a client silent for half of the idle timeout is pinged once per silence; one
//   silent for all of it is closed; `next` is when to look again (at least 10 ms away).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "web/ws_protocol.hpp"

namespace tessera::web {

class ws_inbox {
 public:
  struct read_result {
    size_t bytes = 0;    // received by this call (dropped ones included)
    bool ended = false;  // the client's side is closed or failed
  };

  explicit ws_inbox(uint64_t max_message, size_t max_per_read = 256 * 1024)
      : reader_(max_message), max_per_read_(max_per_read) {}

  // Bytes that arrived before the session began (after the upgrade request, in its buffer).
  void append(std::string_view bytes);
  read_result read(int fd);
  void take_events(std::vector<ws::event>& out);

  void discard();
  bool discarding() const { return discarding_; }
  size_t buffered() const { return in_.size(); }

 private:
  ws::frame_reader reader_;
  std::string in_;  // received bytes not yet a whole frame
  size_t max_per_read_;
  bool discarding_ = false;
};

struct keepalive_step {
  enum class act { wait, ping, close } what = act::wait;
  std::chrono::steady_clock::duration next{};  // when to look again (wait and ping)
};

// `silent`: since the client was last heard; `pinged`: a ping already went out in this silence.
keepalive_step keepalive(std::chrono::steady_clock::duration silent,
                         std::chrono::steady_clock::duration idle_timeout, bool pinged);

}  // namespace tessera::web
