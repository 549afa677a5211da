// What one WebSocket connection still has to send: the queue of frames, the coalescing of
// renders, the bound on queued bytes, and the writes of whatever part of it a non-blocking
// socket takes. The pure core of ws_session (which adds the lock, the strand, the timers).
//
// Contract:
// - Not thread-safe: the session holds its lock around every call. No Asio, no timers: when
//   `flush` says `blocked`, the caller waits for the descriptor to become writable and calls
//   it again.
// - Frames leave whole and in queue order; a frame part-written stays first until it is done.
// - Renders (`render`): one that is not newer than what the connection has or has queued for
//   its panel is dropped; one newer than a queued, not yet started render of its panel takes
//   that render's place (the client skips the state in between); `forget` drops a panel's
//   queued renders and its version, so its next render goes whatever its version.
// - `push` and `render` answer `too_slow` once queued payload bytes exceed the limit (the
//   frame is queued all the same; the session then ends the connection).
// - After a frame pushed with `closes` is written, `flush` answers `closed` and writes
//   nothing more; `clear` drops everything (the connection is over).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/settings.hpp"
#include "web/ws_protocol.hpp"

namespace tessera::web {

class ws_outbox {
 public:
  enum class queued { ok, too_slow, dropped, replaced };
  enum class flushed { empty, blocked, closed, gone };

  explicit ws_outbox(uint64_t limit = config::defaults().ws_max_pending_bytes) : limit_(limit) {}
  void set_limit(uint64_t limit) { limit_ = limit; }
  uint64_t limit() const { return limit_; }

  // Bounds a connection's output at `max_pending` bytes, kernel included: fixes `fd`'s send
  // buffer (no autotuning up to 4 MiB) at a quarter of it, 64 KiB at most, and takes the rest
  // as the queue's limit. Linux counts twice the requested size for its bookkeeping, so the
  // limit leaves what the kernel reports (twice the request when it cannot be read).
  void bound(int fd, uint64_t max_pending);

  // A frame: `header` of size 0 sends `payload` as raw bytes (the 101 response). `message`:
  // a data message, counted by flush in `messages_sent`.
  queued push(std::shared_ptr<const std::string> payload, ws::frame_header header,
              bool message = false, bool closes = false);

  // A text message that is a render of `panel` at `version` (see the contract).
  queued render(std::shared_ptr<const std::string> text, const std::string& panel, int64_t version);

  void forget(const std::string& panel);

  // Writes queued frames to `fd` (MSG_DONTWAIT) until the queue is empty (`empty`), the socket
  // is full (`blocked`), a closing frame went out (`closed`) or the peer is gone (`gone`).
  flushed flush(int fd);

  void clear();

  uint64_t pending_bytes() const { return pending_bytes_; }
  size_t size() const { return queue_.size(); }
  uint64_t messages_sent() const { return messages_sent_; }
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  struct frame {
    std::shared_ptr<const std::string> payload;
    ws::frame_header header;  // size 0: raw bytes
    std::string panel;        // non-empty: a render of this panel
    bool message = false;
    bool closes = false;
    size_t sent = 0;  // bytes of header and payload written so far
    size_t size() const { return header.size + payload->size(); }
  };

  queued enqueue(frame f);

  std::vector<frame> queue_;
  std::unordered_map<std::string, int64_t> latest_;  // newest render version per panel
  uint64_t pending_bytes_ = 0;
  uint64_t limit_;
  uint64_t messages_sent_ = 0;
  uint64_t bytes_written_ = 0;
};

}  // namespace tessera::web
