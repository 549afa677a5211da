// A transaction across storages: checks that every storage it names is still at the version
// the caller read, and commits the new data of the changed ones in one RocksDB write batch, or
// changes nothing. Panel actions (and task runs) use it to commit what a handler changed.
//
// How: the transaction actor T visits the storages in id order (so two transactions never wait
// for each other in a cycle). Each storage actor checks its version and, if it matches, asks T
// for the decision and handles nothing else until it comes: it is locked. Once all are locked,
// T sends the write ops of the changed ones to the group committer as one batch; when that is
// durable T answers every storage `true` (they apply the change in memory) and its requester
// `ok`. A storage at another version refuses: T answers the locked ones `false` and its
// requester `conflict`. Reads and REST writes of a locked storage wait in its mailbox, for at
// most the time the batch takes.
//
// Protocol (one request per transaction actor; it quits after answering):
//   (commit_atom, std::vector<txn_entry>) -> ok_atom
//       | conflict: a storage was not at its expected version (nothing written; re-read, retry)
//       | invalid_argument (a bad id), storage_failure (RocksDB refused the batch: nothing
//         written), timeout (no decision within `timeout`: nothing written; or the
//         committer did not answer within `timeout` + 4 s of getting the batch: it may have
//         landed, and the storages involved reload from RocksDB). Once the batch is with
//         the committer, the transaction waits for it past its own deadline.
//   Locked variant, for work that must not conflict (a panel action that lost too often):
//   (lock_atom, std::vector<std::string> ids) -> std::vector<txn_entry> {id, version, data}
//       once every storage is locked (they serve nothing else until the end), then
//   (commit_atom, std::vector<txn_entry> writes) -> ok_atom | storage_failure | timeout:
//       writes the new data of the storages named (each a JSON object) in one batch and
//       unlocks all; no writes only unlocks. Without the second step within `timeout`, or
//       if the requester terminates before it, the transaction aborts and the storages are
//       unlocked unchanged.
// Entries must name distinct ids. Not idempotent: a retry after timeout must re-read first.
#pragma once

#include <caf/fwd.hpp>
#include <chrono>

#include "actors/storage/messages.hpp"
#include "runtime/committer.hpp"

namespace tessera::storage {

caf::behavior transaction(caf::event_based_actor* self, directory_actor directory,
                          runtime::committer_actor committer, std::chrono::milliseconds timeout);

}  // namespace tessera::storage
