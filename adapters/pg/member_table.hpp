// The cluster's membership table in PostgreSQL (schema v3 of pg_store.hpp, `tessera_members`),
// in the way of Orleans' SQL membership: every run of a node is a member of its own, named by
// a generation the database hands out: joining until it has reached the alive members, then
// alive while it renews its heartbeat, and dead for good once declared so. Every time is the
// database's clock, so the nodes' clocks never matter.
//
// Contract:
// - `join` inserts a new joining member and returns its generation (greater than every
//   earlier one). Dead members older than a day are dropped.
// - `activate` makes a joining member alive and, in the same statement, declares dead the
//   earlier runs of its name not yet dead (a node started again replaces its earlier run at
//   once; a process refused by the cluster never becomes alive and so replaces nothing). It
//   returns the generations it replaced; conflict when the member is no longer joining.
// - `heartbeat` renews a joining or alive member; false when it is dead (declared by another
//   node, or replaced): it never comes back, the node has to join again.
// - `expire` declares dead every member not yet dead (other than `self`) whose heartbeat is
//   older than `lease`, each with one conditional UPDATE: when several nodes race, exactly one
//   declares each member, and only that one gets it back.
// - `leave` declares `self` dead (a clean stop: the others take over without waiting).
// - `claim` makes this member (alive, `generation`) the holder of each key's lease (schema v4
//   `tessera_leases`, one statement): a key another generation held, or none, passes to it
//   with its epoch raised by one; a key it holds already is left as it is. It returns the keys
//   whose holder changed, with their new epoch and the generation that held them before (0:
//   none): a takeover. A member that is not alive claims nothing.
// - Errors: errc::unavailable when PostgreSQL cannot be reached (nothing happened; retry), and
//   errc::storage_failure when it refused a statement. No message holds a password.
// - Not thread-safe: one thread (the membership actor's) uses a table at a time.
#pragma once

#include <caf/expected.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::adapters::pg {

class connection;

struct member_row {
  std::string name;
  int64_t generation = 0;
  std::string state;            // "joining" | "alive" | "dead"
  std::string address;          // HOST:PORT of its CAF middleman
  std::string http;             // HOST:PORT of its HTTP server
  int64_t heartbeat_at_ms = 0;  // Unix milliseconds, the database's clock
};

struct lease_claim {
  std::string key;
  int64_t epoch = 0;
  int64_t previous = 0;  // the generation that held it before; 0: nobody
};

struct lease_row {
  std::string key;
  std::string owner;  // the member's name
  int64_t generation = 0;
  int64_t epoch = 0;
};

struct member_list {
  std::vector<member_row> members;  // by name, then generation
  int64_t now_ms = 0;               // the database's clock when read
};

class member_table {
 public:
  // Connects (its own connection: heartbeats never wait behind writes). The schema must exist
  // (pg_store::open made it). Every statement is cancelled by PostgreSQL after
  // `statement_timeout` (the lease: a heartbeat stuck longer has failed anyway), so a stalled
  // database never holds the membership actor, or a shutdown, for long.
  static caf::expected<std::unique_ptr<member_table>> open(
      const std::string& conninfo,
      std::chrono::milliseconds statement_timeout = std::chrono::seconds(3));
  ~member_table();

  caf::expected<int64_t> join(const std::string& name, const std::string& address,
                              const std::string& http);
  caf::expected<std::vector<int64_t>> activate(int64_t generation);
  caf::expected<bool> heartbeat(int64_t generation);
  caf::expected<std::vector<member_row>> expire(int64_t self, std::chrono::milliseconds lease);
  caf::expected<member_list> list();
  caf::error leave(int64_t generation);
  caf::expected<std::vector<lease_claim>> claim(const std::vector<std::string>& keys,
                                                const std::string& name, int64_t generation);
  // The leases whose key starts with `prefix`, by key.
  caf::expected<std::vector<lease_row>> leases(const std::string& prefix);
  // The cluster's shared secret (64 hex digits) under `secret_key` in tessera_kv: made at
  // random by the first node that asks, the same for every node of the database after. Nodes
  // prove with it that they are members (peers.hpp): only a process that can read the
  // database can. Never logged.
  caf::expected<std::string> secret();
  static constexpr std::string_view secret_key = "meta/cluster_secret";

 private:
  member_table(std::unique_ptr<connection> c, std::chrono::milliseconds statement_timeout);
  caf::error limit_statements();
  // Runs a statement, reconnecting once first when the connection broke.
  caf::expected<std::vector<std::vector<std::optional<std::string>>>> run(
      std::string_view statement, const std::vector<std::string>& args);

  std::unique_ptr<connection> c_;
  std::chrono::milliseconds statement_timeout_;
};

}  // namespace tessera::adapters::pg
