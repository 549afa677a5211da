// The renders of one panel, kept by its panel actor (panel_actor.hpp): the cache and the
// storage versions it showed, the render in flight and the changes that arrive behind it, the
// versions subscribers see, publication to env.sink, and the retry of a render that could not
// run.
//
// Contract (used only on the panel actor `self`; `env` and `record` are the actor's and outlive
// this object; `record` is read at each use, so a new definition renders at once):
//   - render() answers GET /render: the cache when a read finds the bound storages still at the
//     versions it showed (read your writes), else the next render.
//   - changed(): something shown changed (a storage, the definition); a subscribed panel
//     re-renders. Renders coalesce: one in flight, changes meanwhile make one more of the
//     latest state (counted as coalesced). shows(id, version): the cache shows exactly that
//     version of `id` (a change notice about it is no change).
//   - A render the sandbox had no capacity for, or whose read failed, is neither cached nor
//     published; it is retried after 1 s through (retry_atom) to `self`, handled by retry().
//   - committed(state, answer, generation) gives the version of a state an action committed;
//     its render (answer's "html") is cached and published only when generation() is still
//     `generation` (the one the action read) and no render is in flight.
//   - Versions published never go down: a lower sum becomes the last one + 1.
//   - fail_waiting(err) answers every waiting GET /render with `err` (the panel was deleted).
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/fwd.hpp>
#include <caf/typed_response_promise.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "actors/panel/panel_actor.hpp"
#include "actors/panel/panel_codec.hpp"
#include "actors/storage/atomic_run.hpp"

namespace tessera::panel {

using retry_atom = caf::atom_constant<caf::atom("prretry")>;

class panel_renderer {
 public:
  panel_renderer(caf::event_based_actor* self, const panel_env& env, const panel_record& record)
      : self_(self), env_(env), rec_(record) {}

  caf::result<std::string> render();
  void changed();
  bool shows(const std::string& storage_id, int64_t version) const;
  void retry();
  uint64_t generation() const { return generation_; }
  int64_t committed(const storage::snapshot& s, const nlohmann::json& answer, uint64_t generation);
  void fail_waiting(const caf::error& err);

 private:
  // The outcome of a render: what subscribers and GET /render get.
  struct rendered {
    bool ok = false;
    int64_t version = 0;
    std::string body;  // ok: HTML; else the sandbox's JSON answer (with "version")
  };

  bool watched() const;
  int64_t stamp(int64_t computed);
  int64_t version_of(const storage::snapshot& s) const;
  void retry_later();
  void start();
  void done(std::chrono::steady_clock::time_point started, rendered out, caf::error err,
            std::map<std::string, int64_t> versions);
  void remember(const rendered& out, std::map<std::string, int64_t> versions);
  void publish(const rendered& out);
  void read(std::function<void(caf::expected<storage::snapshot>)> then);

  caf::event_based_actor* self_;
  const panel_env& env_;
  const panel_record& rec_;
  int64_t last_version_ = 0;  // the highest version stamped
  bool retry_pending_ = false;
  uint64_t generation_ = 0;         // +1 per change of the panel or a bound storage
  uint64_t render_generation_ = 0;  // the generation the render in flight started at
  bool rendering_ = false;
  bool cache_valid_ = false;
  rendered cache_;
  std::map<std::string, int64_t> cache_versions_;
  std::vector<caf::typed_response_promise<std::string>> waiters_;
};

}  // namespace tessera::panel
