#include "adapters/sandbox/wire.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tessera::sandbox_wire {
namespace {

// Waits for `events` on fd until `deadline`; false on timeout.
bool wait_for(int fd, short events, clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() < 0) return false;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count() + 1, 1 << 30)));
    if (n > 0) return true;
    if (n == 0 && clock::now() >= deadline) return false;
    if (n < 0 && errno != EINTR) return true;  // let the read/write report the error
  }
}

constexpr size_t max_passed_fds = 8;

// One read; on a socket with `fds`, a recvmsg that keeps the descriptors passed with the bytes.
ssize_t read_some(int fd, char* dst, size_t n, std::vector<int>* fds) {
  if (!fds) return ::read(fd, dst, n);
  iovec io{dst, n};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_passed_fds)];
  msghdr msg{};
  msg.msg_iov = &io;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t r = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  if (r < 0 && errno == ENOTSOCK) return ::read(fd, dst, n);
  if (r > 0)
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const auto* passed = reinterpret_cast<const int*>(CMSG_DATA(c));
        fds->insert(fds->end(), passed, passed + count);
      }
  return r;
}

// Reads exactly `n` bytes; `closed` if EOF comes first (after `got_any` bytes of the frame).
status read_exact(int fd, char* dst, size_t n, clock::time_point deadline, bool frame_started,
                  std::vector<int>* fds = nullptr) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = read_some(fd, dst + done, n - done, fds);
    if (r > 0) {
      done += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return (done == 0 && !frame_started) ? status::closed : status::io_error;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return status::io_error;
    if (!wait_for(fd, POLLIN, deadline)) return status::timed_out;
  }
  return status::ok;
}

}  // namespace

std::string_view to_string(status s) {
  switch (s) {
    case status::ok:
      return "ok";
    case status::closed:
      return "closed";
    case status::timed_out:
      return "timed out";
    case status::too_large:
      return "frame too large";
    case status::io_error:
      return "i/o error";
  }
  return "?";
}

status write_all(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w > 0) {
      done += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      wait_for(fd, POLLOUT, clock::now() + std::chrono::seconds(30));
      continue;
    }
    return status::io_error;
  }
  return status::ok;
}

status write_frame(int fd, std::string_view payload) {
  auto n = static_cast<uint32_t>(payload.size());
  char head[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                  static_cast<char>(n)};
  std::string frame;
  frame.reserve(4 + payload.size());
  frame.append(head, 4).append(payload);
  return write_all(fd, frame);
}

namespace {

status read_frame_impl(int fd, std::string& out, size_t max_bytes, clock::time_point deadline,
                       std::vector<int>* fds) {
  unsigned char head[4];
  if (!wait_for(fd, POLLIN, deadline)) return status::timed_out;
  if (auto s = read_exact(fd, reinterpret_cast<char*>(head), 4, deadline, false, fds);
      s != status::ok)
    return s;
  size_t n = (size_t{head[0]} << 24) | (size_t{head[1]} << 16) | (size_t{head[2]} << 8) | head[3];
  if (n > max_bytes) return status::too_large;
  out.resize(n);
  return read_exact(fd, out.data(), n, deadline, true, fds);
}

}  // namespace

status read_frame(int fd, std::string& out, size_t max_bytes, clock::time_point deadline) {
  return read_frame_impl(fd, out, max_bytes, deadline, nullptr);
}

status read_frame_with_fds(int fd, std::string& out, size_t max_bytes, clock::time_point deadline,
                           std::vector<int>& fds) {
  return read_frame_impl(fd, out, max_bytes, deadline, &fds);
}

status write_frame_with_fds(int fd, std::string_view payload, const std::vector<int>& fds) {
  if (fds.empty() || fds.size() > max_passed_fds)
    return fds.empty() ? write_frame(fd, payload) : status::io_error;
  auto n = static_cast<uint32_t>(payload.size());
  std::string frame;
  frame.reserve(4 + payload.size());
  frame += static_cast<char>(n >> 24);
  frame += static_cast<char>(n >> 16);
  frame += static_cast<char>(n >> 8);
  frame += static_cast<char>(n);
  frame.append(payload);
  // The descriptors go with the first sendmsg; the rest of the frame, if the socket took only
  // part of it, follows as plain writes.
  iovec io{frame.data(), frame.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_passed_fds)] = {};
  msghdr msg{};
  msg.msg_iov = &io;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  for (;;) {
    ssize_t w = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (w >= 0) return write_all(fd, std::string_view{frame}.substr(static_cast<size_t>(w)));
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      wait_for(fd, POLLOUT, clock::now() + std::chrono::seconds(30));
      continue;
    }
    return status::io_error;
  }
}

status read_to_end(int fd, std::string& out, size_t max_bytes, clock::time_point deadline) {
  char buf[65536];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r > 0) {
      if (out.size() + static_cast<size_t>(r) > max_bytes) return status::too_large;
      out.append(buf, static_cast<size_t>(r));
      continue;
    }
    if (r == 0) return status::ok;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return status::io_error;
    if (!wait_for(fd, POLLIN, deadline)) return status::timed_out;
  }
}

request_parts split_request(std::string_view payload) {
  auto nl = payload.find('\n');
  if (nl == std::string_view::npos) return {payload, {}};
  return {payload.substr(0, nl), payload.substr(nl + 1)};
}

}  // namespace tessera::sandbox_wire
