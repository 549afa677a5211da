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
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>
#include <cstdint>
#include <string>

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

// The scheduler (task_scheduler.hpp): task actors register (schedule_atom, id, at_ms, self);
// tick_atom is its own timer.
using scheduler_actor =
    caf::typed_actor<caf::reacts_to<schedule_atom, std::string, int64_t, caf::actor>,
                     caf::reacts_to<tick_atom, uint64_t>>;

// Registers the task area's message types (log_query) for serialization.
void add_task_messages(caf::actor_system_config& cfg);

}  // namespace tessera::task
