// The file side of `tessera migrate` (web/migrate.hpp states the contract): the origin app's
// data directory read as tessera's keys and written from them, and the kind each key belongs
// to (the key layout: docs/architecture.md). Internal to web/.
#pragma once

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "actors/storage/fields.hpp"
#include "adapters/kv/kv_store.hpp"

namespace tessera::web::migration {

// "storages", "tombstones", "panels", "tasks", "task_states", "runs", "runs_in_progress",
// "logs", "logs_by_time", "meta" or "other".
std::string kind_of(std::string_view key);

// The kinds the origin app's files hold (storages, panels, tasks).
bool kept_in_files(const std::string& kind);

// The limits of tessera's defaults, with which panel and task records are read.
storage::call_limits limits();

// Everything `root` holds as tessera's keys, in key order; what cannot be read is added to
// `problems` (path: reason) and left out.
caf::expected<adapters::kv_rows> read_files(const std::filesystem::path& root,
                                            std::vector<std::string>& problems);

// Writes one key in the origin layout (nothing for kinds the files do not keep); an
// unreadable record is added to `problems`. Fails only when a file cannot be written.
caf::error write_file(const std::filesystem::path& root, const std::string& key,
                      const std::string& value, std::vector<std::string>& problems);

// True when `root` holds no storages, panels or tasks.
bool files_empty(const std::filesystem::path& root);

}  // namespace tessera::web::migration
