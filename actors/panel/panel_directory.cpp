#include "actors/panel/panel_directory.hpp"

#include <caf/all.hpp>
#include <set>
#include <unordered_map>

#include "actors/common/actor_directory.hpp"
#include "actors/common/definition_update.hpp"
#include "actors/common/forwarding.hpp"
#include "actors/panel/panel_ops.hpp"
#include "actors/storage/messages.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"
#include "runtime/committer.hpp"
#include "runtime/log.hpp"
#include "runtime/off_scheduler.hpp"

namespace tessera::panel {
namespace {

using json = nlohmann::json;
using reply_promise = caf::typed_response_promise<std::string>;

constexpr std::string_view started_key = "meta/started";
const std::vector<std::string> all_fields = {"title",       "desc",     "icon",    "size",
                                             "storage_ids", "template", "handler", "timeout"};

using reload_atom = caf::atom_constant<caf::atom("preload")>;

// A panel actor started again after a crash: it reads its record off the scheduler while the
// messages sent to it wait in its mailbox (skipped), reports its storages to the directory
// (bound_atom) and becomes the panel actor; with no record left (deleted meanwhile) or an
// unreadable one it reports gone_atom and quits. A read that failed (the store away) is tried
// again every second, the messages still waiting.
caf::behavior restarted_panel(caf::event_based_actor* self, panel_env env, directory_impl directory,
                              std::shared_ptr<adapters::kv_store> store, std::string id) {
  self->set_default_handler(caf::skip);
  auto load = [=] {
    runtime::off_scheduler(self, env.atomic.request_timeout,
                           [store, id]() -> caf::expected<std::string> {
                             auto value = store->get(panel_key(id));
                             if (!value) return value.error();
                             return value->value_or(std::string{});
                           })
        .then(
            [=](std::string& value) {
              auto r = value.empty() ? std::optional<panel_record>{} : decode(value, env.limits);
              if (!r) {
                if (!value.empty()) runtime::log_error("unreadable panel record for " + id);
                self->send(directory, gone_atom::value, id);
                self->quit();
                return;
              }
              self->send(directory, bound_atom::value, id, r->storage_ids);
              self->set_default_handler(caf::print_and_drop);
              self->become(panel_actor(self, env, directory, std::move(*r)));
            },
            [=](caf::error& err) {
              runtime::log_error("panel '" + id + "' cannot restart yet: " + detail_of(err));
              self->delayed_send(self, std::chrono::seconds(1), reload_atom::value);
            });
  };
  load();
  return {[load](reload_atom) { load(); }};
}

class directory {
 public:
  directory(directory_impl::pointer self, directory_config cfg)
      : self_(self),
        cfg_(std::move(cfg)),
        actors_(self, {"panel", nullptr, [this](const std::string& id) { restart(id); }},
                cfg_.metrics) {}

  actors::actor_directory& actors() { return actors_; }
  const directory_config& config() const { return cfg_; }

  // Spawns an actor for every panel in the store: the scan runs off the scheduler, and what
  // waits for it (first_start) runs once the actors are there.
  void load() {
    loading_ = true;
    runtime::off_scheduler(self_, std::chrono::minutes(5),  // every panel, once at start

                           [store = cfg_.store]() -> caf::expected<std::vector<std::string>> {
                             auto rows = store->scan(key_prefix, "", 1'000'000);
                             if (!rows) return rows.error();
                             std::vector<std::string> keys_and_values;  // key, value, ...
                             keys_and_values.reserve(rows->size() * 2);
                             for (auto& [key, value] : *rows) {
                               keys_and_values.push_back(std::move(key));
                               keys_and_values.push_back(std::move(value));
                             }
                             return keys_and_values;
                           })
        .then(
            [this](std::vector<std::string>& rows) {
              for (size_t i = 0; i + 1 < rows.size(); i += 2) {
                auto r = decode(rows[i + 1], cfg_.env.limits);
                if (!r) {
                  runtime::log_error("unreadable panel record " + rows[i] + ", skipped");
                  continue;
                }
                start(std::move(*r));
              }
              loaded();
            },
            [this](caf::error& err) {
              runtime::log_error("cannot read panels: " + detail_of(err));
              loaded();
            });
  }

  // True on the first start of a data dir that holds no storage and no panel (then the caller
  // imports the demos); marks the data dir as started either way. Asked after the load; its
  // reads and the marker's write run off the scheduler.
  caf::result<bool> first_start() {
    auto rp = self_->make_response_promise<bool>();
    after_load([this, rp]() mutable {
      bool no_panel = actors_.live() == 0;
      runtime::off_scheduler(self_, cfg_.env.atomic.request_timeout,
                             [store = cfg_.store, no_panel]() -> caf::expected<bool> {
                               auto marker = store->get(started_key);
                               if (!marker) return marker.error();
                               if (*marker) return false;
                               auto storages = store->scan("storage/", "", 1);
                               bool fresh = no_panel && storages && storages->empty();
                               auto err = store->write(
                                   {{std::string{started_key}, std::to_string(runtime::now_ms())}});
                               return fresh && !err;
                             })
          .then([rp](bool fresh) mutable { rp.deliver(fresh); },
                [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
    });
    return rp;
  }

  // A panel actor that stopped without being deleted starts again from the store; its read
  // runs off the scheduler while its requests wait in its mailbox (restarted_panel).
  void restart(const std::string& id) {
    actors_.add(id, self_->spawn(restarted_panel, cfg_.env, caf::actor_cast<directory_impl>(self_),
                                 cfg_.store, id));
  }

  // Another node changed panel `id`: its record, read off the scheduler, goes to its actor (a
  // newer definition, or none: deleted), or starts one (created elsewhere).
  void refresh(const std::string& id) {
    after_load([this, id] { read_again(id); });
  }

  // In a cluster, a request for a panel not held here: another node has seen it created and
  // this node's change feed has not yet (a request forwarded here as to the owner, or a read
  // just after a create through another node). The store is read first; then the request is
  // served, or answered not_found if the store has no such panel either.
  // Panel `id`'s record as the store holds it now ("" when absent), read on the readers pool.
  auto read_record(const std::string& id) {
    return runtime::off_scheduler(self_, cfg_.readers, cfg_.env.atomic.request_timeout,
                                  [store = cfg_.store, id]() -> caf::expected<std::string> {
                                    auto value = store->get(panel_key(id));
                                    if (!value) return value.error();
                                    return value->value_or(std::string{});
                                  });
  }

  template <class... Ts>
  caf::result<std::string> serve_unseen(const std::string& id, Ts... xs) {
    auto rp = self_->make_response_promise<std::string>();
    read_record(id).then(
        [this, rp, id, xs...](std::string& value) mutable {
          if (!actors_.find(id) && !value.empty())
            if (auto r = decode(value, cfg_.env.limits)) start(std::move(*r));
          if (auto a = actors_.find(id))
            rp.delegate(a, xs...);
          else
            rp.deliver(actors_.not_found(id));
        },
        [rp](caf::error& err) mutable { rp.deliver(err); });
    return rp;
  }

  void read_again(const std::string& id) {
    read_record(id).then(
        [this, id](std::string& value) {
          if (auto a = actors_.find(id)) {
            // Deleted: forgotten now, so a panel created again meanwhile gets an actor.
            if (value.empty()) forget(id);
            caf::anon_send(a, storage::refresh_atom::value, id, std::move(value));
            return;
          }
          if (value.empty()) return;
          auto r = decode(value, cfg_.env.limits);
          if (!r) return runtime::log_error("unreadable panel record for " + id);
          if (!actors_.find(id)) start(std::move(*r));
        },
        [id](caf::error& err) {
          runtime::log_error("cannot read panel '" + id +
                             "' changed by another node: " + detail_of(err));
        });
  }

  // Every panel read again, and told its storages changed (the change feed lost changes);
  // panels created elsewhere meanwhile are found by a scan.
  void refresh_all() {
    after_load([this] {
      for (auto& [storage_id, _] : bound_) storage_changed(storage_id, -1);
      runtime::off_scheduler(self_, std::chrono::minutes(5),
                             [store = cfg_.store]() -> caf::expected<std::vector<std::string>> {
                               auto rows = store->scan(key_prefix, "", 1'000'000);
                               if (!rows) return rows.error();
                               std::vector<std::string> ids;
                               for (auto& [key, _] : *rows)
                                 ids.push_back(key.substr(key_prefix.size()));
                               return ids;
                             })
          .then(
              [this](std::vector<std::string>& ids) {
                std::set<std::string> all{ids.begin(), ids.end()};
                for (auto& id : actors_.live_ids()) all.insert(id);  // deleted ones too
                for (auto& id : all) refresh(id);
              },
              [](caf::error& err) {
                runtime::log_error("cannot read the panels again: " + detail_of(err));
              });
    });
  }

  // Every panel: a scan of the whole prefix, so it runs off the scheduler.
  caf::result<std::string> list() {
    auto rp = self_->make_response_promise<std::string>();
    auto scan = [store = cfg_.store, limits = cfg_.env.limits]() -> caf::expected<std::string> {
      auto rows = store->scan(key_prefix, "", 1'000'000);
      if (!rows) return rows.error();
      json panels = json::array();
      for (auto& [_, value] : *rows)
        if (auto r = decode(value, limits)) panels.push_back(summary_json(*r));
      return json{{"panels", std::move(panels)}}.dump();
    };
    runtime::off_scheduler(self_, cfg_.env.atomic.request_timeout * 4, std::move(scan))
        .then([rp](std::string& text) mutable { rp.deliver(std::move(text)); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
    return rp;
  }

  caf::result<std::string> create(const std::string& body) {
    auto rp = self_->make_response_promise<std::string>();
    auto parsed = json::parse(body, nullptr, false);
    create(bundle{std::move(parsed), {}}, rp);
    return rp;
  }

  caf::result<std::string> import(const std::string& text, bool replace) {
    auto rp = self_->make_response_promise<std::string>();
    auto b = parse_bundle(text);
    if (!b) {
      rp.deliver(b.error());
      return rp;
    }
    auto id_it = b->panel.find("id");
    auto id = id_it != b->panel.end() && id_it->is_string() ? id_it->get<std::string>() : "";
    auto target = actors_.find(id);
    if (!target) {
      create(std::move(*b), rp);
      return rp;
    }
    if (!replace) {
      rp.deliver(make_error(errc::conflict,
                            "panel '" + id + "' exists (import with replace to update it)"));
      return rp;
    }
    std::vector<std::string> ids;
    if (auto s = b->panel.find("storage_ids"); s != b->panel.end() && s->is_array())
      for (auto& v : *s)
        if (v.is_string()) ids.push_back(v.get<std::string>());
    auto update = b->panel;
    update.erase("id");
    auto& env = cfg_.env.atomic;
    storage::create_missing(
        self_, env.storages, env.request_timeout, ids, b->storages,
        [this, rp, target, update, id](caf::error err) mutable {
          if (err) {
            rp.deliver(err);
            return;
          }
          self_
              ->request(target, cfg_.env.atomic.request_timeout + cfg_.env.atomic.call_timeout,
                        update_atom::value, id, update.dump(), all_fields, storage::version_list{})
              .then([rp](std::string& panel) mutable { rp.deliver(panel); },
                    [rp](caf::error& e) mutable { rp.deliver(e); });
        });
    return rp;
  }

  void storage_changed(const std::string& storage_id, int64_t version) {
    auto it = bound_.find(storage_id);
    if (it == bound_.end()) return;
    for (auto& panel_id : it->second)
      if (auto a = actors_.find(panel_id))
        caf::anon_send(a, storage::changed_atom::value, storage_id, version);
  }

  void rebind(const std::string& id, const std::vector<std::string>& storage_ids) {
    unbind(id);
    for (auto& s : storage_ids) bound_[s].insert(id);
    bindings_[id] = storage_ids;
  }

  void gone(const std::string& id, const caf::strong_actor_ptr& sender) {
    auto a = actors_.find(id);
    if (!a || a != caf::actor_cast<caf::actor>(sender)) return;  // replaced meanwhile
    forget(id);
  }

  void forget(const std::string& id) {
    actors_.gone(id);
    unbind(id);
    bindings_.erase(id);
  }

 private:
  void after_load(std::function<void()> f) {
    if (loading_)
      waiting_load_.push_back(std::move(f));
    else
      f();
  }

  void loaded() {
    loading_ = false;
    auto waiting = std::move(waiting_load_);
    for (auto& f : waiting) f();
  }

  void start(panel_record r) {
    auto id = r.id;
    rebind(id, r.storage_ids);
    actors_.add(id, self_->spawn(panel_actor, cfg_.env, caf::actor_cast<directory_impl>(self_),
                                 std::move(r)));
  }

  void unbind(const std::string& id) {
    auto it = bindings_.find(id);
    if (it == bindings_.end()) return;
    for (auto& s : it->second) {
      auto b = bound_.find(s);
      if (b == bound_.end()) continue;
      b->second.erase(id);
      if (b->second.empty()) bound_.erase(b);
    }
  }

  // Check the code, create missing storages, write the record, start the actor.
  void create(bundle b, reply_promise rp) {
    auto parsed = parse_new_panel(b.panel, cfg_.env.limits);
    if (!parsed) {
      rp.deliver(parsed.error());
      return;
    }
    auto r = std::make_shared<panel_record>(std::move(*parsed));
    actors::definition_change change{code_to_check(*r), r->storage_ids, std::move(b.storages), {}};
    change.write = [this, r](actors::definition_done done) {
      auto now = runtime::now_ms();
      r->version = 1;
      r->created_at = r->updated_at = now;
      // Absent: another node may create the same id meanwhile (one of them wins).
      std::vector<adapters::write_op> ops{
          {panel_key(r->id), encode(*r), false, adapters::write_op::absent}};
      self_
          ->request(cfg_.env.atomic.committer, cfg_.env.atomic.request_timeout,
                    runtime::commit_atom::value, ops)
          .then(
              [this, r, done](caf::ok_atom) {
                start(*r);
                done(to_json(*r).dump());
              },
              [done, id = r->id](caf::error& err) {
                if (code_of(err) == errc::conflict)
                  return done(make_error(errc::conflict, "panel '" + id + "' already exists"));
                done(err);
              });
    };
    actors::create_definition(self_, cfg_.env.atomic, actors_, r->id, std::move(change), rp);
  }

  directory_impl::pointer self_;
  directory_config cfg_;
  bool loading_ = false;                             // the store's panels are being read
  std::vector<std::function<void()>> waiting_load_;  // what waits for that
  actors::actor_directory actors_;
  std::unordered_map<std::string, std::vector<std::string>> bindings_;  // panel -> storages
  std::unordered_map<std::string, std::set<std::string>> bound_;        // storage -> panels
};

}  // namespace

caf::expected<bundle> parse_bundle(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  auto bad = [](const std::string& m) { return make_error(errc::invalid_argument, m); };
  if (!j.is_object()) return bad("a panel bundle must be a JSON object");
  for (auto& [key, _] : j.items())
    if (key != "metadata" && key != "template" && key != "handler")
      return bad("unknown bundle field '" + key + "' (expected metadata, template, handler)");
  auto meta = j.find("metadata");
  if (meta == j.end() || !meta->is_object())
    return bad("bundle field 'metadata' must be an object");
  bundle b;
  b.panel = *meta;
  if (auto s = b.panel.find("storages"); s != b.panel.end()) {
    if (!s->is_object()) return bad("metadata field 'storages' must map storage ids to objects");
    for (auto& [id, data] : s->items()) {
      if (!data.is_object()) return bad("default data of storage '" + id + "' must be an object");
      b.storages[id] = data.dump();
    }
    auto ids = b.panel.value("storage_ids", json::array());
    if (!b.panel.contains("storage_ids")) {  // storages listed only under "storages"
      for (auto& [id, _] : s->items()) ids.push_back(id);
      b.panel["storage_ids"] = ids;
    }
    b.panel.erase("storages");
  }
  for (auto* key : {"template", "handler"})
    if (auto it = j.find(key); it != j.end()) b.panel[key] = *it;
  return b;
}

directory_impl::behavior_type panel_directory(directory_impl::pointer self, directory_config cfg) {
  auto dir = std::make_shared<directory>(self, std::move(cfg));
  dir->load();
  auto in_flight = std::make_shared<actors::forwards_in_flight>();
  self->set_down_handler([dir, in_flight](caf::down_msg& msg) {
    if (!in_flight->down(msg)) dir->actors().down(msg);
  });
  self->set_exit_handler([self, dir](caf::exit_msg&) {
    dir->actors().stop_all();
    self->quit(caf::exit_reason::user_shutdown);
  });
  // Forwards a request for panel `id` to its actor, or answers not_found.
  auto forward = [dir](const std::string& id, auto... xs) {
    return dir->actors().forward<std::string>(id, xs...);
  };
  // An action, update or deletion: to the node owning the panel when it is another.
  auto to_owner = [self, dir, forward, in_flight](const std::string& id,
                                                  auto... xs) -> caf::result<std::string> {
    auto& cfg = dir->config();
    auto owner = actors::owner_elsewhere(self, cfg.placement, std::string{key_prefix} + id);
    if (!owner) {
      auto& sender = self->current_sender();
      if (sender && sender->node() != self->node() && !dir->actors().find(id))
        return dir->serve_unseen(id, xs...);
      return forward(id, xs...);
    }
    return actors::forward_to_owner<std::string>(
        self, in_flight, owner, "panel", caf::make_message(xs...), cfg.env.atomic.call_timeout,
        cfg.forwarded,
        [self, id](caf::typed_response_promise<std::string>& rp, const caf::error& err) {
          rp.deliver(make_error(errc::unavailable, "the node owning panel '" + id +
                                                       "' did not answer (" +
                                                       self->system().render(err) +
                                                       "); the change may or may not have landed"));
        });
  };
  return {
      [dir](list_atom) { return dir->list(); },
      [dir](fresh_atom) { return dir->first_start(); },
      [dir](create_atom, const std::string& body) { return dir->create(body); },
      [dir](import_atom, const std::string& text, bool replace) {
        return dir->import(text, replace);
      },
      [dir, forward](get_atom a, const std::string& id) -> caf::result<std::string> {
        // In a cluster, a panel created through another node just now may not have come
        // through the change feed yet: the store is read before not_found.
        if (dir->config().placement && !dir->actors().find(id)) return dir->serve_unseen(id, a, id);
        return forward(id, a, id);
      },
      [to_owner](update_atom a, const std::string& id, const std::string& body,
                 const std::vector<std::string>& allowed,
                 const storage::version_list& m) { return to_owner(id, a, id, body, allowed, m); },
      [to_owner](erase_atom a, const std::string& id) { return to_owner(id, a, id); },
      [dir, forward](render_atom a, const std::string& id) -> caf::result<std::string> {
        if (dir->config().placement && !dir->actors().find(id)) return dir->serve_unseen(id, a, id);
        return forward(id, a, id);
      },
      [to_owner](action_atom a, const std::string& id, const std::string& name,
                 const std::string& payload) { return to_owner(id, a, id, name, payload); },
      [forward](export_atom a, const std::string& id) { return forward(id, a, id); },
      [dir](storage::changed_atom, const std::string& id, int64_t version) {
        dir->storage_changed(id, version);
      },
      [dir](bound_atom, const std::string& id, const std::vector<std::string>& storage_ids) {
        dir->rebind(id, storage_ids);
      },
      [self, dir](gone_atom, const std::string& id) { dir->gone(id, self->current_sender()); },
      [dir](storage::refresh_atom, const std::string& id) { dir->refresh(id); },
      [dir](storage::refresh_atom) { dir->refresh_all(); },
      [in_flight](storage::peer_lost_atom, const caf::actor& gateway) {
        in_flight->lost(gateway.address(), caf::make_error(caf::sec::request_receiver_down));
      },
  };
}

}  // namespace tessera::panel
