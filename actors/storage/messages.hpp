// Messages of the storage area: what clients send to the storage directory, which forwards
// each one to the actor owning that id (see storage_directory.hpp for the protocol).
//
// JSON travels as text: `data` is the serialized JSON object, already validated by the sender's
// edge (web/); the actor re-parses it. That keeps every message serializable for clustering.
#pragma once

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace caf {
class actor_system_config;
}

namespace tessera::storage {

using read_atom = caf::atom_constant<caf::atom("read")>;
using create_atom = caf::atom_constant<caf::atom("create")>;
using replace_atom = caf::atom_constant<caf::atom("replace")>;
using merge_atom = caf::atom_constant<caf::atom("merge")>;
using erase_atom = caf::atom_constant<caf::atom("erase")>;
using list_atom = caf::atom_constant<caf::atom("list")>;
using ready_atom = caf::atom_constant<caf::atom("ready")>;
using passivate_atom = caf::atom_constant<caf::atom("passivate")>;
using retire_atom = caf::atom_constant<caf::atom("retire")>;
// Multi-storage transactions (transaction.hpp) and change notifications.
using prepare_atom = caf::atom_constant<caf::atom("prepare")>;
using prepared_atom = caf::atom_constant<caf::atom("prepared")>;
using refused_atom = caf::atom_constant<caf::atom("refused")>;
using changed_atom = caf::atom_constant<caf::atom("changed")>;
using watch_atom = caf::atom_constant<caf::atom("watch")>;
using lock_atom = caf::atom_constant<caf::atom("lock")>;
using refresh_atom = caf::atom_constant<caf::atom("refresh")>;
// (peer_lost_atom, gateway): the node behind another node's gateway is lost (runtime/cluster/
// placement.hpp); requests forwarded to it stop waiting (actors/common/forwarding.hpp).
using peer_lost_atom = caf::atom_constant<caf::atom("peerlost")>;
// (placed_atom): the cluster's members changed; the directory passivates the live storages
// another node owns now and claims the leases of those it owns (runtime/cluster/placement.hpp).
using placed_atom = caf::atom_constant<caf::atom("splaced")>;
using locked_atom = caf::atom_constant<caf::atom("locked")>;

// One storage as it is after a read or a write.
struct storage_record {
  std::string id;
  std::string data;        // JSON object, serialized
  int64_t version = 0;     // 1 on creation, +1 per change
  int64_t created_at = 0;  // ms since epoch
  int64_t updated_at = 0;
  // Absent (version 0) only: the version the storage had when it was erased (its tombstone),
  // so a storage created again continues at floor + 1 and no version ever repeats.
  int64_t floor = 0;
  friend bool operator==(const storage_record&, const storage_record&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, storage_record& x) {
  return f(caf::meta::type_name("storage_record"), x.id, x.data, x.version, x.created_at,
           x.updated_at, x.floor);
}

struct storage_summary {
  std::string id;
  int64_t version = 0;
  int64_t updated_at = 0;
  friend bool operator==(const storage_summary&, const storage_summary&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, storage_summary& x) {
  return f(caf::meta::type_name("storage_summary"), x.id, x.version, x.updated_at);
}

// One page of the id-ordered listing; `next_after` is empty on the last page.
struct storage_page {
  std::vector<storage_summary> items;
  std::string next_after;
  friend bool operator==(const storage_page&, const storage_page&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, storage_page& x) {
  return f(caf::meta::type_name("storage_page"), x.items, x.next_after);
}

// One storage in a multi-storage transaction: it must be at `expected` (0: absent) when the
// transaction commits; `data` is its new JSON object, or empty when it only must not change.
// A locked transaction's snapshot uses the same shape: the version and data it holds.
struct txn_entry {
  std::string id;
  int64_t expected = 0;
  std::string data;
  friend bool operator==(const txn_entry&, const txn_entry&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, txn_entry& x) {
  return f(caf::meta::type_name("txn_entry"), x.id, x.expected, x.data);
}

// If-Match versions; empty means unconditional.
using version_list = std::vector<int64_t>;

// Who hears of every change: (changed_atom, storage id, version; 0 when erased, -1 when
// another node changed it and this node holds no copy: the version is not known here).
using change_sink = caf::typed_actor<caf::reacts_to<changed_atom, std::string, int64_t>>;

// The storage directory as its clients see it (storage_directory.hpp and storage_actor.hpp
// have the protocol): REST routes, panels, tasks, transactions and the readiness probe hold
// this handle, so a request it does not serve, or a reply of the wrong type, does not compile.
using directory_actor = caf::typed_actor<
    caf::replies_to<read_atom, std::string>::with<storage_record>,
    caf::replies_to<create_atom, std::string, std::string>::with<storage_record>,
    caf::replies_to<replace_atom, std::string, std::string, version_list>::with<storage_record>,
    caf::replies_to<replace_atom, std::string, std::string, version_list,
                    int64_t>::with<storage_record>,
    caf::replies_to<merge_atom, std::string, std::string, version_list>::with<storage_record>,
    caf::replies_to<erase_atom, std::string, version_list>::with<storage_record>,
    caf::reacts_to<prepare_atom, std::string, int64_t, std::string, int64_t>,
    caf::reacts_to<lock_atom, std::string, int64_t>,
    caf::replies_to<list_atom, std::string, uint32_t>::with<storage_page>,
    caf::replies_to<ready_atom>::with<bool>, caf::reacts_to<watch_atom, change_sink>,
    caf::reacts_to<refresh_atom, std::string>, caf::reacts_to<refresh_atom>,
    caf::reacts_to<peer_lost_atom, caf::actor>, caf::reacts_to<placed_atom>>;

// The directory's own interface: its clients' and the storage actors' passivation handshake.
using directory_impl =
    directory_actor::extend<caf::reacts_to<passivate_atom, std::string, uint64_t>>;

void add_storage_messages(caf::actor_system_config& cfg);

// 1-128 characters of [A-Za-z0-9_.-].
bool valid_storage_id(const std::string& id);

}  // namespace tessera::storage
