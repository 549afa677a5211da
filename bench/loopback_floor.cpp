// The kernel's floor for a fan-out on this machine: N loopback TCP connections, one small
// WebSocket-sized frame (100 bytes) sent to each from T threads with plain send(), received
// by 2 processes with epoll. Prints, per round, the time until every receiver has its frame.
// Nothing of tessera runs here; bench/README.md compares the server's fan-out with it.
//   g++ -O2 -std=c++20 -pthread bench/loopback_floor.cpp -o build/loopback_floor
//   build/loopback_floor 10000 1; build/loopback_floor 10000 2
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>
static long long now_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}
int main(int argc, char** argv) {
  int n = atoi(argv[1]), threads = atoi(argv[2]), rounds = 7, procs = 2;
  rlimit rl{65536, 65536};
  setrlimit(RLIMIT_NOFILE, &rl);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(ls, (sockaddr*)&a, sizeof a);
  listen(ls, 4096);
  socklen_t al = sizeof a;
  getsockname(ls, (sockaddr*)&a, &al);
  int res[2];
  pipe(res);
  for (int p = 0; p < procs; ++p) {
    if (fork() == 0) {
      int cnt = n / procs;
      std::vector<int> fds;
      int ep = epoll_create1(0);
      for (int i = 0; i < cnt; ++i) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, (sockaddr*)&a, sizeof a)) {
          perror("connect");
          exit(1);
        }
        fcntl(s, F_SETFL, O_NONBLOCK);
        epoll_event e{EPOLLIN, {.fd = s}};
        epoll_ctl(ep, EPOLL_CTL_ADD, s, &e);
        fds.push_back(s);
      }
      char buf[4096];
      epoll_event evs[256];
      for (int r = 0; r < rounds; ++r) {
        int got = 0;
        long long last = 0;
        while (got < cnt) {
          int k = epoll_wait(ep, evs, 256, 5000);
          if (k <= 0) {
            fprintf(stderr, "timeout\n");
            exit(1);
          }
          for (int j = 0; j < k; ++j) {
            int m = read(evs[j].data.fd, buf, sizeof buf);
            if (m > 0) {
              ++got;
              last = now_ns();
            }
          }
        }
        write(res[1], &last, sizeof last);
      }
      exit(0);
    }
  }
  std::vector<int> conns;
  for (int i = 0; i < n; ++i) {
    int c = accept(ls, nullptr, nullptr);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c, F_SETFL, O_NONBLOCK);
    conns.push_back(c);
  }
  char frame[100];
  memset(frame, 'x', sizeof frame);
  frame[0] = 0x81;
  frame[1] = 98;
  std::vector<double> all;
  for (int r = 0; r < rounds; ++r) {
    usleep(200000);
    rusage u0;
    getrusage(RUSAGE_SELF, &u0);
    long long t0 = now_ns();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        for (int i = t; i < n; i += threads)
          if (send(conns[i], frame, sizeof frame, MSG_DONTWAIT | MSG_NOSIGNAL) !=
              (ssize_t)sizeof frame)
            abort();
      });
    for (auto& t : ts) t.join();
    long long sent = now_ns();
    long long last = 0;
    for (int p = 0; p < procs; ++p) {
      long long l;
      read(res[0], &l, sizeof l);
      last = std::max(last, l);
    }
    rusage u1;
    getrusage(RUSAGE_SELF, &u1);
    double cpu = (u1.ru_utime.tv_sec - u0.ru_utime.tv_sec) * 1e3 +
                 (u1.ru_utime.tv_usec - u0.ru_utime.tv_usec) / 1e3 +
                 (u1.ru_stime.tv_sec - u0.ru_stime.tv_sec) * 1e3 +
                 (u1.ru_stime.tv_usec - u0.ru_stime.tv_usec) / 1e3;
    printf("round %d: sent in %.1f ms, all received %.1f ms, sender cpu %.1f ms\n", r,
           (sent - t0) / 1e6, (last - t0) / 1e6, cpu);
    all.push_back((last - t0) / 1e6);
  }
  std::sort(all.begin(), all.end());
  printf("median all %.1f ms\n", all[all.size() / 2]);
  while (wait(nullptr) > 0) {
  }
}
