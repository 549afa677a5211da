// The state of one storage and the rules for changing it: what the storage actor
// (storage_actor.hpp) owns. Pure: what it starts from is read by `fetch` (blocking: the storage
// actor runs it off the scheduler) and handed to `load`; every change is computed from the
// current state (`create`, `replace`, `merge`, `erase`, `prepare`) as a `change` that is not
// yet durable, and made current by `apply` once it is.
//
// Contract:
// - Until `load`, and after a load that failed (the store's error, or storage_failure for an
//   unreadable record or tombstone), every call answers that error; `load_failed()` tells the
//   actor to fetch again.
// - A change carries the write ops of one RocksDB batch: the record, and the tombstone an
//   erase writes (or a create removes), so versions continue across delete and create.
// - Errors: not_found, conflict (create of an existing id; prepare at another version),
//   precondition_failed (If-Match), invalid_argument (data not a JSON object).
#pragma once

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "actors/storage/messages.hpp"
#include "adapters/error.hpp"
#include "adapters/kv/kv_store.hpp"

namespace tessera::storage {

// A change computed from the current state, not yet durable.
struct change {
  std::optional<storage_record> next;   // nullopt: the storage is erased
  nlohmann::json document;              // next->data parsed
  storage_record reply;                 // what the requester gets once it is durable
  std::vector<adapters::write_op> ops;  // one batch: the record and the tombstone
};

// What the store holds for one storage: its record, or when absent its tombstone.
struct stored_storage {
  bool has_record = false;
  std::string record;
  bool has_tombstone = false;
  std::string tombstone;
  friend bool operator==(const stored_storage&, const stored_storage&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stored_storage& x) {
  return f(caf::meta::type_name("stored_storage"), x.has_record, x.record, x.has_tombstone,
           x.tombstone);
}

class storage_owner {
 public:
  explicit storage_owner(std::string id);
  // Fetches and loads at once (tests, tools).
  storage_owner(const adapters::kv_store& store, std::string id);

  // Reads what the store holds for `id` (one or two point reads; blocking).
  static caf::expected<stored_storage> fetch(const adapters::kv_store& store,
                                             const std::string& id);
  // Starts from what `fetch` found, or from its error.
  void load(caf::expected<stored_storage> found);
  bool load_failed() const { return static_cast<bool>(load_error_); }

  const std::string& id() const { return id_; }
  int64_t version() const { return record_ ? record_->version : 0; }

  caf::expected<storage_record> read() const;
  caf::expected<change> create(const std::string& data) const;
  caf::expected<change> replace(const std::string& data, const version_list& if_match) const;
  // Shallow merge of top-level keys; a key set to null is removed.
  caf::expected<change> merge(const std::string& patch, const version_list& if_match) const;
  caf::expected<change> erase(const version_list& if_match) const;
  // The change a transaction step makes: the storage must be at `expected` (0: absent); an
  // empty `data` only checks that (nullopt: nothing to write).
  caf::expected<std::optional<change>> prepare(int64_t expected, const std::string& data) const;

  // What a locked transaction is handed for an absent storage: version 0, and the floor its
  // next version continues from.
  storage_record absent() const { return storage_record{id_, "{}", 0, 0, 0, floor_}; }

  // Makes a durable change the current state.
  void apply(change c);
  // Makes a record a locked transaction committed the current state.
  void apply_committed(storage_record r);

 private:
  caf::error check_write(const version_list& if_match) const;
  caf::error not_found() const;
  storage_record next_version() const;
  change with_data(storage_record next, nlohmann::json document) const;

  std::string id_;
  std::optional<storage_record> record_;  // nullopt: absent
  nlohmann::json document_;               // record_->data parsed, to merge without re-parsing
  int64_t floor_ = 0;                     // absent: the version it was erased at (tombstone)
  caf::error load_error_ = make_error(errc::unavailable, "the storage is loading");
};

}  // namespace tessera::storage
