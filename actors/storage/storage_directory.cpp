#include "actors/storage/storage_directory.hpp"

#include <caf/all.hpp>
#include <list>
#include <unordered_map>

#include "actors/storage/storage_codec.hpp"
#include "adapters/error.hpp"

namespace tessera::storage {
namespace {

caf::behavior catalog_actor(caf::event_based_actor*, std::shared_ptr<adapters::rocks_store> store) {
  return {
      [=](list_atom, const std::string& after, uint32_t limit) -> caf::result<storage_page> {
        auto rows = store->scan(key_prefix, after, limit + 1);
        if (!rows) return rows.error();
        storage_page page;
        for (auto& [key, value] : *rows) {
          if (page.items.size() == limit) {
            page.next_after = page.items.back().id;
            break;
          }
          auto id = key.substr(key_prefix.size());
          auto record = decode(id, value);
          if (!record) return make_error(errc::storage_failure, "unreadable record for " + id);
          page.items.push_back({record->id, record->version, record->updated_at});
        }
        return page;
      },
  };
}

struct live_entry {
  caf::actor handle;
  uint64_t delegated = 0;
  std::list<std::string>::iterator recent;  // its place in directory::recent_
};

class directory {
 public:
  directory(caf::event_based_actor* self, storage_env env, runtime::actor_kind_metrics metrics)
      : self_(self), env_(std::move(env)), metrics_(metrics) {}

  // The live actor for `id`, activated when needed; counts the message about to be delegated.
  caf::actor route(const std::string& id) {
    auto it = live_.find(id);
    if (it == live_.end()) {
      // Monitored, not linked: CAF 0.17 keeps links in a list that each unlink scans, which
      // grows costly with hundreds of thousands of activations.
      auto handle = self_->spawn(storage_actor, env_, caf::actor{self_}, id);
      self_->monitor(handle);
      by_address_.emplace(handle.address(), id);
      recent_.push_front(id);
      it = live_.emplace(id, live_entry{handle, 0, recent_.begin()}).first;
      metrics_.activations->Increment();
      metrics_.live->Increment();
      if (env_.max_live && live_.size() > env_.max_live) ask_least_recent();
    } else if (it->second.recent != recent_.begin()) {
      recent_.splice(recent_.begin(), recent_, it->second.recent);
    }
    ++it->second.delegated;
    return it->second.handle;
  }

  // Over storage.max_live: asks the least recently used to passivate now (it answers with the
  // usual handshake once idle). Asked ones move to the front, so a busy one is not asked again
  // before the others.
  void ask_least_recent() {
    auto over = live_.size() - env_.max_live;
    for (size_t n = 0; n < over && recent_.size() > 1; ++n) {
      auto& id = recent_.back();
      auto& entry = live_.at(id);
      self_->send(entry.handle, passivate_atom::value);
      recent_.splice(recent_.begin(), recent_, entry.recent);
    }
  }

  // Storage actors activated from now on report their changes to `sink`.
  void watch(caf::actor sink) { env_.changes = std::move(sink); }

  void passivate(const std::string& id, uint64_t handled, const caf::strong_actor_ptr& sender) {
    auto it = live_.find(id);
    if (it == live_.end() || it->second.handle != caf::actor_cast<caf::actor>(sender) ||
        it->second.delegated != handled)
      return;
    self_->send(it->second.handle, retire_atom::value);
    // by_address_ keeps the retiring actor until its exit message arrives (child_exited).
    recent_.erase(it->second.recent);
    live_.erase(it);
    metrics_.live->Decrement();
    metrics_.passivations->Increment();
  }

  // Forgets a storage actor that has exited (retired, or failed while live).
  void child_exited(const caf::actor_addr& source) {
    auto by = by_address_.find(source);
    if (by == by_address_.end()) return;
    auto it = live_.find(by->second);
    if (it != live_.end() && it->second.handle.address() == source) {  // died while live
      recent_.erase(it->second.recent);
      live_.erase(it);
      metrics_.live->Decrement();
    }
    by_address_.erase(by);
  }

  // Stops every storage actor, live or retiring.
  void stop_all() {
    for (auto& [address, id] : by_address_)
      self_->send_exit(address, caf::exit_reason::user_shutdown);
    metrics_.live->Decrement(static_cast<double>(live_.size()));
    live_.clear();
    recent_.clear();
    by_address_.clear();
  }

 private:
  caf::event_based_actor* self_;
  storage_env env_;
  runtime::actor_kind_metrics metrics_;
  std::unordered_map<std::string, live_entry> live_;
  std::list<std::string> recent_;  // live ids, most recently used first
  std::unordered_map<caf::actor_addr, std::string> by_address_;
};

caf::error bad_id(const std::string& id) {
  return make_error(
      errc::invalid_argument,
      "storage id must be 1-128 characters of A-Z a-z 0-9 _ . - (got '" + id.substr(0, 140) + "')");
}

}  // namespace

caf::behavior storage_directory(caf::event_based_actor* self, storage_env env,
                                runtime::actor_kind_metrics metrics) {
  auto dir = std::make_shared<directory>(self, env, metrics);
  auto catalog = self->spawn<caf::detached + caf::linked>(catalog_actor, env.store);
  auto store = env.store;
  self->set_down_handler([=](caf::down_msg& msg) { dir->child_exited(msg.source); });
  self->set_exit_handler([=](caf::exit_msg&) {
    dir->stop_all();
    self->quit(caf::exit_reason::user_shutdown);  // the linked catalog quits with us
  });
  using caf::delegated;
  return {
      [=](read_atom a, const std::string& id) -> caf::result<caf::message> {
        if (!valid_storage_id(id)) return bad_id(id);
        return self->delegate(dir->route(id), a, id);
      },
      [=](create_atom a, const std::string& id, std::string& data) -> caf::result<caf::message> {
        if (!valid_storage_id(id)) return bad_id(id);
        return self->delegate(dir->route(id), a, id, std::move(data));
      },
      [=](replace_atom a, const std::string& id, std::string& data,
          version_list& m) -> caf::result<caf::message> {
        if (!valid_storage_id(id)) return bad_id(id);
        return self->delegate(dir->route(id), a, id, std::move(data), std::move(m));
      },
      [=](replace_atom a, const std::string& id, std::string& data, version_list& m,
          int64_t within_ms) -> caf::result<caf::message> {
        if (!valid_storage_id(id)) return bad_id(id);
        return self->delegate(dir->route(id), a, id, std::move(data), std::move(m), within_ms);
      },
      [=](merge_atom a, const std::string& id, std::string& patch,
          version_list& m) -> caf::result<caf::message> {
        if (!valid_storage_id(id)) return bad_id(id);
        return self->delegate(dir->route(id), a, id, std::move(patch), std::move(m));
      },
      [=](erase_atom a, const std::string& id, version_list& m) -> caf::result<caf::message> {
        if (!valid_storage_id(id)) return bad_id(id);
        return self->delegate(dir->route(id), a, id, std::move(m));
      },
      [=](prepare_atom a, const std::string& id, int64_t expected, std::string& data,
          int64_t lease_ms) {
        if (!valid_storage_id(id)) {
          self->send(caf::actor_cast<caf::actor>(self->current_sender()), refused_atom::value, id,
                     bad_id(id));
          return;
        }
        self->delegate(dir->route(id), a, id, expected, std::move(data), lease_ms);
      },
      [=](lock_atom a, const std::string& id, int64_t lease_ms) {
        if (!valid_storage_id(id)) {
          self->send(caf::actor_cast<caf::actor>(self->current_sender()), refused_atom::value, id,
                     bad_id(id));
          return;
        }
        self->delegate(dir->route(id), a, id, lease_ms);
      },
      [=](watch_atom, const caf::actor& sink) { dir->watch(sink); },
      [=](list_atom a, const std::string& after, uint32_t limit) -> caf::result<caf::message> {
        if (limit < 1 || limit > 1000)
          return make_error(errc::invalid_argument, "limit must be between 1 and 1000");
        return self->delegate(catalog, a, after, limit);
      },
      [=](ready_atom) { return store->healthy(); },
      [=](passivate_atom, const std::string& id, uint64_t handled) {
        dir->passivate(id, handled, self->current_sender());
      },
  };
}

}  // namespace tessera::storage
