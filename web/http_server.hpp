// The HTTP/1.1 listener (Boost.Beast): accepts connections, parses requests with limits, hands
// each one to a handler, writes the response, keeps connections alive.
//
// Contract:
// - `start` binds and listens; it returns the bound port (useful with port 0) or a message.
// - `run` runs the I/O threads and blocks until `shutdown` (or SIGINT/SIGTERM) has drained.
// - The handler is called on an I/O thread and must not block; it completes through the
//   responder, from any thread (the response is posted back to the connection's strand).
// - A body over `body_limit` is answered 413 (before reading it, when Content-Length says so);
//   an unparsable request 400; headers over 16 KiB 431. Such connections are closed.
// - Bad clients: a connection past `max_connections` (HTTP and WebSocket together) is answered
//   503 and closed; a request whose head and body are not complete `header_timeout` after the
//   server began waiting for it (at accept, or at its first byte on a keep-alive connection) is
//   answered 408 and closed. A keep-alive connection idle between requests is closed after
//   `keepalive_timeout`.
// - Before any route or upgrade, request_guard.hpp's rules: a target that is not origin-form
//   (or absolute-form naming this server) is 400, a Host not served 421 (HTTP/1.1 without
//   Host 400), a state-changing request or upgrade from an untrusted Origin 403. Every answer
//   carries `X-Content-Type-Options: nosniff` and `Cache-Control: no-store` unless the route
//   sets its own Cache-Control.
// - Shutdown: stop accepting, finish in-flight requests for at most `grace`, close the rest.
// - WebSocket (`options::ws`): GET /ws with an upgrade is checked (the token, then the key and
//   version: 400, or 426 for a version other than 13), then becomes a connection
//   (ws_session.hpp) whose messages go to the handler one at a time, in order, and whose sends
//   never block: renders of a panel coalesce (see live.hpp), and a client that stops reading
//   is closed (stall_timeout, max_pending_bytes: the queue plus the kernel's send buffer, which
//   is fixed, not autotuned). A message over `body_limit` closes it (1009).
// Beast and Asio stay inside web/: http_server.cpp, ws_session.* and http_server_impl.hpp;
// nothing here includes them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>

#include "config/settings.hpp"
#include "web/http_types.hpp"
#include "web/live.hpp"
#include "web/request_guard.hpp"

namespace prometheus {
class Counter;
template <typename T>
class Family;
class Gauge;
class Registry;
}  // namespace prometheus

namespace tessera::web {

// The listener's own metrics: open connections, connections refused over the limit, requests
// that timed out arriving, requests the guard refused before any route (by reason).
struct http_metrics {
  explicit http_metrics(prometheus::Registry& registry);
  prometheus::Gauge& open;
  prometheus::Counter& refused;
  prometheus::Counter& timed_out;
  prometheus::Family<prometheus::Counter>& guard_refusals;
  prometheus::Counter& bad_target;  // not origin-form (400)
  prometheus::Counter& bad_host;    // a Host not served (421), none or two (400)
  prometheus::Counter& bad_origin;  // a foreign Origin on a write or upgrade (403)
};

class http_server {
 public:
  struct options {
    std::string host;
    uint16_t port = 0;
    uint64_t body_limit = 0;
    unsigned threads = 1;
    std::chrono::milliseconds shutdown_grace{0};
    uint64_t max_connections = 0;
    std::chrono::milliseconds header_timeout{0};
    std::chrono::milliseconds keepalive_timeout{0};
    host_policy guard;                      // its port is set to the bound one by `start`
    std::shared_ptr<http_metrics> metrics;  // optional
    // WebSocket upgrades of GET /ws (off when `open` is empty).
    struct websocket {
      // A refusal (e.g. 401) to answer instead of upgrading, or nullopt to accept.
      std::function<std::optional<response>(const request&)> check;
      // The handler of an accepted connection; it gets the connection to send on.
      std::function<std::shared_ptr<ws_handler>(std::shared_ptr<ws_connection>)> open;
      std::shared_ptr<live_hub> hub;  // metrics
      // A write that does not complete in this time, or more queued output than this, means
      // the client stopped reading: the connection is closed.
      std::chrono::milliseconds stall_timeout{0};
      uint64_t max_pending_bytes = 0;
      // A client heard nothing from for this long is closed; at half of it, it is pinged.
      std::chrono::milliseconds idle_timeout{0};
    } ws;

    // The server.* settings (threads: server.io_threads, or one per core; the Host check on a
    // loopback listen or when server.allowed_hosts is set). The metrics and the WebSocket's
    // check, open and hub are the caller's to set.
    static options from_settings(const config::settings& s);
  };
  using handler = std::function<void(request, responder)>;

  http_server(options opts, handler h);
  ~http_server();

  std::variant<uint16_t, std::string> start();

  // Blocks until stopped; handles SIGINT and SIGTERM by shutting down gracefully.
  void run();

  // Thread-safe; returns at once, `run` returns once drained.
  void shutdown();

  // Runs `f` on one of the I/O threads (thread-safe; dropped if the server has stopped).
  void post(std::function<void()> f);

  // Drops the handler (and what it captured); only after `run` returned.
  void clear_handler();

  struct impl;  // Asio state, defined in http_server_impl.hpp

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace tessera::web
