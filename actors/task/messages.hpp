// Messages of the task area (see task_directory.hpp, task_actor.hpp and task_scheduler.hpp for
// the protocols).
//
// Like panels, task definitions and runs travel as JSON text: the web layer parses and bounds
// the request body, the actors validate fields (task_codec.hpp). Successful replies are JSON
// text the web layer sends as is; errors are tessera errc values.
#pragma once

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "actors/storage/messages.hpp"

namespace tessera::task {

using list_atom = caf::atom_constant<caf::atom("tlist")>;
using get_atom = caf::atom_constant<caf::atom("tget")>;
using create_atom = caf::atom_constant<caf::atom("tcreate")>;
using update_atom = caf::atom_constant<caf::atom("tupdate")>;
using erase_atom = caf::atom_constant<caf::atom("terase")>;
using run_atom = caf::atom_constant<caf::atom("trun")>;
using runs_atom = caf::atom_constant<caf::atom("truns")>;
using gone_atom = caf::atom_constant<caf::atom("tgone")>;
using logs_atom = caf::atom_constant<caf::atom("tlogs")>;
using purge_atom = caf::atom_constant<caf::atom("tpurge")>;
using import_atom = caf::atom_constant<caf::atom("timport")>;
// Between the scheduler and task actors.
using schedule_atom = caf::atom_constant<caf::atom("tsched")>;
using fire_atom = caf::atom_constant<caf::atom("tfire")>;
using tick_atom = caf::atom_constant<caf::atom("ttick")>;
using placed_atom = caf::atom_constant<caf::atom("tplaced")>;

// A query of /api/logs (run_log.hpp): the lines of one task or of all, from a level up, in a
// time window, at most `limit`.
struct log_query {
  std::string task_id;        // empty: every task
  int32_t min_level = 0;      // 0 debug .. 4 critical
  int64_t since = 0;          // created_at >= since
  int64_t until = INT64_MAX;  // created_at < until
  uint32_t limit = 100;
  friend bool operator==(const log_query&, const log_query&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, log_query& x) {
  return f(caf::meta::type_name("log_query"), x.task_id, x.min_level, x.since, x.until, x.limit);
}

// The task directory as its clients see it (task_directory.hpp and task_actor.hpp have the
// protocol): the REST routes and main hold this handle. Replies are JSON text.
using directory_actor = caf::typed_actor<
    caf::replies_to<list_atom, std::string, uint32_t>::with<std::string>,
    caf::replies_to<create_atom, std::string>::with<std::string>,
    caf::replies_to<get_atom, std::string>::with<std::string>,
    caf::replies_to<update_atom, std::string, std::string, std::vector<std::string>,
                    storage::version_list>::with<std::string>,
    caf::replies_to<erase_atom, std::string>::with<std::string>,
    caf::replies_to<run_atom, std::string>::with<std::string>,
    caf::replies_to<runs_atom, std::string, int64_t, uint32_t>::with<std::string>,
    caf::replies_to<logs_atom, log_query>::with<std::string>,
    caf::replies_to<purge_atom, int64_t, std::string>::with<std::string>,
    caf::reacts_to<placed_atom>, caf::reacts_to<storage::refresh_atom, std::string>,
    caf::reacts_to<storage::refresh_atom>, caf::reacts_to<storage::peer_lost_atom, caf::actor>>;

using sweep_atom = caf::atom_constant<caf::atom("tsweep")>;

// The directory's own interface: its clients', its task actors' reports, its hourly sweep.
using directory_impl =
    directory_actor::extend<caf::reacts_to<gone_atom, std::string>, caf::reacts_to<sweep_atom>>;

// The scheduler (task_scheduler.hpp): task actors register (schedule_atom, id, at_ms, self);
// tick_atom is its own timer.
using scheduler_actor =
    caf::typed_actor<caf::reacts_to<schedule_atom, std::string, int64_t, caf::actor>,
                     caf::reacts_to<tick_atom, uint64_t>>;

// Registers the task area's message types (log_query) for serialization.
void add_task_messages(caf::actor_system_config& cfg);

}  // namespace tessera::task
