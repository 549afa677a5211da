// The panel directory: the one address for panels. At start it reads every panel from the
// store, off the scheduler, and spawns its actor (panels are few, and each must hear about
// changes of its storages even while nobody asks for it); it creates and imports panels,
// forwards everything else to the panel's actor, and routes storage change notifications to
// the panels bound to the storage. A panel actor that stopped without being deleted (a crash)
// starts again: it reads its record off the scheduler while requests for it wait in its
// mailbox, then reports bound_atom (or gone_atom when the record is gone).
//
// Protocol (typed: panel::directory_actor in messages.hpp, directory_impl adds the panel actors'
// reports; replies are JSON text; see panel_actor.hpp for the forwarded messages):
//   (list_atom) -> {"panels":[summary...]} in id order, read from RocksDB (exact)
//   (create_atom, body) -> the full panel | invalid_argument | conflict (the id exists or is
//       being created) | sandbox_failed (code does not compile). Missing storages of
//       storage_ids are created empty. The panel is durable before the reply.
//   (import_atom, bundle, bool replace) -> the full panel. `bundle` is the export format
//       ({"metadata":{..., "storages":{id: default data}}, "template", "handler"}); storages
//       that do not exist are created with their default data. An existing panel is conflict
//       unless `replace`, which updates its metadata, template and handler.
//   (get_atom|update_atom|erase_atom|render_atom|action_atom|export_atom, id, ...) ->
//       forwarded (delegated) to the panel's actor; an unknown id -> not_found. In a cluster,
//       actions, updates and deletions of a panel another node owns (cfg.placement) go to that
//       node (actors/common/forwarding.hpp), so one node runs them in order; without an
//       answer from it they fail with storage_failure (their outcome unknown). Reads, renders
//       and exports are served here (every node has every panel's actor, for its own
//       subscribers).
//   (storage::changed_atom, storage_id, version) -> no reply; told to each panel bound to it
//   (storage::refresh_atom, id) -> no reply; another node changed panel `id` (the change feed,
//       runtime/cluster/change_feed.hpp): its record is read off the scheduler; a live actor
//       takes a newer definition, or is deleted when the record is gone; a panel created
//       elsewhere gets its actor here
//   (storage::refresh_atom) -> no reply; every panel is read again and told that each of its
//       storages changed (version -1): the feed lost changes, and panels created elsewhere
//       meanwhile get their actors
//   (bound_atom, id, storage_ids) and (gone_atom, id) from panel actors -> no reply
//   (fresh_atom) -> bool: true the first time it is asked on a data dir that holds no storage
//       and no panel (main then imports the demo bundles); a marker key in the store makes
//       every later answer false, so deleted demos never come back. Answered once the load at
//       start is done (main asks it before the server listens); read off the scheduler.
// Shutdown: an exit (user_shutdown) stops every panel actor, then the directory.
#pragma once

#include <caf/fwd.hpp>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "actors/panel/panel_actor.hpp"
#include "adapters/kv/kv_store.hpp"
#include "runtime/actor_metrics.hpp"
#include "runtime/blocking_pool.hpp"
#include "runtime/cluster/placement.hpp"

namespace tessera::panel {

struct directory_config {
  std::shared_ptr<adapters::kv_store> store;
  panel_env env;
  runtime::actor_kind_metrics metrics;
  // Where reads of records changed by other nodes run (none: a one-shot thread each).
  std::shared_ptr<runtime::blocking_pool> readers = nullptr;
  // In a cluster: where each panel's owner is (actions, updates and deletions go there), and
  // the forwarding's metrics. None: every panel is served here.
  std::shared_ptr<runtime::cluster::placement> placement = nullptr;
  runtime::cluster::forward_metrics::kind forwarded{};
};

directory_impl::behavior_type panel_directory(directory_impl::pointer self, directory_config cfg);

// Reads a bundle in the export format; invalid_argument names what is wrong.
struct bundle {
  nlohmann::json panel;                         // a create body: id, metadata, template, handler
  std::map<std::string, std::string> storages;  // id -> default data (JSON object text)
};
caf::expected<bundle> parse_bundle(const std::string& text);

}  // namespace tessera::panel
