// `tessera migrate --from SRC --to DST [--force]`: copies a tessera data set from one store to
// another, or brings in (and writes out) the origin app's data directory.
//
// SRC and DST (`parse_endpoint`): `rocksdb:DIR`; `postgres://...` or `postgresql://...` (a libpq
// URL), or `postgres:` followed by a libpq key=value string; `files:DIR`, the origin app's
// layout: `storages/<id>.json`, `panels/<id>/{metadata.json,template.html,handler.py}`,
// `tasks/<id>/{metadata.json,handler.py}`, and `tasks.json` where an older version kept its
// tasks (a list of task objects, or an object of them by id).
//
// Contract:
// - Between stores every key is copied as it is: storages with their versions and tombstones,
//   panels, tasks with their scheduler state, runs, logs, the server's metadata. From files,
//   storages, panels and tasks become what the REST API would have created (storages keep a
//   `version` their file holds); to files, they are written in the origin layout (runs and
//   logs have no place there and are counted as not kept).
// - The target must be empty, unless `force`: then what the source holds is written over it
//   (running it again gives the same target: idempotent).
// - A file or record that cannot be read is named with the reason; everything else is copied
//   and the result says the run is incomplete.
// - The result counts each kind on both sides with a checksum of its content (SHA-256 over the
//   items in key order), the target read back after the copy. It covers ids, storage data and
//   versions, panel and task definitions, and every other key's bytes; it leaves out times and
//   definition versions, which the origin's files lack. A file that holds an id already read
//   (two panel folders naming one id, a task in tasks.json and in tasks/) is a problem, not
//   copied. Copy from a store no server is writing to: pages are read one after another.
#pragma once

#include <caf/expected.hpp>
#include <map>
#include <string>
#include <vector>

namespace tessera::web {

struct endpoint {
  enum class kind { rocksdb, postgres, files } what;
  std::string where;  // the directory, or the libpq connection string
  std::string shown;  // for messages (a password masked)
};

caf::expected<endpoint> parse_endpoint(const std::string& text);

struct kind_summary {
  uint64_t count = 0;
  std::string checksum;  // hex SHA-256
};

struct migrate_result {
  std::map<std::string, kind_summary> source, target;  // by kind: storages, panels, tasks,
                                                       // runs, logs, other
  uint64_t copied = 0;                                 // keys written
  std::vector<std::string> problems;                   // what could not be read, and why
};

caf::expected<migrate_result> migrate(const endpoint& from, const endpoint& to, bool force);

// `tessera migrate` itself: prints the summary; returns the exit code (0 done, 1 failed,
// 3 incomplete: some files or records could not be read).
int run_migrate_command(const std::string& from, const std::string& to, bool force);

}  // namespace tessera::web
