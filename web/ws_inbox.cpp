#include "web/ws_inbox.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace tessera::web {
namespace {

constexpr size_t read_chunk = 64 * 1024;

}  // namespace

void ws_inbox::append(std::string_view bytes) {
  if (!discarding_) in_.append(bytes);
}

ws_inbox::read_result ws_inbox::read(int fd) {
  static thread_local std::vector<char> chunk(read_chunk);
  read_result r;
  for (;;) {
    ssize_t n = ::recv(fd, chunk.data(), chunk.size(), MSG_DONTWAIT);
    if (n > 0) {
      r.bytes += static_cast<size_t>(n);
      if (!discarding_) in_.append(chunk.data(), static_cast<size_t>(n));
      if (static_cast<size_t>(n) < chunk.size() || r.bytes >= max_per_read_) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    r.ended = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    break;
  }
  return r;
}

void ws_inbox::take_events(std::vector<ws::event>& out) {
  if (discarding_) return;
  reader_.feed(in_, out);
  if (in_.capacity() > 16 * 1024 && in_.size() < 4 * 1024) in_.shrink_to_fit();
}

void ws_inbox::discard() {
  discarding_ = true;
  in_ = {};
}

keepalive_step keepalive(std::chrono::steady_clock::duration silent,
                         std::chrono::steady_clock::duration idle_timeout, bool pinged) {
  using act = keepalive_step::act;
  constexpr std::chrono::steady_clock::duration soonest = std::chrono::milliseconds(10);
  if (silent >= idle_timeout) return {act::close, {}};
  auto ping_after = idle_timeout / 2;
  if (silent < ping_after) return {act::wait, std::max(ping_after - silent, soonest)};
  return {pinged ? act::wait : act::ping, std::max(idle_timeout - silent, soonest)};
}

}  // namespace tessera::web
