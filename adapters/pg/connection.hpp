// A thin RAII wrapper over one libpq connection (Debian's libpqxx 6.4 has no pipeline mode,
// so tessera speaks libpq directly): connect, run a statement, run a pipeline of prepared
// statements in one round trip and one implicit transaction, and the masking of passwords.
//
// Contract:
// - Not thread-safe: one thread uses a connection at a time (the pool lends them).
// - Statements take their parameters as raw bytes (binary format), except those marked as
//   text (numbers), and rows come back in binary format: bytea arrives as its bytes.
// - A connection that could not be made, or was lost before a statement could have taken
//   effect, is errc::unavailable (nothing happened; retry later); a pipeline whose
//   conditional write's check failed (SQLSTATE TS409, or 23505 for a key that had to be
//   absent) is errc::conflict (nothing written); `open`'s names the
//   connection string, its password masked. A statement PostgreSQL refused, or a commit whose
//   connection was lost after it was sent (its outcome unknown), is errc::storage_failure. No
//   message of this file ever holds a password.
// - A connection that broke (`broken()`) answers every call with an error until `reset()`
//   reconnects it (re-preparing its statements).
#pragma once

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/error.hpp"

struct pg_conn;
struct pg_result;

namespace tessera::adapters::pg {

// The connection string (key=value words or a postgres:// URL) with any password replaced by
// "***", for messages and logs.
std::string mask_password(std::string_view conninfo);

// A parameter: bytes sent as bytea/text in binary format, or a number sent as text.
struct param {
  std::string_view bytes;
  bool text = false;
  static param of_text(std::string_view s) { return {s, true}; }
};

// The rows of a result: each a vector of column values (nullopt: NULL).
using row = std::vector<std::optional<std::string>>;
using rows = std::vector<row>;

// One statement of a pipeline: a prepared statement's name and its parameters.
struct pipelined {
  std::string_view statement;
  std::vector<param> params;
};

class connection {
 public:
  // Connects and prepares `statements` (name, SQL). On failure the error names the masked
  // connection string.
  static caf::expected<std::unique_ptr<connection>> open(
      const std::string& conninfo, std::vector<std::pair<std::string, std::string>> statements);

  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // Runs SQL text with no parameters (several statements allowed); its last result's rows.
  caf::expected<rows> exec(const std::string& sql);

  // Runs a prepared statement.
  caf::expected<rows> run(std::string_view statement, const std::vector<param>& params);

  // Sends every statement at once and waits for all answers: one round trip, one implicit
  // transaction (PostgreSQL commits it at the pipeline's sync, or rolls all of it back when
  // one statement fails). Rows are not kept.
  caf::error run_pipeline(const std::vector<pipelined>& statements);

  // After a LISTEN: the payloads of the notifications that arrived, in the order PostgreSQL
  // sent them (commit order), waiting at most `timeout` for the first (empty: none came).
  // unavailable when the connection was lost (reset() and LISTEN again).
  caf::expected<std::vector<std::string>> notifications(std::chrono::milliseconds timeout);

  bool broken() const;
  // Reconnects a broken connection and prepares its statements again.
  caf::error reset();

 private:
  connection(pg_conn* c, std::vector<std::pair<std::string, std::string>> statements);
  caf::error prepare_all();
  caf::error failure(std::string_view what, errc code = errc::unavailable) const;

  pg_conn* conn_;
  bool poisoned_ = false;
  std::vector<std::string> secrets_;  // scrubbed from every message  // left in pipeline mode or
                                      // out of step: reset before reuse
  std::vector<std::pair<std::string, std::string>> statements_;
};

}  // namespace tessera::adapters::pg
