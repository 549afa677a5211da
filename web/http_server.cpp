#include "web/http_server.hpp"

#include <prometheus/registry.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "runtime/log.hpp"
#include "web/http_server_impl.hpp"
#include "web/problem.hpp"
#include "web/request_guard.hpp"
#include "web/ws_protocol.hpp"
#include "web/ws_session.hpp"

namespace tessera::web {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

constexpr auto write_timeout = std::chrono::seconds(60);
constexpr auto drain_timeout = std::chrono::seconds(2);
constexpr uint32_t header_limit = 16 * 1024;

}  // namespace

namespace {

class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket socket, http_server::impl& server)
      : stream_(std::move(socket)), server_(server), arrival_(stream_.get_executor()) {
    server_.session_opened();
  }
  ~session() { server_.session_closed(); }

  void start() { read_header(); }

  // Past server.max_connections: a 503 instead of a session.
  void refuse() {
    if (server_.opts.metrics) server_.opts.metrics->refused.Increment();
    fail_and_close(errc::unavailable, "too many connections: the server holds at most " +
                                          std::to_string(server_.opts.max_connections) +
                                          " (server.max_connections); retry later");
  }

 private:
  // The head and body of a request must arrive within header_timeout of this call.
  void read_header() {
    parser_.emplace();
    parser_->body_limit(server_.opts.body_limit);
    parser_->header_limit(header_limit);
    stream_.expires_never();
    timed_out_ = false;
    arrival_.expires_after(server_.opts.header_timeout);
    arrival_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec) return;  // cancelled: the request arrived, or the connection closed
      self->timed_out_ = true;
      beast::error_code ignored;
      self->stream_.socket().cancel(ignored);
    });
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&session::on_header, shared_from_this()));
  }

  // Keep-alive: waits up to keepalive_timeout for the next request's first bytes, then reads it.
  void await_request() {
    if (buffer_.size() > 0) return read_header();  // pipelined: already here
    stream_.expires_after(server_.opts.keepalive_timeout);
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              if (ec) return self->close();
                              self->buffer_.commit(n);
                              self->read_header();
                            });
  }

  void on_header(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    auto& req = parser_->get();
    auto length = parser_->content_length();
    if (length && *length > server_.opts.body_limit)
      return fail_and_close(errc::payload_too_large, "body of " + std::to_string(*length) +
                                                         " bytes exceeds the limit of " +
                                                         std::to_string(server_.opts.body_limit));
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                     req.version());
      return http::async_write(stream_, *cont,
                               [self = shared_from_this(), cont](beast::error_code e, size_t) {
                                 if (e) return self->close();
                                 self->read_body();
                               });
    }
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&session::on_read, shared_from_this()));
  }

  void on_read_error(beast::error_code ec) {
    arrival_.cancel();
    if (timed_out_) {
      if (server_.opts.metrics) server_.opts.metrics->timed_out.Increment();
      if (!parser_->got_some() && buffer_.size() == 0) return close();  // never began
      return fail_and_close(errc::request_timeout,
                            "the request did not arrive within " +
                                std::to_string(server_.opts.header_timeout.count()) +
                                " ms (server.header_timeout_ms)");
    }
    if (ec == http::error::body_limit)
      return fail_and_close(
          errc::payload_too_large,
          "body exceeds the limit of " + std::to_string(server_.opts.body_limit) + " bytes");
    if (ec == http::error::header_limit)
      return fail_and_close(errc::headers_too_large, "request headers exceed 16 KiB");
    if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message)
      return fail_and_close(errc::invalid_argument, "malformed HTTP request: " + ec.message());
    close();
  }

  void on_read(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    arrival_.cancel();
    auto& req = parser_->get();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    head_ = req.method() == http::verb::head;
    request r;
    r.method = std::string{req.method_string()};
    r.host = std::string{req[http::field::host]};
    request_head h;
    h.target = std::string_view{req.target().data(), req.target().size()};
    h.version = req.version();
    h.host_fields = req.count(http::field::host);
    h.origin = req[http::field::origin];
    h.sec_fetch_site = req["Sec-Fetch-Site"];
    h.upgrade = websocket::is_upgrade(req);
    auto& policy = server_.opts.guard;
    auto* m = server_.opts.metrics.get();
    auto refuse = [this](response res, prometheus::Counter* counted, bool keep) {
      if (counted) counted->Increment();
      write(std::move(res), keep);
    };
    if (auto refusal = reduce_target(r, h.target, policy))
      return refuse(std::move(*refusal), m ? &m->bad_target : nullptr, false);
    if (auto refusal = check_host(r, h, policy))
      return refuse(std::move(*refusal), m ? &m->bad_host : nullptr, false);
    if (auto refusal = check_origin(r, h, policy))
      return refuse(std::move(*refusal), m ? &m->bad_origin : nullptr, keep_alive_);
    r.foreign = foreign(r, h, policy);
    r.tls = beast::iequals(req["X-Forwarded-Proto"], "https");
    r.body = std::move(req.body());
    r.authorization = std::string{req[http::field::authorization]};
    r.if_match = std::string{req[http::field::if_match]};
    r.content_type = std::string{req[http::field::content_type]};
    r.cookie = std::string{req[http::field::cookie]};
    if (h.upgrade && r.path == "/ws" && server_.opts.ws.open && !server_.draining) {
      if (auto refusal = server_.opts.ws.check(r)) return write(std::move(*refusal), false);
      if (auto bad = ws::check_upgrade(req[http::field::sec_websocket_key],
                                       req[http::field::sec_websocket_version])) {
        if (bad->status != 426) return write(problem(errc::invalid_argument, bad->detail), false);
        auto res = problem(426, "upgrade_required", "Upgrade Required", bad->detail, "{}");
        res.headers.emplace_back("Sec-WebSocket-Version", "13");
        return write(std::move(res), false);
      }
      stream_.expires_never();
      auto early = beast::buffers_to_string(buffer_.data());
      auto req_done = parser_->release();
      start_ws_session(stream_.release_socket(), req_done, std::move(early), server_);
      return;
    }
    ++server_.in_flight;
    stream_.expires_never();
    auto self = shared_from_this();
    server_.on_request(std::move(r), [self](response res) {
      net::post(self->stream_.get_executor(), [self, res = std::move(res)]() mutable {
        self->write(std::move(res), self->keep_alive_, /*counted=*/true);
      });
    });
  }

  void fail_and_close(errc code, const std::string& detail) { write(problem(code, detail), false); }

  void write(response r, bool keep_alive, bool counted = false) {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(r.status), version_ ? version_ : 11);
    res->set(http::field::server, "tessera");
    res->set(http::field::content_type, r.content_type);
    // Every answer: never sniffed, never cached unless the route says otherwise.
    res->set("X-Content-Type-Options", "nosniff");
    res->set(http::field::cache_control, "no-store");
    for (auto& [name, value] : r.headers) res->set(name, value);
    res->body() = std::move(r.body);
    keep_alive = keep_alive && !server_.draining;
    res->keep_alive(keep_alive);
    res->prepare_payload();
    if (head_) res->body().clear();  // HEAD: the headers a GET would get, never a body
    stream_.expires_after(write_timeout);
    http::async_write(
        stream_, *res,
        [self = shared_from_this(), res, keep_alive, counted](beast::error_code ec, size_t) {
          if (counted) --self->server_.in_flight;
          if (ec) return self->close();
          if (!keep_alive) return self->linger_close();
          self->await_request();
        });
  }

  // Half-close and discard what the client still sends, so it reads our response instead of
  // a connection reset.
  void linger_close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(drain_timeout);
    drain();
  }

  void drain() {
    stream_.async_read_some(net::buffer(scratch_),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->close();
                              self->drain();
                            });
  }

  void close() {
    arrival_.cancel();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  beast::tcp_stream stream_;
  http_server::impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  net::steady_timer arrival_;  // header_timeout for the request being read
  bool timed_out_ = false;
  std::array<char, 4096> scratch_{};
  bool keep_alive_ = true;
  bool head_ = false;
  unsigned version_ = 11;
};

}  // namespace

void http_server::impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
      // Out of file descriptors (or similar): retrying at once would spin and flood the log.
      if (!accept_failing) runtime::log_warning("accept failed, pausing 100 ms: " + ec.message());
      accept_failing = true;
      accept_pause.expires_after(std::chrono::milliseconds(100));
      accept_pause.async_wait([this](beast::error_code e) {
        if (!e && acceptor.is_open()) accept();
      });
      return;
    } else {
      accept_failing = false;
      socket.set_option(tcp::no_delay{true}, ec);
      bool full = static_cast<uint64_t>(open_sessions.load()) >= opts.max_connections;
      auto s = std::make_shared<session>(std::move(socket), *this);
      if (full)
        s->refuse();
      else
        s->start();
    }
    accept();
  });
}

void http_server::impl::begin_shutdown() {
  if (draining.exchange(true)) return;
  runtime::log_info("shutting down: no new connections, draining in-flight requests");
  beast::error_code ec;
  acceptor.close(ec);  // on the acceptor's strand, so no accept is being started meanwhile
  accept_pause.cancel();
  close_ws_sessions(*this);
  net::post(ioc, [this] {
    beast::error_code ignored;
    signals.cancel(ignored);
  });
  auto timer = std::make_shared<net::steady_timer>(ioc);
  auto now = std::chrono::steady_clock::now();
  wait_for_drain(timer, now + opts.shutdown_grace, now);
}

// Stops the I/O threads once no connection is open, or once nothing has been in flight for a
// quiet period (a request a client sent just before the signal may still be on its way on a
// keep-alive connection; each such connection serves it and closes), or at the deadline.
void http_server::impl::wait_for_drain(std::shared_ptr<net::steady_timer> timer,
                                       std::chrono::steady_clock::time_point deadline,
                                       std::chrono::steady_clock::time_point quiet_since) {
  constexpr auto quiet_period = std::chrono::milliseconds(50);
  auto now = std::chrono::steady_clock::now();
  if (in_flight > 0) quiet_since = now;
  if (open_sessions == 0 || now - quiet_since >= quiet_period || now >= deadline) {
    if (in_flight > 0)
      runtime::log_warning("shutdown grace over with " + std::to_string(in_flight.load()) +
                           " requests still in flight");
    ioc.stop();
    return;
  }
  timer->expires_after(std::chrono::milliseconds(5));
  timer->async_wait([this, timer, deadline, quiet_since](beast::error_code) {
    wait_for_drain(timer, deadline, quiet_since);
  });
}

http_metrics::http_metrics(prometheus::Registry& registry)
    : open(prometheus::BuildGauge()
               .Name("tessera_http_connections")
               .Help("Open connections, HTTP and WebSocket (server.max_connections bounds them)")
               .Register(registry)
               .Add({})),
      refused(prometheus::BuildCounter()
                  .Name("tessera_http_connections_refused_total")
                  .Help("Connections answered 503 because server.max_connections were open")
                  .Register(registry)
                  .Add({})),
      timed_out(prometheus::BuildCounter()
                    .Name("tessera_http_request_timeouts_total")
                    .Help("Requests not complete within server.header_timeout_ms (closed)")
                    .Register(registry)
                    .Add({})),
      guard_refusals(prometheus::BuildCounter()
                         .Name("tessera_http_guard_refusals_total")
                         .Help("Requests refused before any route: target (not origin-form), "
                               "host (not served, none or two), origin (a foreign Origin on a "
                               "write or WebSocket upgrade)")
                         .Register(registry)),
      bad_target(guard_refusals.Add({{"reason", "target"}})),
      bad_host(guard_refusals.Add({{"reason", "host"}})),
      bad_origin(guard_refusals.Add({{"reason", "origin"}})) {}

http_server::options http_server::options::from_settings(const config::settings& s) {
  options o;
  o.host = s.listen.host;
  o.port = s.listen.port;
  o.body_limit = s.max_body_bytes;
  o.threads = s.io_threads ? s.io_threads : std::max(1u, std::thread::hardware_concurrency());
  o.shutdown_grace = s.shutdown_grace;
  o.max_connections = s.max_connections;
  o.header_timeout = s.header_timeout;
  o.keepalive_timeout = s.keepalive_timeout;
  o.guard.check_host = config::is_loopback(s.listen.host) || !s.allowed_hosts.empty();
  o.guard.allowed_hosts = s.allowed_hosts;
  o.guard.allowed_origins = s.allowed_origins;
  o.ws.stall_timeout = s.ws_stall_timeout;
  o.ws.max_pending_bytes = s.ws_max_pending_bytes;
  o.ws.idle_timeout = s.ws_idle_timeout;
  return o;
}

http_server::http_server(options opts, handler h)
    : impl_(std::make_unique<impl>(std::move(opts), std::move(h))) {}

http_server::~http_server() = default;

std::variant<uint16_t, std::string> http_server::start() {
  auto& i = *impl_;
  beast::error_code ec;
  tcp::resolver resolver{i.ioc};
  auto results = resolver.resolve(i.opts.host, std::to_string(i.opts.port), ec);
  if (ec || results.empty()) return "cannot resolve " + i.opts.host + ": " + ec.message();
  tcp::endpoint endpoint = *results.begin();
  i.acceptor.open(endpoint.protocol(), ec);
  if (!ec) i.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) i.acceptor.bind(endpoint, ec);
  if (!ec) i.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return "cannot listen on " + i.opts.host + ":" + std::to_string(i.opts.port) + ": " +
           ec.message();
  i.opts.guard.port = i.acceptor.local_endpoint().port();
  i.signals.async_wait([&i](beast::error_code e, int) {
    if (!e) net::post(i.acceptor.get_executor(), [&i] { i.begin_shutdown(); });
  });
  i.accept();
  return i.acceptor.local_endpoint().port();
}

void http_server::run() {
  auto& i = *impl_;
  std::vector<std::thread> threads;
  for (unsigned n = 1; n < i.opts.threads; ++n) threads.emplace_back([&i] { i.ioc.run(); });
  i.ioc.run();
  for (auto& t : threads) t.join();
}

void http_server::shutdown() {
  net::post(impl_->acceptor.get_executor(), [i = impl_.get()] { i->begin_shutdown(); });
}

void http_server::post(std::function<void()> f) { net::post(impl_->ioc, std::move(f)); }

void http_server::clear_handler() {
  impl_->on_request = nullptr;
  impl_->opts.ws.check = nullptr;
  impl_->opts.ws.open = nullptr;
}

}  // namespace tessera::web
