#include "web/live.hpp"

#include <algorithm>
#include <atomic>
#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/storage/messages.hpp"
#include "adapters/json/parse.hpp"
#include "web/actor_bridge.hpp"
#include "web/problem.hpp"

namespace tessera::web {
namespace {

using json = nlohmann::json;
using panel::render_event;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json error_message(std::string code, std::string detail) {
  return {{"type", "error"}, {"code", std::move(code)}, {"detail", std::move(detail)}};
}

// The problem+json body of an error, as an object for WebSocket messages.
json problem_object(const caf::error& err) {
  auto body = json::parse(problem(err).body, nullptr, false);
  return body.is_object() ? body : json::object();
}

class live_session : public ws_handler, public std::enable_shared_from_this<live_session> {
 public:
  live_session(route_context ctx, std::shared_ptr<live_hub> hub,
               std::weak_ptr<ws_connection> connection)
      : ctx_(ctx), hub_(std::move(hub)), connection_(std::move(connection)) {}

  void on_message(std::string text) override {
    auto msg = adapters::parse_json(text, ctx_.max_json_depth);
    if (!msg)
      return send(
          error_message(std::string{to_string(code_of(msg.error()))}, detail_of(msg.error())));
    if (!msg->is_object() || !msg->contains("type") || !(*msg)["type"].is_string())
      return send(error_message("invalid_argument", "a message is a JSON object with a 'type'"));
    auto type = (*msg)["type"].get<std::string>();
    auto panel = msg->value("panel", json{});
    if (type != "subscribe" && type != "unsubscribe" && type != "action")
      return send(error_message("invalid_argument", "unknown message type '" + type +
                                                        "' (subscribe, unsubscribe, action)"));
    if (!panel.is_string() || !storage::valid_storage_id(panel.get<std::string>()))
      return send(error_message("invalid_argument", "field 'panel' must be a panel id"));
    auto id = panel.get<std::string>();
    if (type == "subscribe") return subscribe(id);
    if (type == "unsubscribe") return unsubscribe(id);
    action(id, *msg);
  }

  void on_close() override {
    std::unordered_set<std::string> subscribed;
    {
      std::lock_guard lock{mutex_};
      subscribed.swap(subscribed_);
    }
    for (auto& id : subscribed) hub_->remove(id, raw_connection_);
  }

  int pending() const override { return pending_actions_.load(); }

  void set_raw(const ws_connection* c) { raw_connection_ = c; }

 private:
  void send(const json& j) {
    if (auto c = connection_.lock()) c->send(std::make_shared<const std::string>(dump(j)));
  }

  void subscribe(const std::string& id) {
    auto c = connection_.lock();
    auto panels = hub_->panels();
    if (!c || !panels) return;
    {
      std::lock_guard lock{mutex_};
      subscribed_.insert(id);
    }
    c->forget(id);     // a re-subscription gets the current render even if seen before
    hub_->add(id, c);  // before asking: a render published meanwhile is not missed
    auto self = shared_from_this();
    auto reply = [self, id](caf::expected<std::string> r) {
      if (r) {
        auto j = json::parse(*r, nullptr, false);
        return self->send_render(
            {render_event::kind::render, id, j.value("version", int64_t{0}), j.value("html", "")});
      }
      if (code_of(r.error()) == errc::sandbox_failed) {
        auto answer = detail_of(r.error());
        auto j = json::parse(answer, nullptr, false);
        int64_t version = j.is_object() ? j.value("version", int64_t{0}) : 0;
        return self->send_render({render_event::kind::render_error, id, version, answer});
      }
      if (code_of(r.error()) == errc::not_found) self->forget(id);
      auto problem = problem_object(r.error());
      self->send({{"type", "error"},
                  {"code", problem.value("code", "internal")},
                  {"detail", problem.value("detail", "")},
                  {"panel", id}});
    };
    ask<std::string>(*ctx_.system, panels, ctx_.slow_timeout, reply, panel::render_atom::value, id);
  }

  void send_render(const render_event& e) {
    if (auto c = connection_.lock())
      c->send(std::make_shared<const std::string>(render_message(e)), e.panel, e.version);
  }

  void forget(const std::string& id) {
    {
      std::lock_guard lock{mutex_};
      subscribed_.erase(id);
    }
    hub_->remove(id, raw_connection_);
  }

  void unsubscribe(const std::string& id) {
    bool was;
    {
      std::lock_guard lock{mutex_};
      was = subscribed_.erase(id) > 0;
    }
    if (!was) return;
    hub_->remove(id, raw_connection_);
    if (auto c = connection_.lock()) c->forget(id);
  }

  void action(const std::string& id, const json& msg) {
    auto ref = msg.value("ref", json{});
    auto name = msg.value("action", json{});
    if (!name.is_string() || name.get<std::string>().empty())
      return send({{"type", "result"},
                   {"ref", ref},
                   {"ok", false},
                   {"error", problem_object(make_error(errc::invalid_argument,
                                                       "field 'action' must be a string"))}});
    auto payload = msg.contains("payload") ? msg["payload"].dump() : std::string{"{}"};
    auto panels = hub_->panels();
    if (!panels) return;  // shutting down
    auto self = shared_from_this();
    ++pending_actions_;
    ask<std::string>(
        *ctx_.system, panels, ctx_.slow_timeout,
        [self, ref](caf::expected<std::string> r) {
          if (!r) {
            self->send({{"type", "result"},
                        {"ref", ref},
                        {"ok", false},
                        {"error", problem_object(r.error())}});
          } else {
            auto j = json::parse(*r, nullptr, false);
            self->send({{"type", "result"},
                        {"ref", ref},
                        {"ok", true},
                        {"version", j.value("version", int64_t{0})},
                        {"changed", j.value("changed", json::array())}});
          }
          --self->pending_actions_;  // after the send: the answer is queued before any close
        },
        panel::action_atom::value, id, name.get<std::string>(), payload);
  }

  route_context ctx_;
  std::shared_ptr<live_hub> hub_;
  std::weak_ptr<ws_connection> connection_;
  const ws_connection* raw_connection_ = nullptr;  // the hub's key; set before any message
  std::mutex mutex_;
  std::unordered_set<std::string> subscribed_;
  std::atomic<int> pending_actions_{0};
};

}  // namespace

std::string render_message(const render_event& e) {
  switch (e.what) {
    case render_event::kind::render:
      return dump(
          {{"type", "render"}, {"panel", e.panel}, {"version", e.version}, {"html", e.body}});
    case render_event::kind::render_error: {
      auto answer = json::parse(e.body, nullptr, false);
      json error = answer.is_object() ? answer.value("error", json::object()) : json::object();
      return dump(
          {{"type", "render_error"}, {"panel", e.panel}, {"version", e.version}, {"error", error}});
    }
    case render_event::kind::deleted:
      return dump({{"type", "deleted"}, {"panel", e.panel}});
  }
  return "{}";
}

live_hub::live_hub(prometheus::Registry& registry)
    : connections(prometheus::BuildGauge()
                      .Name("tessera_ws_connections")
                      .Help("Open WebSocket connections")
                      .Register(registry)
                      .Add({})),
      messages_sent(prometheus::BuildCounter()
                        .Name("tessera_ws_messages_sent_total")
                        .Help("WebSocket messages written to clients")
                        .Register(registry)
                        .Add({})),
      renders_replaced(prometheus::BuildCounter()
                           .Name("tessera_ws_renders_coalesced_total")
                           .Help("Queued renders replaced by a newer one before being sent")
                           .Register(registry)
                           .Add({})),
      slow_closed(prometheus::BuildCounter()
                      .Name("tessera_ws_slow_clients_closed_total")
                      .Help("WebSocket connections closed because the client stopped reading")
                      .Register(registry)
                      .Add({})) {}

bool live_hub::watched(const std::string& panel) {
  std::lock_guard lock{mutex_};
  return subscribers_.count(panel) > 0;
}

void live_hub::set_panels(panel::directory_actor panels) {
  std::lock_guard lock{mutex_};
  panels_ = std::move(panels);
}

panel::directory_actor live_hub::panels() {
  std::lock_guard lock{mutex_};
  return panels_;
}

void live_hub::stop() {
  std::lock_guard lock{mutex_};
  panels_ = nullptr;
  run_elsewhere_ = nullptr;
  helpers_ = 0;
}

void live_hub::set_helpers(std::function<void(std::function<void()>)> run, unsigned count) {
  std::lock_guard lock{mutex_};
  run_elsewhere_ = std::move(run);
  helpers_ = run_elsewhere_ ? count : 0;
}

void live_hub::add(const std::string& panel, const std::shared_ptr<ws_connection>& c) {
  std::lock_guard lock{mutex_};
  subscribers_[panel][c.get()] = c;
}

void live_hub::remove(const std::string& panel, const ws_connection* c) {
  std::lock_guard lock{mutex_};
  auto it = subscribers_.find(panel);
  if (it == subscribers_.end()) return;
  it->second.erase(c);
  if (it->second.empty()) subscribers_.erase(it);
}

void live_hub::publish(const render_event& e) {
  // A send costs a few microseconds (one sendmsg); below this many per share, handing a share
  // to another thread costs more than it saves.
  constexpr size_t min_share = 256;
  auto text = std::make_shared<const std::string>(render_message(e));
  auto targets = std::make_shared<std::vector<std::shared_ptr<ws_connection>>>();
  std::function<void(std::function<void()>)> run_elsewhere;
  size_t shares = 1;
  {
    std::lock_guard lock{mutex_};
    auto it = subscribers_.find(e.panel);
    if (it == subscribers_.end()) return;
    targets->reserve(it->second.size());
    for (auto& [_, weak] : it->second)
      if (auto c = weak.lock()) targets->push_back(std::move(c));
    if (e.what == render_event::kind::deleted) subscribers_.erase(it);
    shares = std::clamp<size_t>(targets->size() / min_share, 1, helpers_ + 1);
    if (shares > 1) run_elsewhere = run_elsewhere_;
  }
  auto deliver = [targets, text, panel = e.panel, version = e.version,
                  is_render = e.what != render_event::kind::deleted](size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
      auto& c = (*targets)[i];
      if (is_render) {
        c->send(text, panel, version);
      } else {  // deleted: a panel re-created under this id starts its versions anew
        c->forget(panel);
        c->send(text);
      }
    }
  };
  size_t n = targets->size(), share = n / shares;
  for (size_t k = 1; k < shares; ++k)
    run_elsewhere([deliver, from = k * share, to = k + 1 == shares ? n : (k + 1) * share] {
      deliver(from, to);
    });
  deliver(0, shares > 1 ? share : n);
}

std::shared_ptr<ws_handler> make_live_session(const route_context& ctx,
                                              std::shared_ptr<live_hub> hub,
                                              std::weak_ptr<ws_connection> connection) {
  auto raw = connection.lock().get();
  auto s = std::make_shared<live_session>(ctx, std::move(hub), std::move(connection));
  s->set_raw(raw);
  return s;
}

}  // namespace tessera::web
