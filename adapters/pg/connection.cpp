#include "adapters/pg/connection.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <cctype>
#include <cerrno>

#include "adapters/error.hpp"

namespace tessera::adapters::pg {
namespace {

struct result_deleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

std::string trimmed(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

// The rows of a tuples result (binary format: bytea as its bytes).
rows rows_of(PGresult* r) {
  rows out;
  int n = PQntuples(r), cols = PQnfields(r);
  out.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    row values;
    values.reserve(static_cast<size_t>(cols));
    for (int c = 0; c < cols; ++c) {
      if (PQgetisnull(r, i, c))
        values.emplace_back(std::nullopt);
      else
        values.emplace_back(
            std::string{PQgetvalue(r, i, c), static_cast<size_t>(PQgetlength(r, i, c))});
    }
    out.push_back(std::move(values));
  }
  return out;
}

// libpq's parallel arrays of one statement's parameters: bytes in binary format, numbers as
// text (which needs its terminating NUL).
struct param_arrays {
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
  std::vector<std::string> texts;
  explicit param_arrays(const std::vector<param>& params) {
    texts.reserve(params.size());
    for (auto& p : params) {
      if (p.text) {
        texts.emplace_back(p.bytes);
        values.push_back(texts.back().c_str());
      } else {
        values.push_back(p.bytes.data());
      }
      lengths.push_back(p.text ? 0 : static_cast<int>(p.bytes.size()));
      formats.push_back(p.text ? 0 : 1);
    }
  }
  int size() const { return static_cast<int>(values.size()); }
};

bool ok(PGresult* r) {
  auto s = PQresultStatus(r);
  return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

// The values of the options libpq marks as secret (display "*": password, sslpassword) in
// `conninfo`; nullopt when libpq cannot parse it.
std::optional<std::vector<std::string>> secrets_of(std::string_view conninfo) {
  char* err = nullptr;
  PQconninfoOption* options = PQconninfoParse(std::string{conninfo}.c_str(), &err);
  if (err) PQfreemem(err);
  if (!options) return std::nullopt;
  std::vector<std::string> out;
  for (auto* o = options; o->keyword; ++o)
    if (o->val && *o->val && o->dispchar && std::string_view{o->dispchar} == "*")
      out.emplace_back(o->val);
  PQconninfoFree(options);
  return out;
}

// `text` with every occurrence of a secret replaced.
std::string scrub(std::string text, const std::vector<std::string>& secrets) {
  for (auto& secret : secrets)
    for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3))
      text.replace(at, secret.size(), "***");
  return text;
}

constexpr const char* unparseable = "(a connection string libpq cannot read)";

std::string mask_password_by_shape(std::string_view conninfo);

}  // namespace

std::string mask_password(std::string_view conninfo) {
  auto secrets = secrets_of(conninfo);
  if (!secrets) return unparseable;  // its text may hold a password anywhere
  return scrub(mask_password_by_shape(conninfo), *secrets);
}

namespace {

// The password in the places a connection string has one: a URL's userinfo and query
// string, a key=value string's password words (the options libpq parses get scrubbed too).
std::string mask_password_by_shape(std::string_view conninfo) {
  std::string s{conninfo};
  if (starts_with_ci(s, "postgres://") || starts_with_ci(s, "postgresql://")) {
    auto scheme_end = s.find("://") + 3;
    auto authority_end = s.find_first_of("/?", scheme_end);
    if (authority_end == std::string::npos) authority_end = s.size();
    auto at = s.rfind('@', authority_end - 1);
    if (at != std::string::npos && at >= scheme_end) {
      auto colon = s.find(':', scheme_end);
      if (colon != std::string::npos && colon < at) s.replace(colon + 1, at - colon - 1, "***");
    }
    // password=... in the query string
    for (size_t q = s.find('?'); q != std::string::npos && q < s.size();) {
      auto key = q + 1;
      auto amp = s.find('&', key);
      auto end = amp == std::string::npos ? s.size() : amp;
      if (s.compare(key, 9, "password=") == 0) {
        s.replace(key + 9, end - key - 9, "***");
        end = key + 12;
      }
      q = end < s.size() ? end : std::string::npos;
    }
    return s;
  }
  // key = value words: the value of every password key, quoted or not.
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    auto at = s.find("password", i);
    if (at == std::string::npos) break;
    bool word_start = at == 0 || std::isspace(static_cast<unsigned char>(s[at - 1]));
    size_t j = at + 8;
    while (j < s.size() && s[j] == ' ') ++j;
    if (!word_start || j >= s.size() || s[j] != '=') {
      out.append(s, i, j - i);
      i = j;
      continue;
    }
    ++j;
    while (j < s.size() && s[j] == ' ') ++j;
    size_t end = j;
    if (end < s.size() && s[end] == '\'') {
      ++end;
      while (end < s.size() && s[end] != '\'') end += s[end] == '\\' ? 2 : 1;
      end = std::min(end + 1, s.size());
    } else {
      while (end < s.size() && !std::isspace(static_cast<unsigned char>(s[end]))) ++end;
    }
    out.append(s, i, j - i);
    out += "***";
    i = end;
  }
  out.append(s, std::min(i, s.size()), std::string::npos);
  return out;
}

}  // namespace

connection::connection(PGconn* c, std::vector<std::pair<std::string, std::string>> statements)
    : conn_(c), statements_(std::move(statements)) {}

connection::~connection() { PQfinish(conn_); }

caf::expected<std::unique_ptr<connection>> connection::open(
    const std::string& conninfo, std::vector<std::pair<std::string, std::string>> statements) {
  auto secrets = secrets_of(conninfo);
  if (!secrets)
    return make_error(errc::invalid_argument,
                      "cannot connect to PostgreSQL: the connection string is neither key=value "
                      "words nor a postgresql:// URL that libpq can read");
  // Bounds on a server that does not answer, unless the connection string sets its own (it
  // comes last: its values win). Without them a half-open TCP connection would hold the
  // committer's thread for as long as the kernel keeps the socket.
  const char* keys[] = {"connect_timeout",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "tcp_user_timeout",
                        "dbname",
                        nullptr};
  const char* values[] = {"10", "30", "10", "3", "30000", conninfo.c_str(), nullptr};
  PGconn* c = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (!c) return make_error(errc::storage_failure, "PostgreSQL: out of memory");
  std::unique_ptr<connection> conn{new connection(c, std::move(statements))};
  conn->secrets_ = std::move(*secrets);
  if (PQstatus(c) != CONNECTION_OK)
    return conn->failure("cannot connect to PostgreSQL at " + mask_password(conninfo));
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);  // NOTICEs are not for the log
  if (auto err = conn->prepare_all()) return err;
  return conn;
}

caf::error connection::failure(std::string_view what, errc code) const {
  return make_error(code,
                    std::string{what} + ": " + scrub(trimmed(PQerrorMessage(conn_)), secrets_));
}

caf::error connection::prepare_all() {
  for (auto& [name, sql] : statements_) {
    result_ptr r{PQprepare(conn_, name.c_str(), sql.c_str(), 0, nullptr)};
    if (broken()) return failure("lost the connection to PostgreSQL");
    if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK)
      return make_error(errc::storage_failure, "PostgreSQL: cannot prepare " + name + ": " +
                                                   trimmed(PQerrorMessage(conn_)));
  }
  return {};
}

bool connection::broken() const { return poisoned_ || PQstatus(conn_) != CONNECTION_OK; }

caf::error connection::reset() {
  poisoned_ = false;
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) return failure("cannot reconnect to PostgreSQL");
  return prepare_all();
}

caf::expected<std::vector<std::string>> connection::notifications(
    std::chrono::milliseconds timeout) {
  std::vector<std::string> out;
  auto drain = [&] {
    while (PGnotify* n = PQnotifies(conn_)) {
      out.emplace_back(n->extra ? n->extra : "");
      PQfreemem(n);
    }
  };
  if (broken() || PQconsumeInput(conn_) != 1) return failure("lost the connection to PostgreSQL");
  drain();
  if (!out.empty()) return out;
  pollfd p{PQsocket(conn_), POLLIN, 0};
  int ready = poll(&p, 1, static_cast<int>(timeout.count()));
  if (ready < 0 && errno != EINTR) return failure("cannot wait for notifications");
  if (ready > 0) {
    if (PQconsumeInput(conn_) != 1) return failure("lost the connection to PostgreSQL");
    drain();
  }
  return out;
}

caf::expected<rows> connection::exec(const std::string& sql) {
  if (broken()) return failure("lost the connection to PostgreSQL");
  result_ptr r{PQexec(conn_, sql.c_str())};
  if (!r || !ok(r.get())) {
    if (broken()) return failure("lost the connection to PostgreSQL");
    return make_error(errc::storage_failure, "PostgreSQL: " + trimmed(PQerrorMessage(conn_)));
  }
  return rows_of(r.get());
}

caf::expected<rows> connection::run(std::string_view statement, const std::vector<param>& params) {
  if (broken()) return failure("lost the connection to PostgreSQL");
  param_arrays a{params};
  std::string name{statement};
  result_ptr r{PQexecPrepared(conn_, name.c_str(), a.size(), a.values.data(), a.lengths.data(),
                              a.formats.data(), 1)};
  if (!r || !ok(r.get())) {
    if (broken()) return failure("lost the connection to PostgreSQL");
    return make_error(errc::storage_failure, "PostgreSQL: " + trimmed(PQerrorMessage(conn_)));
  }
  return rows_of(r.get());
}

caf::error connection::run_pipeline(const std::vector<pipelined>& statements) {
  if (broken()) return failure("lost the connection to PostgreSQL");
  if (PQsetnonblocking(conn_, 1) != 0 || PQenterPipelineMode(conn_) != 1) {
    PQsetnonblocking(conn_, 0);
    poisoned_ = true;
    return failure("cannot enter pipeline mode");
  }
  auto leave = [this] {
    if (PQexitPipelineMode(conn_) != 1) poisoned_ = true;
    PQsetnonblocking(conn_, 0);
  };
  // Sends what is buffered; reads what arrives meanwhile, so that neither side waits on a
  // full socket (the server would stop reading while its answers are not read).
  auto flush = [this]() -> bool {
    for (;;) {
      int r = PQflush(conn_);
      if (r == 0) return true;
      if (r < 0) return false;
      pollfd p{PQsocket(conn_), POLLIN | POLLOUT, 0};
      if (::poll(&p, 1, -1) < 0 && errno != EINTR) return false;
      if ((p.revents & POLLIN) && PQconsumeInput(conn_) != 1) return false;
    }
  };
  for (auto& st : statements) {
    param_arrays a{st.params};
    std::string name{st.statement};
    if (PQsendQueryPrepared(conn_, name.c_str(), a.size(), a.values.data(), a.lengths.data(),
                            a.formats.data(), 1) != 1) {
      auto err = failure("cannot send to PostgreSQL");
      leave();
      return err;
    }
  }
  // From here on the commit may have happened: a lost connection leaves its outcome unknown.
  auto unknown = [this] {
    return failure("lost the connection to PostgreSQL during a commit, whose outcome is unknown",
                   errc::storage_failure);
  };
  if (PQpipelineSync(conn_) != 1 || !flush()) {
    auto err = unknown();
    leave();
    return err;
  }
  PQsetnonblocking(conn_, 0);  // everything is sent: wait for the answers
  // A statement that failed means nothing of the pipeline committed (PostgreSQL rolls the
  // implicit transaction back at the sync, or when the connection ends before it).
  std::optional<std::string> refused;
  bool by_server = false;  // the first failure is the server's (it carries a SQLSTATE)
  bool conflict = false;   // a conditional write's check failed (kv_store.hpp)
  bool lost = false;
  for (size_t i = 0; i < statements.size() && !lost; ++i) {
    result_ptr r{PQgetResult(conn_)};
    if (!r) {
      lost = true;
      break;
    }
    auto status = PQresultStatus(r.get());
    if (!refused && status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      refused = status == PGRES_PIPELINE_ABORTED ? std::string{"the pipeline was aborted"}
                                                 : trimmed(PQresultErrorMessage(r.get()));
      auto* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
      by_server = state != nullptr;
      // TS409: tessera_expect's; 23505: a key that had to be absent was there.
      conflict =
          state && (std::string_view{state} == "TS409" || std::string_view{state} == "23505");
    }
    result_ptr end{PQgetResult(conn_)};  // each statement's results end with a null
  }
  bool synced = false;
  if (!lost && !broken()) {
    result_ptr sync{PQgetResult(conn_)};
    synced = sync && PQresultStatus(sync.get()) == PGRES_PIPELINE_SYNC;
  }
  if (PQexitPipelineMode(conn_) != 1) poisoned_ = true;  // out of step: reset before reuse
  // The server answers a statement only after running it and commits at the sync, so a
  // statement it refused (or interrupted: its error in place of the statement's answer) means
  // nothing committed. An error libpq made up (the connection lost while reading) does not.
  if (refused && by_server) {
    if (broken())
      return failure("lost the connection to PostgreSQL; nothing of the commit was written");
    if (conflict)
      return make_error(errc::conflict, "a key changed since it was read; nothing was written");
    return make_error(errc::storage_failure, "PostgreSQL refused a write: " + *refused);
  }
  if (refused || !synced) return unknown();
  return {};
}

}  // namespace tessera::adapters::pg
