#include "adapters/pg/member_table.hpp"

#include <charconv>
#include <iomanip>
#include <random>
#include <sstream>

#include "adapters/pg/connection.hpp"

namespace tessera::adapters::pg {
namespace {

// Columns of a member, numbers and times as text (rows come back in binary format).
constexpr const char* member_columns =
    "name, generation::text, state, address, http,"
    " floor(extract(epoch FROM heartbeat_at) * 1000)::bigint::text";

std::vector<std::pair<std::string, std::string>> statements() {
  std::string cols = member_columns;
  return {
      {"join",
       "WITH pruned AS (DELETE FROM tessera_members WHERE state = 'dead'"
       " AND heartbeat_at < now() - interval '1 day')"
       " INSERT INTO tessera_members (name, state, address, http)"
       " VALUES ($1, 'joining', $2, $3) RETURNING generation::text"},
      // One UPDATE: the joining member becomes alive, and the earlier runs of its name not yet
      // dead are declared dead (a node started again replaces its earlier run at once; one that
      // never becomes alive, refused by the cluster, replaces nothing).
      {"activate",
       "UPDATE tessera_members SET state = CASE WHEN generation = $1::bigint THEN 'alive'"
       " ELSE 'dead' END, heartbeat_at = CASE WHEN generation = $1::bigint THEN now()"
       " ELSE heartbeat_at END"
       " WHERE name = (SELECT name FROM tessera_members WHERE generation = $1::bigint"
       " AND state = 'joining') AND state <> 'dead' AND generation <= $1::bigint"
       " RETURNING generation::text, state"},
      {"heartbeat",
       "UPDATE tessera_members SET heartbeat_at = now()"
       " WHERE generation = $1::bigint AND state <> 'dead' RETURNING 1"},
      // READ COMMITTED re-checks the WHERE on a row another node changed meanwhile: a member
      // already declared dead is not matched again, so exactly one node gets it back.
      {"expire",
       "UPDATE tessera_members SET state = 'dead' WHERE state <> 'dead'"
       " AND generation <> $1::bigint"
       " AND heartbeat_at < now() - $2::bigint * interval '1 millisecond'"
       " RETURNING " +
           cols},
      {"list", "SELECT " + cols +
                   ", floor(extract(epoch FROM now()) * 1000)::bigint::text"
                   " FROM tessera_members ORDER BY name, generation"},
      {"leave", "UPDATE tessera_members SET state = 'dead' WHERE generation = $1::bigint"},
      // Leases: the keys ($1, one per line) pass to the alive member $2 (named $3) when another
      // generation holds them, or none; the epoch goes up by one at each change of holder. The
      // CTEs share one snapshot, so `held` is who held each key before.
      {"claim",
       "WITH k AS (SELECT DISTINCT unnest(string_to_array($1, E'\\n')) AS key),"
       " held AS (SELECT l.key, l.generation FROM tessera_leases l JOIN k USING (key)),"
       " up AS (INSERT INTO tessera_leases AS l (key, owner, generation, epoch)"
       " SELECT key, $3, $2::bigint, 1 FROM k WHERE EXISTS (SELECT 1 FROM tessera_members"
       " WHERE generation = $2::bigint AND state = 'alive')"
       " ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner,"
       " generation = EXCLUDED.generation, epoch = l.epoch + 1, claimed_at = now()"
       " WHERE l.generation <> EXCLUDED.generation RETURNING l.key, l.epoch)"
       " SELECT up.key, up.epoch::text, coalesce(held.generation, 0)::text"
       " FROM up LEFT JOIN held USING (key) ORDER BY up.key"},
      {"leases",
       "SELECT key, owner, generation::text, epoch::text FROM tessera_leases"
       " WHERE key >= $1 AND key < $1 || chr(1114111) ORDER BY key"},
      // The cluster's secret: the first node's random one, kept in tessera_kv.
      {"secret_put",
       "INSERT INTO tessera_kv (key, value) VALUES (convert_to($1, 'UTF8'),"
       " convert_to($2, 'UTF8')) ON CONFLICT (key) DO NOTHING"},
      {"secret_get",
       "SELECT convert_from(value, 'UTF8') FROM tessera_kv WHERE key = convert_to($1, 'UTF8')"},
  };
}

int64_t number(const std::optional<std::string>& text) {
  int64_t n = 0;
  if (text) std::from_chars(text->data(), text->data() + text->size(), n);
  return n;
}

member_row member_of(const row& r) {
  return {r[0].value_or(""), number(r[1]),      r[2].value_or(""),
          r[3].value_or(""), r[4].value_or(""), number(r[5])};
}

}  // namespace

member_table::member_table(std::unique_ptr<connection> c,
                           std::chrono::milliseconds statement_timeout)
    : c_(std::move(c)), statement_timeout_(statement_timeout) {}
member_table::~member_table() = default;

caf::expected<std::unique_ptr<member_table>> member_table::open(
    const std::string& conninfo, std::chrono::milliseconds statement_timeout) {
  auto c = connection::open(conninfo, statements());
  if (!c) return c.error();
  std::unique_ptr<member_table> t{new member_table(std::move(*c), statement_timeout)};
  if (auto err = t->limit_statements()) return err;
  return t;
}

caf::error member_table::limit_statements() {
  auto set = c_->exec("SET statement_timeout = " + std::to_string(statement_timeout_.count()));
  return set ? caf::error{} : set.error();
}

caf::expected<rows> member_table::run(std::string_view statement,
                                      const std::vector<std::string>& args) {
  if (c_->broken()) {
    if (auto err = c_->reset()) return err;
    if (auto err = limit_statements()) return err;
  }
  std::vector<param> params;
  for (auto& a : args) params.push_back(param::of_text(a));
  return c_->run(statement, params);
}

caf::expected<std::vector<lease_claim>> member_table::claim(const std::vector<std::string>& keys,
                                                            const std::string& name,
                                                            int64_t generation) {
  std::string lines;
  for (auto& k : keys) {
    if (k.find('\n') != std::string::npos)
      return make_error(errc::invalid_argument, "a lease key holds a line break");
    if (!lines.empty()) lines += '\n';
    lines += k;
  }
  if (lines.empty()) return std::vector<lease_claim>{};
  auto r = run("claim", {lines, std::to_string(generation), name});
  if (!r) return r.error();
  std::vector<lease_claim> out;
  for (auto& each : *r) out.push_back({each[0].value_or(""), number(each[1]), number(each[2])});
  return out;
}

caf::expected<std::vector<lease_row>> member_table::leases(const std::string& prefix) {
  auto r = run("leases", {prefix});
  if (!r) return r.error();
  std::vector<lease_row> out;
  for (auto& each : *r)
    out.push_back({each[0].value_or(""), each[1].value_or(""), number(each[2]), number(each[3])});
  return out;
}

caf::expected<std::string> member_table::secret() {
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> any;
  std::ostringstream hex;
  for (int i = 0; i < 4; ++i) hex << std::hex << std::setw(16) << std::setfill('0') << any(rd);
  if (auto put = run("secret_put", {std::string{secret_key}, hex.str()}); !put) return put.error();
  auto r = run("secret_get", {std::string{secret_key}});
  if (!r) return r.error();
  if (r->empty() || !(*r)[0][0] || (*r)[0][0]->size() < 32)
    return make_error(errc::storage_failure, "the cluster's secret is missing or too short");
  return *(*r)[0][0];
}

caf::expected<int64_t> member_table::join(const std::string& name, const std::string& address,
                                          const std::string& http) {
  auto r = run("join", {name, address, http});
  if (!r) return r.error();
  if (r->empty()) return make_error(errc::storage_failure, "joining the cluster returned no row");
  return number((*r)[0][0]);
}

caf::expected<std::vector<int64_t>> member_table::activate(int64_t generation) {
  auto r = run("activate", {std::to_string(generation)});
  if (!r) return r.error();
  std::vector<int64_t> replaced;
  bool alive = false;
  for (auto& each : *r) {
    if (number(each[0]) == generation)
      alive = true;
    else
      replaced.push_back(number(each[0]));
  }
  if (!alive) return make_error(errc::conflict, "the member is no longer joining");
  return replaced;
}

caf::expected<bool> member_table::heartbeat(int64_t generation) {
  auto r = run("heartbeat", {std::to_string(generation)});
  if (!r) return r.error();
  return !r->empty();
}

caf::expected<std::vector<member_row>> member_table::expire(int64_t self,
                                                            std::chrono::milliseconds lease) {
  auto r = run("expire", {std::to_string(self), std::to_string(lease.count())});
  if (!r) return r.error();
  std::vector<member_row> out;
  for (auto& each : *r) out.push_back(member_of(each));
  return out;
}

caf::expected<member_list> member_table::list() {
  auto r = run("list", {});
  if (!r) return r.error();
  member_list out;
  for (auto& each : *r) {
    out.members.push_back(member_of(each));
    out.now_ms = number(each[6]);
  }
  return out;
}

caf::error member_table::leave(int64_t generation) {
  auto r = run("leave", {std::to_string(generation)});
  return r ? caf::error{} : r.error();
}

}  // namespace tessera::adapters::pg
