// How a storage is laid out in RocksDB.
//
// Key:   "storage/" + id
// Value: "v1 <version> <created_at_ms> <updated_at_ms>\n" + JSON object text
// The header line lets listings read version and timestamps without parsing the data.
// Tombstone: "tombstone/storage/" + id -> the decimal version the storage had when erased,
// written in the erase's batch and removed when the id is created again.
// `decode` returns nullopt for a value it cannot read (never throws).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "actors/storage/messages.hpp"
#include "adapters/kv/kv_store.hpp"

namespace tessera::storage {

inline constexpr std::string_view key_prefix = "storage/";

std::string storage_key(std::string_view id);
std::string tombstone_key(std::string_view id);

std::string encode(const storage_record& r);

// The write of `next` (or with `erase`, the delete of the storage's record) fenced by the
// version the writer read (storage_record::version, 0: absent): it applies only while the
// durable store still holds that version (kv_store.hpp's conditional writes), so a writer with
// a stale copy (another server wrote since) fails with conflict instead of overwriting.
adapters::write_op fenced_write(const std::string& id, int64_t read_version,
                                std::optional<storage_record> next);

// The record after a change of `current` (version 0: absent, created at current.floor + 1) to
// `data` at time `now_ms`.
storage_record next_record(const storage_record& current, std::string data, int64_t now_ms);

std::optional<storage_record> decode(std::string_view id, std::string_view value);

}  // namespace tessera::storage
