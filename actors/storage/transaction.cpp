#include "actors/storage/transaction.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <map>

#include "actors/storage/storage_codec.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"
#include "runtime/committer.hpp"

namespace tessera::storage {
namespace {

using timeout_atom = caf::atom_constant<caf::atom("txntimeout")>;

struct txn_state {
  bool locking = false;                 // the locked variant (lock_atom first)
  std::vector<std::string> ids;         // sorted; the storages visited
  size_t next = 0;                      // the storage being visited
  std::vector<txn_entry> entries;       // optimistic: expected versions and new data
  std::vector<txn_entry> snapshot;      // locked: what each storage held when locked
  std::vector<storage_record> current;  // locked: each storage's record (version 0: absent)
  std::vector<caf::typed_response_promise<storage_record>> held;  // locked storages
  std::vector<storage_record> after;  // locked: what each becomes (version 0: unchanged)
  std::vector<adapters::write_op> ops;
  std::vector<caf::typed_response_promise<bool>> prepared;  // awaiting the decision
  caf::typed_response_promise<std::vector<txn_entry>> snapshot_reply;
  caf::typed_response_promise<caf::ok_atom> reply;
  bool committing = false;
  bool next_step_taken = false;  // locked: the commit step came
  bool done = false;
};

caf::error conflict_of(caf::error err) {
  auto code = code_of(err);
  if (code == errc::conflict || code == errc::not_found || code == errc::precondition_failed)
    return make_error(errc::conflict, detail_of(err));
  return err;
}

}  // namespace

caf::behavior transaction(caf::event_based_actor* self, directory_actor directory,
                          runtime::committer_actor committer, std::chrono::milliseconds timeout) {
  auto st = std::make_shared<txn_state>();
  // Answers every storage and the requester once; `err` empty means committed.
  auto finish = [self, st](caf::error err) {
    if (st->done) return;
    st->done = true;
    bool unknown = st->committing && err;  // the batch may have landed: storages must reload
    for (auto& rp : st->prepared) {
      if (unknown)
        rp.deliver(err);
      else
        rp.deliver(!err);
    }
    // A locked storage learns what it now holds; when the batch may have landed or not, it
    // gets the error and reloads from RocksDB.
    for (size_t i = 0; i < st->held.size(); ++i) {
      if (unknown)
        st->held[i].deliver(err);
      else
        st->held[i].deliver(!err && i < st->after.size() ? st->after[i] : storage_record{});
    }
    // Only a promise still pending answers (the snapshot of a locked one was answered already).
    if (st->reply.pending()) {
      if (err)
        st->reply.deliver(err);
      else
        st->reply.deliver(caf::ok_atom::value);
    }
    if (err && st->snapshot_reply.pending()) st->snapshot_reply.deliver(err);
    self->quit();
  };
  auto write_batch = [self, st, committer, timeout, finish] {
    if (st->ops.empty()) return finish({});  // nothing changed; every storage validated
    st->committing = true;
    // (A storage whose own wait for the decision ends first quits and reloads from RocksDB,
    // which is right whatever landed.)
    self->request(committer, timeout + std::chrono::seconds(4), runtime::commit_atom::value,
                  std::move(st->ops))
        .then([finish](caf::ok_atom) { finish({}); }, [finish](caf::error& err) { finish(err); });
  };
  auto visit_next = [self, st, directory, write_batch, timeout] {
    if (st->next == st->ids.size()) {
      if (st->locking) return st->snapshot_reply.deliver(st->snapshot), void();
      return write_batch();
    }
    auto& id = st->ids[st->next];
    if (st->locking) {
      self->send(directory, lock_atom::value, id, static_cast<int64_t>(timeout.count()));
    } else {
      auto& e = st->entries[st->next];
      self->send(directory, prepare_atom::value, e.id, e.expected, e.data,
                 static_cast<int64_t>(timeout.count()));
    }
  };
  // Sorted, distinct ids (the order that keeps transactions from waiting on each other).
  auto take_ids = [st](std::vector<std::string> ids) -> caf::error {
    std::sort(ids.begin(), ids.end());
    if (auto dup = std::adjacent_find(ids.begin(), ids.end()); dup != ids.end())
      return make_error(errc::invalid_argument, "storage '" + *dup + "' named twice");
    st->ids = std::move(ids);
    return {};
  };
  return {
      // Optimistic: commit `entries` if every storage is at its expected version.
      [=](runtime::commit_atom, std::vector<txn_entry>& entries) {
        if (st->locking) {  // locked: the second step, the new data of the changed storages
          st->reply = self->make_response_promise<caf::ok_atom>();
          if (st->next_step_taken || st->held.size() != st->ids.size()) {
            finish(make_error(errc::invalid_argument, "commit before the storages were locked"));
            return st->reply;
          }
          st->next_step_taken = true;
          std::map<std::string, std::string> writes;
          for (auto& e : entries) writes[e.id] = std::move(e.data);
          auto now = runtime::now_ms();
          st->after.resize(st->held.size());
          for (size_t i = 0; i < st->held.size(); ++i) {
            auto it = writes.find(st->ids[i]);
            if (it == writes.end() || it->second.empty()) continue;
            st->after[i] = next_record(st->current[i], std::move(it->second), now);
            st->ops.push_back(fenced_write(st->ids[i], st->current[i].version, st->after[i]));
            if (st->current[i].version == 0 && st->current[i].floor > 0)  // created again
              st->ops.push_back({tombstone_key(st->ids[i]), {}, true});
          }
          write_batch();
          return st->reply;
        }
        st->reply = self->make_response_promise<caf::ok_atom>();
        std::sort(entries.begin(), entries.end(),
                  [](const txn_entry& a, const txn_entry& b) { return a.id < b.id; });
        std::vector<std::string> ids;
        for (auto& e : entries) ids.push_back(e.id);
        if (auto err = take_ids(std::move(ids))) {
          finish(err);
          return st->reply;
        }
        st->entries = std::move(entries);
        self->delayed_send(self, timeout, timeout_atom::value);
        visit_next();
        return st->reply;
      },
      // Locked: lock every storage, answer what they hold; (commit_atom, writes) follows.
      [=](lock_atom, std::vector<std::string>& ids) {
        st->locking = true;
        // The requester holds the locks through us: if it goes away before the commit step
        // (a deleted panel), release the storages now instead of at the deadline. (Before
        // make_response_promise, which takes the sender out of the current message.)
        if (auto requester = self->current_sender()) {
          self->monitor(caf::actor_cast<caf::actor>(requester));
          self->set_down_handler([st, finish](caf::down_msg&) {
            if (!st->next_step_taken)
              finish(make_error(errc::unavailable, "the transaction's requester is gone"));
          });
        }
        st->snapshot_reply = self->make_response_promise<std::vector<txn_entry>>();
        if (auto err = take_ids(std::move(ids))) {
          finish(err);
          return st->snapshot_reply;
        }
        self->delayed_send(self, timeout, timeout_atom::value);
        visit_next();
        return st->snapshot_reply;
      },
      [=](locked_atom, storage_record& current) -> caf::result<storage_record> {
        auto rp = self->make_response_promise<storage_record>();
        if (st->done || !st->locking || st->next >= st->ids.size() ||
            st->ids[st->next] != current.id) {
          rp.deliver(storage_record{});  // not a step of this transaction: unchanged
          return rp;
        }
        st->held.push_back(rp);
        st->snapshot.push_back({current.id, current.version, current.data});
        st->current.push_back(std::move(current));
        ++st->next;
        visit_next();
        return rp;
      },
      [=](prepared_atom, const std::string& id,
          std::vector<adapters::write_op>& ops) -> caf::result<bool> {
        auto rp = self->make_response_promise<bool>();
        bool expected = !st->locking && st->next < st->ids.size() && st->ids[st->next] == id;
        if (st->done || !expected) {
          rp.deliver(false);  // not a step this transaction is waiting for
          return rp;
        }
        st->prepared.push_back(rp);
        for (auto& op : ops) st->ops.push_back(std::move(op));
        ++st->next;
        visit_next();
        return rp;
      },
      [=](refused_atom, const std::string&, caf::error& err) { finish(conflict_of(err)); },
      [=](timeout_atom) {
        // The deadline bounds the decision. A batch already with the committer is awaited
        // (for at most `timeout` + 4 s, the committer request's own): answering `timeout`
        // now would tell the requester "not committed" about a batch that may land.
        if (st->committing) return;
        finish(make_error(errc::timeout, "transaction not decided within " +
                                             std::to_string(timeout.count()) + " ms"));
      },
  };
}

}  // namespace tessera::storage
