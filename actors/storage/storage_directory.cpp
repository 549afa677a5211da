#include "actors/storage/storage_directory.hpp"

#include <caf/all.hpp>
#include <tuple>
#include <type_traits>

#include "actors/common/actor_directory.hpp"
#include "actors/common/forwarding.hpp"
#include "actors/storage/storage_codec.hpp"
#include "adapters/error.hpp"
#include "runtime/cluster/node_actor.hpp"

namespace tessera::storage {
namespace {

// The directory's blocking reads, on a thread of its own: pages of the listing and /readyz's
// probe of the store.
caf::behavior catalog_actor(caf::event_based_actor*, std::shared_ptr<adapters::kv_store> store) {
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
      [=](ready_atom) { return store->healthy(); },
  };
}

caf::error bad_id(const std::string& id) {
  return make_error(
      errc::invalid_argument,
      "storage id must be 1-128 characters of A-Z a-z 0-9 _ . - (got '" + id.substr(0, 140) + "')");
}

}  // namespace

directory_impl::behavior_type storage_directory(directory_impl::pointer self, storage_env env,
                                                runtime::actor_kind_metrics metrics) {
  // Storage actors activate on first use and passivate when idle or over storage.max_live.
  auto shared_env = std::make_shared<storage_env>(env);
  actors::directory_policy policy{"storage", nullptr, nullptr, env.max_live};
  policy.activate = [self, shared_env](const std::string& id) {
    // The owner serving it: its lease is claimed (a node serving it while the owner cannot be
    // reached does not claim).
    if (auto& place = shared_env->placement; place && place->owns(std::string{key_prefix} + id))
      place->claim(std::string{key_prefix} + id);
    return self->spawn(storage_actor, *shared_env, caf::actor_cast<directory_impl>(self), id);
  };
  auto dir = std::make_shared<actors::actor_directory>(self, std::move(policy), metrics);
  auto catalog = self->spawn<caf::detached + caf::linked>(catalog_actor, env.store);
  auto store = env.store;
  auto in_flight = std::make_shared<actors::forwards_in_flight>();
  self->set_down_handler([=](caf::down_msg& msg) {
    if (!in_flight->down(msg)) dir->down(msg);
  });
  self->set_exit_handler([=](caf::exit_msg&) {
    dir->stop_all();
    self->quit(caf::exit_reason::user_shutdown);  // the linked catalog quits with us
  });
  // In a cluster, the node owning `id` when it is another (actors/common/forwarding.hpp).
  auto owner_elsewhere = [=](const std::string& id) {
    return actors::owner_elsewhere(self, shared_env->placement, std::string{key_prefix} + id);
  };
  // The request `msg` for `id` sent to its owner's node. When the owner does not answer, a
  // read is served here; a write is answered unavailable (503), its outcome unknown.
  auto forward = [=](caf::actor owner, const std::string& id, bool read,
                     caf::message msg) -> caf::result<storage_record> {
    return actors::forward_to_owner<storage_record>(
        self, in_flight, owner, "storage", msg, shared_env->commit_timeout, shared_env->forwarded,
        [=](caf::typed_response_promise<storage_record>& rp, const caf::error& err) {
          if (!read)
            return rp.deliver(
                make_error(errc::unavailable,
                           "the node owning storage '" + id + "' did not answer the write (" +
                               self->system().render(err) +
                               "); it may or may not have landed: read the storage, or retry"));
          self->request(dir->route(id), shared_env->commit_timeout, msg)
              .then([rp](storage_record& r) mutable { rp.deliver(std::move(r)); },
                    [rp](caf::error& e) mutable { rp.deliver(e); });
        });
  };
  // A request for `id` delegated to its actor (which answers the requester), or invalid_argument.
  auto to_owner = [=](const std::string& id, auto... xs) -> caf::result<storage_record> {
    if (!valid_storage_id(id)) return bad_id(id);
    if (auto owner = owner_elsewhere(id)) {
      bool read = std::is_same_v<std::tuple_element_t<0, std::tuple<decltype(xs)...>>, read_atom>;
      return forward(owner, id, read, caf::make_message(xs...));
    }
    return dir->forward<storage_record>(id, xs...);
  };
  // A transaction step for `id`; a bad id is refused to the transaction at once.
  auto step = [=](const std::string& id, auto... xs) {
    if (!valid_storage_id(id)) {
      caf::anon_send(caf::actor_cast<caf::actor>(self->current_sender()), refused_atom::value, id,
                     bad_id(id));
      return;
    }
    if (auto owner = owner_elsewhere(id)) {
      if (auto m = shared_env->forwarded; m.requests) m.requests->Increment();
      self->delegate(owner, runtime::cluster::forward_atom::value, std::string{"storage"},
                     caf::make_message(xs...));
      return;
    }
    self->delegate(dir->route(id), xs...);
  };
  return {
      [=](read_atom a, const std::string& id) { return to_owner(id, a, id); },
      [=](create_atom a, const std::string& id, std::string& data) {
        return to_owner(id, a, id, std::move(data));
      },
      [=](replace_atom a, const std::string& id, std::string& data, version_list& m) {
        return to_owner(id, a, id, std::move(data), std::move(m));
      },
      [=](replace_atom a, const std::string& id, std::string& data, version_list& m,
          int64_t within_ms) {
        return to_owner(id, a, id, std::move(data), std::move(m), within_ms);
      },
      [=](merge_atom a, const std::string& id, std::string& patch, version_list& m) {
        return to_owner(id, a, id, std::move(patch), std::move(m));
      },
      [=](erase_atom a, const std::string& id, version_list& m) {
        return to_owner(id, a, id, std::move(m));
      },
      [=](prepare_atom a, const std::string& id, int64_t expected, std::string& data,
          int64_t lease_ms) { step(id, a, id, expected, std::move(data), lease_ms); },
      [=](lock_atom a, const std::string& id, int64_t lease_ms) { step(id, a, id, lease_ms); },
      [=](list_atom a, const std::string& after, uint32_t limit) -> caf::result<storage_page> {
        if (limit < 1 || limit > 1000)
          return make_error(errc::invalid_argument, "limit must be between 1 and 1000");
        self->delegate(catalog, a, after, limit);
        return caf::delegated<storage_page>{};
      },
      [=](ready_atom a) {
        self->delegate(catalog, a);  // the probe may wait on the network: off the scheduler
        return caf::delegated<bool>{};
      },
      [=](watch_atom, const change_sink& sink) { shared_env->changes = sink; },
      [=](refresh_atom a, const std::string& id) {
        if (dir->find(id))
          self->delegate(dir->route(id), a, id);
        else if (shared_env->changes)  // no copy here: the panels read it afresh
          self->send(shared_env->changes, changed_atom::value, id, int64_t{-1});
      },
      [=](refresh_atom a) {
        for (auto& id : dir->live_ids()) self->delegate(dir->route(id), a, id);
      },
      [=](placed_atom) {
        auto& place = shared_env->placement;
        if (!place) return;
        for (auto& id : dir->live_ids()) {
          auto key = std::string{key_prefix} + id;
          // Owned by another node now: its requests go there (while that node cannot be reached,
          // the next one activates it here again).
          if (place->owns(key))
            place->claim(key);
          else
            dir->passivate(id);
        }
      },
      [=](peer_lost_atom, const caf::actor& gateway) {
        in_flight->lost(gateway.address(), caf::make_error(caf::sec::request_receiver_down));
      },
      [=](passivate_atom, const std::string& id, uint64_t handled) {
        if (dir->retire(id, handled, self->current_sender()))
          caf::anon_send(caf::actor_cast<caf::actor>(self->current_sender()), retire_atom::value);
      },
  };
}

}  // namespace tessera::storage
