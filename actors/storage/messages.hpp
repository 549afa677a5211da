// Messages of the storage area: what clients send to the storage directory, which forwards
// each one to the actor owning that id (see storage_directory.hpp for the protocol).
//
// JSON travels as text: `data` is the serialized JSON object, already validated by the sender's
// edge (web/); the actor re-parses it. That keeps every message serializable for clustering.
#pragma once

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
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

void add_storage_messages(caf::actor_system_config& cfg);

// 1-128 characters of [A-Za-z0-9_.-].
bool valid_storage_id(const std::string& id);

}  // namespace tessera::storage
