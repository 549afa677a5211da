#include "web/ws_outbox.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>

namespace tessera::web {

void ws_outbox::bound(int fd, uint64_t max_pending) {
  auto requested = static_cast<int>(std::min<uint64_t>(64 * 1024, max_pending / 4));
  int actual = 0;
  socklen_t len = sizeof actual;
  bool known = ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &requested, sizeof requested) == 0 &&
               ::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &actual, &len) == 0;
  auto kernel = known ? static_cast<uint64_t>(actual) : static_cast<uint64_t>(requested) * 2;
  limit_ = max_pending > kernel ? max_pending - kernel : 0;
}

ws_outbox::queued ws_outbox::enqueue(frame f) {
  pending_bytes_ += f.payload->size();
  queue_.push_back(std::move(f));
  return pending_bytes_ > limit_ ? queued::too_slow : queued::ok;
}

ws_outbox::queued ws_outbox::push(std::shared_ptr<const std::string> payload,
                                  ws::frame_header header, bool message, bool closes) {
  return enqueue({std::move(payload), header, {}, message, closes});
}

ws_outbox::queued ws_outbox::render(std::shared_ptr<const std::string> text,
                                    const std::string& panel, int64_t version) {
  auto header = ws::server_header(ws::opcode::text, text->size());
  auto& latest = latest_[panel];
  if (version <= latest) return queued::dropped;  // not newer than what the client will have
  latest = version;
  for (auto& f : queue_)
    if (f.sent == 0 && f.panel == panel) {  // only the newest is worth sending
      pending_bytes_ += text->size() - f.payload->size();
      f.payload = std::move(text);
      f.header = header;
      return queued::replaced;
    }
  return enqueue({std::move(text), header, panel, /*message=*/true});
}

void ws_outbox::forget(const std::string& panel) {
  latest_.erase(panel);
  std::erase_if(queue_, [&](const frame& f) {
    if (f.sent != 0 || f.panel != panel) return false;
    pending_bytes_ -= f.payload->size();
    return true;
  });
}

ws_outbox::flushed ws_outbox::flush(int fd) {
  while (!queue_.empty()) {
    auto& f = queue_.front();
    iovec iov[2];
    int parts = 0;
    size_t header = f.header.size;
    if (f.sent < header)
      iov[parts++] = {const_cast<char*>(f.header.bytes.data()) + f.sent, header - f.sent};
    size_t from = f.sent > header ? f.sent - header : 0;
    if (from < f.payload->size())
      iov[parts++] = {const_cast<char*>(f.payload->data()) + from, f.payload->size() - from};
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = parts;
    ssize_t n = ::sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? flushed::blocked : flushed::gone;
    }
    f.sent += static_cast<size_t>(n);
    bytes_written_ += static_cast<size_t>(n);
    if (f.sent < f.size()) continue;
    pending_bytes_ -= f.payload->size();
    bool message = f.message, closes = f.closes;
    queue_.erase(queue_.begin());
    if (message) ++messages_sent_;
    if (closes) {
      clear();
      return flushed::closed;
    }
  }
  return flushed::empty;
}

void ws_outbox::clear() {
  queue_.clear();
  pending_bytes_ = 0;
}

}  // namespace tessera::web
