#include "web/ws_session.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <boost/beast/http/field.hpp>
#include <vector>

#include "runtime/log.hpp"
#include "web/ws_inbox.hpp"
#include "web/ws_outbox.hpp"
#include "web/ws_protocol.hpp"

namespace tessera::web {
namespace {

namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using clock = std::chrono::steady_clock;

constexpr auto linger_limit = std::chrono::seconds(5);      // after our close frame
constexpr auto drain_poll = std::chrono::milliseconds(10);  // shutdown: answers still due?

}  // namespace

class ws_session final : public ws_connection, public std::enable_shared_from_this<ws_session> {
 public:
  ws_session(tcp::socket socket, http_server::impl& server)
      : socket_(std::move(socket)),
        server_(server),
        inbox_(server.opts.body_limit),
        stall_timer_(socket_.get_executor()),
        idle_timer_(socket_.get_executor()) {
    server_.session_opened();
    if (auto& hub = server_.opts.ws.hub) hub->connections.Increment();
  }
  ~ws_session() override {
    server_.session_closed();
    if (auto& hub = server_.opts.ws.hub) hub->connections.Decrement();
  }

  void start(std::string response, std::string early) {
    fd_ = socket_.native_handle();
    outbox_.bound(fd_, server_.opts.ws.max_pending_bytes);  // the kernel's part included
    {
      std::lock_guard lock{server_.ws_mutex};
      server_.ws_sessions[this] = weak_from_this();
    }
    last_heard_ = clock::now();
    {
      std::lock_guard lock{out_mutex_};  // raw bytes, no frame header
      push_locked(std::make_shared<const std::string>(std::move(response)), {});
    }
    handler_ = server_.opts.ws.open(shared_from_this());
    arm_idle(server_.opts.ws.idle_timeout / 2);
    inbox_.append(early);
    if (!early.empty()) process();
    wait_readable();
  }

  void send(std::shared_ptr<const std::string> text, const std::string& panel,
            int64_t version) override {
    std::lock_guard lock{out_mutex_};
    if (closing_) return;
    if (panel.empty()) {
      auto header = ws::server_header(ws::opcode::text, text->size());
      return push_locked(std::move(text), header, /*message=*/true);
    }
    auto result = outbox_.render(std::move(text), panel, version);
    if (result == ws_outbox::queued::replaced)
      if (auto& hub = server_.opts.ws.hub) hub->renders_replaced.Increment();
    queued_locked(result);
  }

  void forget(const std::string& panel) override {
    std::lock_guard lock{out_mutex_};
    outbox_.forget(panel);
  }

  void go_away() {
    net::post(socket_.get_executor(), [self = shared_from_this()] { self->drain_then_close(); });
  }

 private:
  // --- output (any thread, under out_mutex_) ---

  void push_locked(std::shared_ptr<const std::string> payload, ws::frame_header header,
                   bool message = false, bool closes = false) {
    if (ended_) return;
    queued_locked(outbox_.push(std::move(payload), header, message, closes));
  }

  void queued_locked(ws_outbox::queued result) {
    if (result == ws_outbox::queued::too_slow) return close_slow_locked();
    if (result == ws_outbox::queued::ok && !waiting_) flush_locked();
  }

  // Writes what the socket takes now; waits for it to take more, or ends, as the outbox says.
  void flush_locked() {
    if (ended_) return;
    auto sent_before = outbox_.messages_sent();
    auto result = outbox_.flush(fd_);
    if (auto& hub = server_.opts.ws.hub; hub && outbox_.messages_sent() > sent_before)
      hub->messages_sent.Increment(static_cast<double>(outbox_.messages_sent() - sent_before));
    switch (result) {
      case ws_outbox::flushed::empty:
        return;
      case ws_outbox::flushed::blocked:
        return wait_writable_locked();
      case ws_outbox::flushed::gone:
        return end_locked();  // the client is gone
      case ws_outbox::flushed::closed:
        ::shutdown(fd_, SHUT_WR);
        net::post(socket_.get_executor(), [self = shared_from_this()] { self->linger(); });
        return;
    }
  }

  // The socket is full: the strand waits until it takes more, and watches for a stall.
  void wait_writable_locked() {
    if (waiting_) return;
    waiting_ = true;
    progress_ = clock::now();
    net::post(socket_.get_executor(), [self = shared_from_this()] {
      self->socket_.async_wait(tcp::socket::wait_write, [self](boost::system::error_code ec) {
        std::lock_guard lock{self->out_mutex_};
        self->waiting_ = false;
        if (ec) return;
        self->progress_ = clock::now();  // the client took some of what was queued
        self->flush_locked();
      });
      self->watch_stall();
    });
  }

  void close_slow_locked() {
    if (ended_) return;
    if (auto& hub = server_.opts.ws.hub) hub->slow_closed.Increment();
    runtime::log_warning("closing a WebSocket client that stopped reading");
    end_locked();
  }

  // The connection is over: nothing more is written; the strand closes the socket.
  void end_locked() {
    if (ended_) return;
    ended_ = closing_ = true;
    outbox_.clear();
    ::shutdown(fd_, SHUT_RDWR);  // fails the strand's pending wait, which then finishes
    net::post(socket_.get_executor(), [self = shared_from_this()] { self->finish(); });
  }

  // --- the strand ---

  void watch_stall() {
    if (stall_armed_) return;
    clock::time_point due;
    {
      std::lock_guard lock{out_mutex_};
      if (!waiting_ || ended_) return;
      due = progress_ + server_.opts.ws.stall_timeout;
    }
    stall_armed_ = true;
    stall_timer_.expires_at(due);
    stall_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      self->stall_armed_ = false;
      if (ec) return;
      {
        std::lock_guard lock{self->out_mutex_};
        if (!self->waiting_ || self->ended_) return;
        if (clock::now() - self->progress_ >= self->server_.opts.ws.stall_timeout)
          return self->close_slow_locked();
      }
      self->watch_stall();
    });
  }

  void send_control(ws::opcode op, std::string payload, bool closes = false) {
    std::lock_guard lock{out_mutex_};
    if (closing_) return;
    closing_ = closes;
    auto header = ws::server_header(op, payload.size());
    push_locked(std::make_shared<const std::string>(std::move(payload)), header, false, closes);
  }

  void send_close(uint16_t code, std::string_view reason) {
    inbox_.discard();  // what the client sends from now on is not read as messages
    send_control(ws::opcode::close, ws::close_payload(code, reason), true);
  }

  // Shutdown: no new messages are read; actions in flight get their answers (counted as
  // requests in flight, so the server's drain waits for them within its grace), then close.
  void drain_then_close() {
    inbox_.discard();
    if (!finished_ && handler_ && handler_->pending() > 0) {
      if (!draining_) server_.in_flight += 1;
      draining_ = true;
      auto timer = std::make_shared<net::steady_timer>(socket_.get_executor(), drain_poll);
      timer->async_wait([self = shared_from_this(), timer](boost::system::error_code) {
        self->drain_then_close();
      });
      return;
    }
    stop_draining();
    send_close(ws::close_going_away, "server shutting down");
  }

  void stop_draining() {
    if (draining_) server_.in_flight -= 1;
    draining_ = false;
  }

  // Our close frame is out: wait (a while) for the client to close its side.
  void linger() {
    inbox_.discard();
    lingering_ = true;
    arm_idle(linger_limit);
  }

  void arm_idle(clock::duration after) {
    idle_timer_.expires_after(after);
    idle_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->on_idle_timer();
    });
  }

  void on_idle_timer() {
    if (finished_) return;
    if (lingering_) return finish();  // the client did not close in time
    using act = keepalive_step::act;
    auto step = keepalive(clock::now() - last_heard_, server_.opts.ws.idle_timeout,
                          last_ping_ >= last_heard_);
    if (step.what == act::close) {
      send_close(ws::close_going_away, "nothing heard from the client within the idle timeout");
      return arm_idle(linger_limit);
    }
    if (step.what == act::ping) {
      send_control(ws::opcode::ping, {});
      last_ping_ = clock::now();
    }
    arm_idle(step.next);
  }

  void wait_readable() {
    socket_.async_wait(tcp::socket::wait_read,
                       [self = shared_from_this()](boost::system::error_code ec) {
                         if (ec) return self->finish();
                         self->on_readable();
                       });
  }

  void on_readable() {
    auto got = inbox_.read(fd_);
    if (got.bytes) last_heard_ = clock::now();
    process();
    if (got.ended) return finish();
    wait_readable();
  }

  void process() {
    std::vector<ws::event> events;
    inbox_.take_events(events);
    for (auto& e : events) {
      if (inbox_.discarding()) break;
      switch (e.what) {
        case ws::event::kind::message:
          if (handler_) handler_->on_message(std::move(e.data));
          break;
        case ws::event::kind::ping:
          send_control(ws::opcode::pong, std::move(e.data));
          break;
        case ws::event::kind::pong:
          break;
        case ws::event::kind::close:  // the client closes: answer with its code
          send_close(e.code == 1005 ? ws::close_normal : e.code, {});
          break;
        case ws::event::kind::error:
          send_close(e.code, e.data);
          break;
      }
    }
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    stop_draining();
    {
      std::lock_guard lock{out_mutex_};
      ended_ = closing_ = true;
      outbox_.clear();
      boost::system::error_code ignored;
      socket_.close(ignored);  // under the lock: no other thread writes to the descriptor now
    }
    stall_timer_.cancel();
    idle_timer_.cancel();
    {
      std::lock_guard lock{server_.ws_mutex};
      server_.ws_sessions.erase(this);
    }
    if (auto h = std::move(handler_)) h->on_close();
  }

  tcp::socket socket_;  // its executor is the connection's strand
  int fd_ = -1;
  http_server::impl& server_;
  ws_inbox inbox_;  // the strand's own
  net::steady_timer stall_timer_;
  net::steady_timer idle_timer_;
  std::shared_ptr<ws_handler> handler_;
  // The strand's own.
  clock::time_point last_heard_;
  clock::time_point last_ping_;  // our last keep-alive ping
  bool stall_armed_ = false;
  bool lingering_ = false;  // our close frame is out
  bool draining_ = false;   // shutdown: counted in the server's in_flight until answered
  bool finished_ = false;
  // Output, shared with the threads that send.
  std::mutex out_mutex_;
  ws_outbox outbox_;
  clock::time_point progress_;  // the socket last took bytes, while waiting
  bool waiting_ = false;        // the strand waits for the socket to take more
  bool closing_ = false;        // our close frame is queued: nothing more is accepted
  bool ended_ = false;          // nothing more is written
};

void start_ws_session(tcp::socket socket, const http::request<http::string_body>& request,
                      std::string early, http_server::impl& server) {
  auto session = std::make_shared<ws_session>(std::move(socket), server);
  session->start(ws::upgrade_response(request[http::field::sec_websocket_key]), std::move(early));
}

void close_ws_sessions(http_server::impl& server) {
  std::vector<std::shared_ptr<ws_session>> open;
  {
    std::lock_guard lock{server.ws_mutex};
    for (auto& [_, weak] : server.ws_sessions)
      if (auto s = weak.lock()) open.push_back(std::move(s));
  }
  for (auto& s : open) s->go_away();
}

}  // namespace tessera::web
