// The actor owning one panel: its definition (panel_codec.hpp) in RocksDB under panel/<id>,
// its render cache, its subscribers count, and the queue of its actions.
//
// Protocol (spawned and addressed through the panel directory; replies are JSON text unless
// said; user-code failures are errc::sandbox_failed with the sandbox's answer as detail):
//   (get_atom, id) -> the full panel object
//   (update_atom, id, body, std::vector<std::string> allowed, version_list if_match)
//       -> the full panel object | invalid_argument | precondition_failed | sandbox_failed
//       (a template or handler that does not compile; the old one keeps serving)
//       Applies the fields in `allowed`; new storage ids are created empty. Updates run one at
//       a time in arrival order. Actions and renders go on being served meanwhile, with the old
//       definition until the new one is durable; then the new one serves them.
//   (erase_atom, id) -> {"success":true}; publishes `deleted`, tells the directory
//       (gone_atom, id), answers queued work not_found, quits.
//   (render_atom, id) -> {"html","version"} | sandbox_failed (template_error, version in it)
//       The cached render only if a read finds the bound storages still at the versions it
//       showed, so a client sees its own storage write in the next render (read your writes).
//       While env.watched(id) says someone subscribes to the panel, every change of a bound
//       storage or of the panel re-renders it and publishes the result to env.sink (a render
//       the sandbox had no capacity for, or whose storage read failed, is retried after 1 s
//       rather than shown). Versions published never go down.
//   (action_atom, id, action, payload JSON text) -> {"success":true,"html","version",
//       "changed":[ids],"logs"[,"render_error"]} | invalid_argument (no handler) | conflict
//       | sandbox_failed | timeout (it waited in the queue longer than env.atomic.call_timeout, or
//       its commit could not start, or its wait for the commit ran out, a second before
//       env.atomic.call_timeout after the arrival of the oldest action of its run, web/'s wait:
//       nothing was committed) | unavailable (1024 actions already wait).
//       Actions of one panel run in arrival order: read every bound storage (missing ones are
//       {} at version 0), run on_action in the sandbox, then commit what it changed through a
//       storage transaction (transaction.hpp) that also checks the unchanged ones are still at
//       the versions read; a conflict re-reads and re-runs, and after env.atomic.max_retries
//       conflicts the action runs once more with its storages locked. The actions waiting when
//       the sandbox is free go together, up to env.max_batch, in one call and one commit
//       (action_batch.hpp): each runs on the state the ones before it left, one that fails
//       changes nothing and gets its own error, the others commit; all get the version and
//       html of the state after the batch. A batch that fails as a whole (timeout, memory,
//       crash) runs again one action per call, so each gets its own outcome.
//       The read is skipped when the actor knows the state (what its last run committed, no
//       newer change heard); the sandbox call of the actions queued behind a committing run is
//       made during that commit, on the state it leaves, and used only if that is exactly the
//       state committed (docs/architecture.md, "Calls ahead"). Neither changes what commits:
//       the commit checks every version, and a stale guess only costs a conflict or a call.
//   (export_atom, id) -> {"metadata":{...,"storages":{id: data}},"template","handler"}
//   (storage::refresh_atom, id, record) from the directory -> no reply; another node changed
//       the panel: a record with a newer version (or created again, or the same version with
//       another content: the store's wins) becomes the definition (as an update's), an empty
//       one (deleted elsewhere) ends the panel as erase does, without writing
//   (storage::changed_atom, storage_id, version) from the directory -> no reply; invalidates
//       the render cache, re-renders when subscribed. Renders coalesce: one in flight at a time;
//       changes meanwhile make one more render of the latest state (counted as coalesced).
// `version` of a render = panel version + the versions of its bound storages.
#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <chrono>
#include <functional>
#include <string>

#include "actors/panel/messages.hpp"
#include "actors/panel/panel_codec.hpp"
#include "actors/panel/panel_metrics.hpp"
#include "actors/storage/atomic_run.hpp"

namespace tessera::panel {

struct panel_env {
  storage::atomic_env atomic;  // storages, sandbox, committer, timeouts, max_retries
  render_sink sink;            // optional
  std::function<bool(const std::string&)> watched;  // does anyone subscribe to this panel?
  panel_metrics* metrics = nullptr;
  panel_limits limits;   // a panel's `timeout`: default and maximum (sandbox.*timeout_ms)
  size_t max_batch = 0;  // queued actions sent to the sandbox in one call (1: no batching)

  // atomic_env's settings, the call limits, panels.max_batch; the actors, the sink, `watched`
  // and the metrics are the caller's to set.
  static panel_env from_settings(const config::settings& s) {
    panel_env e;
    e.atomic = storage::atomic_env::from_settings(s);
    e.limits = panel_limits::from_settings(s);
    e.max_batch = s.panel_max_batch;
    return e;
  }
};

caf::behavior panel_actor(caf::event_based_actor* self, panel_env env, directory_impl directory,
                          panel_record record);

}  // namespace tessera::panel
