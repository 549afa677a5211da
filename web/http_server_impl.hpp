// The state of one http_server, shared by its HTTP sessions (http_server.cpp) and its
// WebSocket sessions (ws_session.cpp). Internal to web/: Asio is visible here.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <atomic>
#include <boost/asio.hpp>
#include <mutex>
#include <unordered_map>

#include "web/http_server.hpp"

namespace tessera::web {

class ws_session;

struct http_server::impl {
  options opts;
  handler on_request;
  boost::asio::io_context ioc;
  // All acceptor work runs on this strand.
  boost::asio::ip::tcp::acceptor acceptor{boost::asio::make_strand(ioc)};
  boost::asio::steady_timer accept_pause{acceptor.get_executor()};
  bool accept_failing = false;  // logged once per run of failures
  boost::asio::signal_set signals{ioc, SIGINT, SIGTERM};
  std::atomic<bool> draining{false};
  std::atomic<int64_t> in_flight{0};
  std::atomic<int64_t> open_sessions{0};  // HTTP and WebSocket connections

  void session_opened() {
    ++open_sessions;
    if (opts.metrics) opts.metrics->open.Increment();
  }
  void session_closed() {
    --open_sessions;
    if (opts.metrics) opts.metrics->open.Decrement();
  }
  // Open WebSocket connections, told to go away at shutdown.
  std::mutex ws_mutex;
  std::unordered_map<const ws_session*, std::weak_ptr<ws_session>> ws_sessions;

  impl(options o, handler h) : opts(std::move(o)), on_request(std::move(h)) {}

  void accept();
  void begin_shutdown();
  void wait_for_drain(std::shared_ptr<boost::asio::steady_timer> timer,
                      std::chrono::steady_clock::time_point deadline,
                      std::chrono::steady_clock::time_point quiet_since);
};

}  // namespace tessera::web
