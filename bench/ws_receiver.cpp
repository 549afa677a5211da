// A minimal WebSocket receiver for bench/fanout_bench.py --receiver cxx: COUNT connections to
// 127.0.0.1:PORT/ws on one epoll set, each subscribed to PANEL; it stamps (CLOCK_MONOTONIC, ns)
// the moment each connection has read a render containing the round's needle. Far cheaper per
// frame than the Python receivers, so the figure shows more of the server's own time.
//
//   ws_receiver PORT COUNT PANEL
// stdout: "ready <subscribed> <failed>" once every connection had its first render (or failed);
// stdin "arm <k> <deadline_ns>" -> "armed", then "round <missing> <cpu_seconds> <stamp>..."
// once every live connection read a render with <b>k</b> (or at the deadline); stdin "quit".
// Build: g++ -O2 -std=c++20 -o build/ws_receiver bench/ws_receiver.cpp
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

namespace {

enum class state { connecting, handshake, subscribed, ready, dead };

struct conn {
  int fd = -1;
  state st = state::connecting;
  std::string in;   // unparsed bytes
  std::string out;  // bytes not yet written
  int64_t stamp = 0;
};

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

std::string client_frame(const std::string& payload) {
  std::string f;
  f += static_cast<char>(0x81);
  unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
  if (payload.size() < 126) {
    f += static_cast<char>(0x80 | payload.size());
  } else {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>(payload.size() >> 8);
    f += static_cast<char>(payload.size() & 0xff);
  }
  f.append(reinterpret_cast<char*>(mask), 4);
  for (size_t i = 0; i < payload.size(); ++i) f += static_cast<char>(payload[i] ^ mask[i % 4]);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: ws_receiver PORT COUNT PANEL\n");
    return 2;
  }
  int port = std::atoi(argv[1]);
  size_t count = std::strtoul(argv[2], nullptr, 10);
  std::string panel = argv[3];
  rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  std::string handshake = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                          "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n";
  std::string subscribe = client_frame(R"({"type":"subscribe","panel":")" + panel + "\"}");
  int ep = epoll_create1(0);
  std::vector<conn> conns(count);
  std::vector<int> by_fd;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  size_t next = 0, connecting = 0, ready = 0, failed = 0;
  std::string needle;
  bool armed = false;
  size_t pending = 0;
  int64_t deadline = 0;
  double cpu0 = 0;

  auto fail = [&](size_t i) {
    auto& c = conns[i];
    if (c.st == state::dead) return;
    if (c.st == state::connecting || c.st == state::handshake || c.st == state::subscribed)
      --connecting;
    if (c.st == state::ready) --ready;
    if (armed && c.st == state::ready && !c.stamp) --pending;
    c.st = state::dead;
    ++failed;
    close(c.fd);
  };
  auto open_one = [&](size_t i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conns[i].fd = fd;
    if (by_fd.size() <= static_cast<size_t>(fd)) by_fd.resize(fd + 1024, -1);
    by_fd[fd] = static_cast<int>(i);
    ++connecting;
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 && errno != EINPROGRESS)
      return fail(i);
    epoll_event ev{EPOLLOUT | EPOLLIN, {.u64 = i}};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  };
  auto flush = [&](size_t i) {
    auto& c = conns[i];
    while (!c.out.empty()) {
      auto n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN) return;
        return fail(i);
      }
      c.out.erase(0, n);
    }
  };
  // Parses whole frames from c.in; a text frame is checked for the needle / first render.
  auto parse = [&](size_t i) {
    auto& c = conns[i];
    if (c.st == state::handshake) {
      auto end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) return;
      if (c.in.compare(0, 12, "HTTP/1.1 101") != 0) return fail(i);
      c.in.erase(0, end + 4);
      c.st = state::subscribed;
      c.out += subscribe;
      flush(i);
    }
    size_t at = 0;
    for (;;) {
      if (c.in.size() - at < 2) break;
      auto b1 = static_cast<unsigned char>(c.in[at + 1]);
      uint64_t len = b1 & 0x7f;
      size_t head = 2;
      if (len == 126) {
        if (c.in.size() - at < 4) break;
        len = (uint64_t(static_cast<unsigned char>(c.in[at + 2])) << 8) |
              static_cast<unsigned char>(c.in[at + 3]);
        head = 4;
      } else if (len == 127) {
        if (c.in.size() - at < 10) break;
        len = 0;
        for (int k = 0; k < 8; ++k) len = (len << 8) | static_cast<unsigned char>(c.in[at + 2 + k]);
        head = 10;
      }
      if (c.in.size() - at < head + len) break;
      auto opcode = static_cast<unsigned char>(c.in[at]) & 0x0f;
      std::string_view payload{c.in.data() + at + head, static_cast<size_t>(len)};
      if (opcode == 0x8) return fail(i);
      if (opcode == 0x1) {
        if (c.st == state::subscribed && payload.find("\"render\"") != std::string_view::npos) {
          c.st = state::ready;
          --connecting;
          ++ready;
        } else if (armed && c.st == state::ready && !c.stamp &&
                   payload.find(needle) != std::string_view::npos) {
          c.stamp = now_ns();
          --pending;
        }
      }
      at += head + len;
    }
    c.in.erase(0, at);
  };

  bool reported_ready = false;
  std::vector<epoll_event> events(1024);
  char buf[65536];
  std::string line;
  for (;;) {
    while (next < count && connecting < 128) open_one(next++);
    if (!reported_ready && next == count && connecting == 0) {
      std::printf("ready %zu %zu\n", ready, failed);
      std::fflush(stdout);
      reported_ready = true;
    }
    if (armed && (pending == 0 || now_ns() > deadline)) {
      armed = false;
      std::string out =
          "round " + std::to_string(pending) + " " + std::to_string(cpu_seconds() - cpu0);
      for (auto& c : conns)
        if (c.stamp) out += " " + std::to_string(c.stamp);
      std::printf("%s\n", out.c_str());
      std::fflush(stdout);
    }
    if (reported_ready && !armed) {  // wait for a command
      if (!std::getline(std::cin, line) || line == "quit") break;
      if (line.rfind("arm ", 0) == 0) {
        long long k = 0, d = 0;
        std::sscanf(line.c_str(), "arm %lld %lld", &k, &d);
        needle = "<b>" + std::to_string(k) + "</b>";
        deadline = d;
        for (auto& c : conns) c.stamp = 0;
        pending = ready;
        armed = true;
        cpu0 = cpu_seconds();
        std::printf("armed\n");
        std::fflush(stdout);
      }
      continue;
    }
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 50);
    for (int e = 0; e < n; ++e) {
      auto i = static_cast<size_t>(events[e].data.u64);
      auto& c = conns[i];
      if (c.st == state::dead) continue;
      if (c.st == state::connecting && (events[e].events & (EPOLLOUT | EPOLLERR))) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
          fail(i);
          continue;
        }
        c.st = state::handshake;
        c.out += handshake;
        epoll_event ev{EPOLLIN, {.u64 = i}};
        epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        flush(i);
      }
      if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
          auto got = recv(c.fd, buf, sizeof buf, 0);
          if (got > 0) {
            c.in.append(buf, static_cast<size_t>(got));
            if (got < static_cast<ssize_t>(sizeof buf)) break;
            continue;
          }
          if (got == 0 || errno != EAGAIN) fail(i);
          break;
        }
        if (c.st != state::dead) parse(i);
      }
    }
  }
  for (auto& c : conns)
    if (c.st != state::dead) close(c.fd);
  return 0;
}
