// Live panels over WebSocket: the protocol of one connection (live_session) and the fan-out of
// renders to every connection subscribed to a panel (live_hub). No Beast here: http_server.cpp
// owns the sockets and implements ws_connection.
//
// Protocol (text frames of JSON; see README "Live updates"):
//   client: {"type":"subscribe","panel"} | {"type":"unsubscribe","panel"} |
//           {"type":"action","panel","action","payload","ref"}
//   server: {"type":"render","panel","version","html"} at once on subscribe and after every
//           change; {"type":"render_error","panel","version","error"}; {"type":"deleted",
//           "panel"}; {"type":"result","ref","ok",...}; {"type":"error","code","detail"}.
// Ordering: renders of one panel reach a connection in version order; one that is older than
// what the connection already has or has queued is dropped, a newer one replaces a queued one.
#pragma once

#include <caf/actor.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "actors/panel/messages.hpp"
#include "web/routes.hpp"

namespace tessera::web {

// The sending side of one WebSocket connection. Thread-safe; never blocks.
class ws_connection {
 public:
  virtual ~ws_connection() = default;
  // Queues a text message. With a `panel`, it is a render of that panel at `version`: it
  // replaces a queued render of the same panel and is dropped if not newer than the last one.
  virtual void send(std::shared_ptr<const std::string> text, const std::string& panel = {},
                    int64_t version = 0) = 0;
  // Forgets the renders of `panel` queued or seen (on subscribe, unsubscribe and deletion), so
  // the next render of it is sent whatever its version.
  virtual void forget(const std::string& panel) = 0;
};

// What the server does with the frames of one connection; owned by the connection.
class ws_handler {
 public:
  virtual ~ws_handler() = default;
  virtual void on_message(std::string text) = 0;
  virtual void on_close() = 0;
  // Requests started by messages whose answers are not yet sent (at shutdown the connection
  // waits for them, within the shutdown grace, before it closes). Any thread.
  virtual int pending() const = 0;
};

// Who is subscribed to which panel, and the fan-out of a panel's renders to them.
class live_hub {
 public:
  explicit live_hub(prometheus::Registry& registry);

  void add(const std::string& panel, const std::shared_ptr<ws_connection>& c);
  void remove(const std::string& panel, const ws_connection* c);
  // Formats the event once and queues it on every subscribed connection. With many
  // subscribers, shares of them are handed to the helper threads (see set_helpers), so the
  // sends of one fan-out run on every core.
  void publish(const panel::render_event& e);

  // Runs a share of a large fan-out on one of `count` other threads (the HTTP I/O threads);
  // cleared by stop().
  void set_helpers(std::function<void(std::function<void()>)> run, unsigned count);

  // Whether any connection subscribes to `panel` (panel actors render only then).
  bool watched(const std::string& panel);

  // The panel directory connections talk to; empty after stop().
  void set_panels(panel::directory_actor panels);
  panel::directory_actor panels();
  // The actors are stopping: from now on connections do not talk to them, and the hub holds
  // no actor handle (which must not outlive the actor system).
  void stop();

  prometheus::Gauge& connections;
  prometheus::Counter& messages_sent;
  prometheus::Counter& renders_replaced;  // queued renders replaced by a newer one
  prometheus::Counter& slow_closed;       // connections closed for not reading

 private:
  std::mutex mutex_;
  std::unordered_map<std::string,
                     std::unordered_map<const ws_connection*, std::weak_ptr<ws_connection>>>
      subscribers_;
  panel::directory_actor panels_;
  std::function<void(std::function<void()>)> run_elsewhere_;
  unsigned helpers_ = 0;
};

// The handler for a new connection: speaks the protocol above with the panel directory.
std::shared_ptr<ws_handler> make_live_session(const route_context& ctx,
                                              std::shared_ptr<live_hub> hub,
                                              std::weak_ptr<ws_connection> connection);

// Formats a render event as the message subscribers get.
std::string render_message(const panel::render_event& e);

}  // namespace tessera::web
