#include "adapters/kv/pg_store.hpp"

#include <iomanip>
#include <random>
#include <sstream>

#include "adapters/error.hpp"
#include "adapters/kv/change_log.hpp"
#include "adapters/pg/connection.hpp"

namespace tessera::adapters {
namespace {

using statements = std::vector<std::pair<std::string, std::string>>;

// How often a server's writes also drop the changes past the retention (every n-th write).
constexpr uint64_t trim_every = 256;

// Serializes schema work among servers starting together ("tessera" in ASCII).
constexpr const char* schema_lock = "SELECT pg_advisory_xact_lock(7310593858020303201)";

const char* const create_v1 =
    "CREATE TABLE tessera_kv (key bytea PRIMARY KEY, value bytea NOT NULL);"
    "INSERT INTO tessera_schema (version) VALUES (1);";

// Version 2: the change sequence (kv_store.hpp). tessera_seq's one row is the newest number;
// a write takes its numbers by updating it last in its transaction, so the row's lock orders
// the numbers as the commits (on every server of the database).
const char* const upgrade_v1_v2 =
    "CREATE TABLE tessera_seq (one boolean PRIMARY KEY DEFAULT true CHECK (one),"
    " last bigint NOT NULL, sequence text NOT NULL);"
    "INSERT INTO tessera_seq (last, sequence) VALUES (0, md5(random()::text ||"
    " clock_timestamp()::text || pg_backend_pid()::text));"
    "CREATE TABLE tessera_changes (last_seq bigint PRIMARY KEY, ops integer NOT NULL,"
    " body bytea NOT NULL);"
    // A conditional write's check (kv_store.hpp, write_op::expect): the row locked until the
    // commit, or for a key that must be absent, none there.
    "CREATE FUNCTION tessera_expect(k bytea, present boolean, prefix bytea) RETURNS void"
    " LANGUAGE plpgsql AS $$ DECLARE v bytea; BEGIN"
    " SELECT value INTO v FROM tessera_kv WHERE key = k FOR UPDATE;"
    " IF (present AND (v IS NULL OR substring(v FROM 1 FOR length(prefix)) <> prefix))"
    " OR (NOT present AND v IS NOT NULL) THEN"
    " RAISE EXCEPTION 'the key changed since it was read' USING ERRCODE = 'TS409'; END IF;"
    " END $$;"
    "UPDATE tessera_schema SET version = 2;";

// Version 3: the cluster's members (adapters/pg/member_table.hpp). A generation names one run
// of one node; heartbeats and deaths are stamped with the database's clock, so the nodes'
// clocks never matter.
const char* const upgrade_v2_v3 =
    "CREATE TABLE tessera_members (generation bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " name text NOT NULL, state text NOT NULL CHECK (state IN ('joining', 'alive', 'dead')),"
    " address text NOT NULL, http text NOT NULL,"
    " joined_at timestamptz NOT NULL DEFAULT now(),"
    " heartbeat_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX tessera_members_live ON tessera_members (name) WHERE state <> 'dead';"
    "UPDATE tessera_schema SET version = 3;";

// Version 4: the cluster's ownership leases (adapters/pg/member_table.hpp, `claim`): which
// member holds each actor key, and an epoch raised at every change of holder.
const char* const upgrade_v3_v4 =
    "CREATE TABLE tessera_leases (key text PRIMARY KEY, owner text NOT NULL,"
    " generation bigint NOT NULL, epoch bigint NOT NULL,"
    " claimed_at timestamptz NOT NULL DEFAULT now());"
    "UPDATE tessera_schema SET version = 4;";

std::string select_name(bool inclusive, bool bounded, bool reverse) {
  return std::string{"sel_"} + (inclusive ? "ge" : "gt") + (bounded ? "_lt" : "") +
         (reverse ? "_desc" : "");
}

statements prepared() {
  statements s{
      {"get", "SELECT value FROM tessera_kv WHERE key = $1"},
      {"put",
       "INSERT INTO tessera_kv (key, value) VALUES ($1, $2) "
       "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"},
      {"del", "DELETE FROM tessera_kv WHERE key = $1"},
      // A put whose key must be absent: a unique violation (23505) when another made it.
      {"ins", "INSERT INTO tessera_kv (key, value) VALUES ($1, $2)"},
      {"expect", "SELECT tessera_expect($1, $2::boolean, $3)"},
      {"ping", "SELECT 1"},
      // The numbers of a write of $1 ops, its body $2: the last statement of its pipeline.
      {"number",
       "WITH s AS (UPDATE tessera_seq SET last = last + $1 RETURNING last) "
       "INSERT INTO tessera_changes (last_seq, ops, body) SELECT last, $1, $2 FROM s"},
      // The same, and NOTIFY "<origin $3> <last> <ops>" at the commit (options::notify).
      {"number_notify",
       "WITH s AS (UPDATE tessera_seq SET last = last + $1 RETURNING last), "
       "c AS (INSERT INTO tessera_changes (last_seq, ops, body) SELECT last, $1, $2 FROM s) "
       "SELECT pg_notify('tessera_changes', $3 || ' ' || last || ' ' || $1) FROM s"},
      // Drops the writes more than $1 changes behind the newest.
      {"trim", "DELETE FROM tessera_changes WHERE last_seq <= (SELECT last FROM tessera_seq) - $1"},
      // The newest number, the sequence's id and up to $2 writes after $1, in one snapshot
      // (numbers as text).
      {"changes",
       "SELECT s.last::text, s.sequence, c.last_seq::text, c.body FROM tessera_seq s "
       "LEFT JOIN LATERAL (SELECT last_seq, body FROM tessera_changes WHERE last_seq > $1 "
       "ORDER BY last_seq LIMIT $2) c ON true ORDER BY c.last_seq"},
  };
  for (bool inclusive : {true, false})
    for (bool bounded : {true, false})
      for (bool reverse : {true, false}) {
        std::string sql = "SELECT key, value FROM tessera_kv WHERE key ";
        sql += inclusive ? ">= $1" : "> $1";
        sql += bounded ? " AND key < $2" : "";
        sql += reverse ? " ORDER BY key DESC" : " ORDER BY key";
        sql += bounded ? " LIMIT $3" : " LIMIT $2";
        s.emplace_back(select_name(inclusive, bounded, reverse), std::move(sql));
      }
  return s;
}

// The least key greater than every key starting with `prefix` (none: no bound).
std::optional<std::string> successor(std::string_view prefix) {
  std::string s{prefix};
  while (!s.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(s.back());
    if (last != 0xff) {
      ++last;
      return s;
    }
    s.pop_back();
  }
  return std::nullopt;
}

// Creates the schema in an empty database, upgrades an older one, refuses a newer one.
caf::error prepare_schema(pg::connection& c) {
  auto version = c.exec(std::string{"BEGIN;"} + schema_lock +
                        ";CREATE TABLE IF NOT EXISTS tessera_schema (version integer NOT NULL);"
                        "SELECT version FROM tessera_schema");
  auto rollback = [&c](caf::error err) {
    (void)c.exec("ROLLBACK");
    return err;
  };
  if (!version) return rollback(version.error());
  int found = 0;
  if (!version->empty() && (*version)[0][0]) found = std::stoi(*(*version)[0][0]);
  if (found > pg_store::schema_version)
    return rollback(make_error(
        errc::storage_failure,
        "the PostgreSQL database holds tessera schema version " + std::to_string(found) +
            ", newer than this server knows (" + std::to_string(pg_store::schema_version) +
            "): run a newer tessera, or point storage.postgres_url at another database"));
  if (found == 0) {
    if (auto made = c.exec(create_v1); !made) return rollback(made.error());
    found = 1;
  }
  // Upgrades from older versions, one step per version, in this transaction.
  if (found == 1) {
    if (auto up = c.exec(upgrade_v1_v2); !up) return rollback(up.error());
    found = 2;
  }
  if (found == 2) {
    if (auto up = c.exec(upgrade_v2_v3); !up) return rollback(up.error());
    found = 3;
  }
  if (found == 3) {
    if (auto up = c.exec(upgrade_v3_v4); !up) return rollback(up.error());
    found = 4;
  }
  if (auto done = c.exec("COMMIT"); !done) return done.error();
  return {};
}

}  // namespace

class pg_store::lease {
 public:
  lease(const pg_store* store, std::unique_ptr<pg::connection> c)
      : store_(store), c_(std::move(c)) {}
  lease(lease&&) = default;
  ~lease() {
    if (c_) store_->give_back(std::move(c_));
  }
  pg::connection* operator->() { return c_.get(); }

 private:
  const pg_store* store_;
  std::unique_ptr<pg::connection> c_;
};

namespace {
std::string random_origin() {
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> any;
  std::ostringstream hex;
  hex << std::hex << std::setw(16) << std::setfill('0') << any(rd);
  return hex.str();
}
}  // namespace

pg_store::pg_store(options opts) : opts_(std::move(opts)), origin_(random_origin()) {}

pg_store::~pg_store() = default;  // a view's transaction ends as its connection closes

// A view is a store of its own whose pool is one connection inside a REPEATABLE READ READ ONLY
// transaction, its snapshot taken by a first statement; a lost connection is not reset (a
// new one would read another moment) but fails every call.
caf::expected<std::shared_ptr<kv_store>> pg_store::read_view() const {
  if (view_)  // the same moment
    return std::const_pointer_cast<kv_store>(
        std::static_pointer_cast<const kv_store>(shared_from_this()));
  auto c = pg::connection::open(opts_.conninfo, prepared());
  if (!c) return c.error();
  auto began = (*c)->exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1");
  if (!began) return began.error();
  options o;
  o.conninfo = opts_.conninfo;
  o.pool = 1;
  o.pool_wait = opts_.pool_wait;
  std::shared_ptr<pg_store> view{new pg_store(std::move(o))};
  view->view_ = true;
  view->idle_.push_back(std::move(*c));
  view->open_ = 1;
  return std::shared_ptr<kv_store>{std::move(view)};
}

caf::expected<std::shared_ptr<pg_store>> pg_store::open(options opts) {
  if (opts.pool == 0) opts.pool = 1;
  {
    auto boot = pg::connection::open(opts.conninfo, {});
    if (!boot) return boot.error();
    if (auto err = prepare_schema(**boot)) return err;
  }
  std::shared_ptr<pg_store> store{new pg_store(std::move(opts))};
  // One connection now, so that a wrong URL or missing table shows at start.
  auto first = store->acquire();
  if (!first) return first.error();
  return store;
}

caf::expected<std::shared_ptr<pg_store>> pg_store::open(std::string conninfo, size_t pool) {
  options o;
  o.conninfo = std::move(conninfo);
  o.pool = pool;
  return open(std::move(o));
}

caf::expected<pg_store::lease> pg_store::acquire(bool wait) const {
  std::unique_ptr<pg::connection> c;
  {
    std::unique_lock lock{mutex_};
    auto free = [this] { return !idle_.empty() || open_ < opts_.pool; };
    bool got = free();
    if (!got && wait) {
      ++waiting_;
      pool_changed();
      got = freed_.wait_for(lock, opts_.pool_wait, free);
      --waiting_;
      if (!got) pool_changed();
    }
    if (!got)
      return make_error(errc::unavailable,
                        "PostgreSQL: all " + std::to_string(opts_.pool) +
                            " connections of storage.postgres_pool stayed busy for " +
                            std::to_string(opts_.pool_wait.count()) + " ms");
    if (!idle_.empty()) {
      c = std::move(idle_.back());
      idle_.pop_back();
    } else {
      ++open_;
    }
    ++lent_;
    pool_changed();
  }
  if (!c) {
    auto made = pg::connection::open(opts_.conninfo, prepared());
    if (!made) {
      note(made.error());
      std::lock_guard lock{mutex_};
      --open_;
      --lent_;
      pool_changed();
      freed_.notify_one();
      return made.error();
    }
    c = std::move(*made);
  } else if (c->broken() && view_) {
    give_back(std::move(c));
    return make_error(errc::unavailable,
                      "PostgreSQL: the read view's connection was lost (its snapshot with it)");
  } else if (c->broken()) {
    {
      std::lock_guard lock{mutex_};
      ++reconnects_;
    }
    if (opts_.on_reconnect) opts_.on_reconnect();
    if (auto err = c->reset()) {
      note(err);
      give_back(std::move(c));  // kept: it is reset again on its next use
      return err;
    }
  }
  return lease{this, std::move(c)};
}

void pg_store::give_back(std::unique_ptr<pg::connection> c) const {
  std::lock_guard lock{mutex_};
  --lent_;
  idle_.push_back(std::move(c));
  pool_changed();
  freed_.notify_one();
}

void pg_store::pool_changed() const {
  if (opts_.on_pool) opts_.on_pool(lent_, waiting_);
}

size_t pg_store::in_use() const {
  std::lock_guard lock{mutex_};
  return lent_;
}

size_t pg_store::waiting() const {
  std::lock_guard lock{mutex_};
  return waiting_;
}

uint64_t pg_store::reconnects() const {
  std::lock_guard lock{mutex_};
  return reconnects_;
}

caf::expected<std::optional<std::string>> pg_store::get(std::string_view key) const {
  auto c = acquire();
  if (!c) return c.error();
  auto rows = (*c)->run("get", {{key}});
  note(rows ? caf::error{} : rows.error());
  if (!rows) return rows.error();
  if (rows->empty() || !(*rows)[0][0]) return std::optional<std::string>{};
  return std::optional<std::string>{std::move(*(*rows)[0][0])};
}

caf::error pg_store::write(const std::vector<write_op>& ops) {
  if (view_) return make_error(errc::invalid_argument, "a read view takes no writes");
  if (ops.empty()) return {};
  auto c = acquire();
  if (!c) return c.error();
  std::vector<pg::pipelined> statements;
  statements.reserve(ops.size() * 2 + 2);
  for (auto& op : ops) {
    if (op.expect == write_op::absent && !op.erase) {
      statements.push_back({"ins", {{op.key}, {op.value}}});
      continue;
    }
    if (op.expect != write_op::any)
      statements.push_back(
          {"expect",
           {{op.key},
            pg::param::of_text(op.expect == write_op::has_prefix ? "true" : "false"),
            {op.prefix}}});
    if (op.erase)
      statements.push_back({"del", {{op.key}}});
    else
      statements.push_back({"put", {{op.key}, {op.value}}});
  }
  auto retention = std::to_string(std::max<uint64_t>(opts_.change_retention, 1));
  if (writes_.fetch_add(1) % trim_every == 0)
    statements.push_back({"trim", {pg::param::of_text(retention)}});
  auto n = std::to_string(ops.size());
  auto body = change_log::encode(ops);
  if (opts_.notify)
    statements.push_back(
        {"number_notify", {pg::param::of_text(n), {body}, pg::param::of_text(origin_)}});
  else
    statements.push_back({"number", {pg::param::of_text(n), {body}}});
  auto start = std::chrono::steady_clock::now();
  auto err = (*c)->run_pipeline(statements);
  note(err);
  if (opts_.on_write) opts_.on_write(std::chrono::steady_clock::now() - start, ops.size());
  return err;
}

caf::expected<kv_rows> pg_store::select(std::string_view lower, bool lower_inclusive,
                                        std::optional<std::string> upper, size_t limit,
                                        bool reverse) const {
  kv_rows out;
  if (limit == 0) return out;
  auto c = acquire();
  if (!c) return c.error();
  auto n = std::to_string(limit);
  std::vector<pg::param> params{{lower}};
  if (upper) params.push_back({*upper});
  params.push_back(pg::param::of_text(n));
  auto rows = (*c)->run(select_name(lower_inclusive, upper.has_value(), reverse), params);
  note(rows ? caf::error{} : rows.error());
  if (!rows) return rows.error();
  out.reserve(rows->size());
  for (auto& r : *rows) out.emplace_back(std::move(*r[0]), std::move(*r[1]));
  return out;
}

caf::expected<kv_rows> pg_store::scan(std::string_view prefix, std::string_view after,
                                      size_t limit) const {
  std::string start{prefix};
  start += after;
  return select(start, after.empty(), successor(prefix), limit, false);
}

caf::expected<kv_rows> pg_store::range(std::string_view from, std::string_view to, size_t limit,
                                       bool reverse) const {
  if (from >= to) return kv_rows{};
  return select(from, true, std::string{to}, limit, reverse);
}

caf::expected<change_page> pg_store::changes_after(uint64_t after, size_t limit) const {
  if (after > static_cast<uint64_t>(INT64_MAX))
    return make_error(errc::invalid_argument, "a change number is at most 2^63 - 1");
  auto requested = limit;
  if (limit == 0) limit = 1;  // the newest number still comes back; the changes are cut below
  auto c = acquire();
  if (!c) return c.error();
  auto from = std::to_string(after);
  auto n = std::to_string(limit);
  auto rows = (*c)->run("changes", {pg::param::of_text(from), pg::param::of_text(n)});
  note(rows ? caf::error{} : rows.error());
  if (!rows) return rows.error();
  uint64_t newest = 0;
  std::string sequence;
  std::vector<change_log::kept_write> writes;
  auto number = [](const std::string& s) {
    if (s.empty() || s[0] == '-') throw std::invalid_argument{"negative"};
    return std::stoull(s);
  };
  try {
    for (auto& r : *rows) {
      if (r[0]) newest = number(*r[0]);
      if (r[1]) sequence = *r[1];
      if (r[2] && r[3]) writes.push_back({number(*r[2]), std::move(*r[3])});
    }
  } catch (const std::exception&) {
    return make_error(errc::storage_failure, "tessera_seq or tessera_changes holds a foreign row");
  }
  if (rows->empty()) return make_error(errc::storage_failure, "tessera_seq has lost its row");
  if (requested == 0) return change_page{{}, newest, std::move(sequence)};
  return change_log::page_of(writes, after, requested, newest, std::move(sequence));
}

caf::error pg_store::flush() { return {}; }  // every acknowledged commit is durable already

void pg_store::note(const caf::error& err) const {
  if (!err)
    reachable_ = true;
  else if (code_of(err) == errc::unavailable)
    reachable_ = false;
}

bool pg_store::healthy() const {
  auto all_lent = [this] {
    std::lock_guard lock{mutex_};
    return idle_.empty() && open_ >= opts_.pool;
  };
  if (all_lent()) return reachable_;  // what the last call found
  auto c = acquire(/*wait=*/false);
  if (!c) return all_lent() ? reachable_.load() : false;
  auto pong = (*c)->run("ping", {});
  note(pong ? caf::error{} : pong.error());
  return static_cast<bool>(pong);
}

}  // namespace tessera::adapters
