#include "web/migrate.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "actors/panel/panel_codec.hpp"
#include "actors/panel/panel_directory.hpp"
#include "actors/storage/storage_codec.hpp"
#include "actors/task/task_codec.hpp"
#include "adapters/error.hpp"
#include "adapters/kv/pg_store.hpp"
#include "adapters/kv/rocks_store.hpp"
#include "adapters/pg/connection.hpp"
#include "config/settings.hpp"
#include "runtime/clock.hpp"

namespace tessera::web {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using adapters::kv_rows;
using adapters::write_op;

constexpr size_t page_size = 5000;

storage::call_limits limits() { return storage::call_limits::from_settings(config::defaults()); }

// --- kinds and checksums ---------------------------------------------------------------------

// The kind a key belongs to (the layout in docs/architecture.md).
std::string kind_of(std::string_view key) {
  auto family = key.substr(0, key.find('/'));
  if (family == "storage") return "storages";
  if (family == "tombstone") return "tombstones";
  if (family == "panel") return "panels";
  if (family == "task") return "tasks";
  if (family == "taskstate") return "task_states";
  if (family == "run") return "runs";
  if (family == "running") return "runs_in_progress";
  if (family == "tlog") return "logs";
  if (family == "log") return "logs_by_time";
  if (family == "meta") return "meta";
  return "other";
}

// The kinds the origin app's files hold (the others have no place there).
bool kept_in_files(const std::string& kind) {
  return kind == "storages" || kind == "panels" || kind == "tasks";
}

// What of an item its checksum covers: the content, without times (which files may lack) and,
// for panels and tasks, without their definition version (files of the origin have none).
std::string normalized(std::string_view key, std::string_view value) {
  auto kind = kind_of(key);
  if (kind == "storages") {
    auto id = key.substr(storage::key_prefix.size());
    if (auto r = storage::decode(id, value)) {
      auto data = json::parse(r->data, nullptr, false);
      return std::string{id} + '\0' + std::to_string(r->version) + '\0' + data.dump();
    }
  } else if (kind == "panels") {
    if (auto r = panel::decode(value, limits())) {
      r->created_at = r->updated_at = 0;
      r->version = 0;
      return panel::encode(*r);
    }
  } else if (kind == "tasks") {
    if (auto r = task::decode(value)) {
      r->created_at = r->updated_at = 0;
      r->version = 0;
      return task::encode(*r);
    }
  }
  return std::string{key} + '\0' + std::string{value};
}

class checksums {
 public:
  ~checksums() {
    for (auto& [_, c] : contexts_) EVP_MD_CTX_free(c);
  }
  void add(std::string_view key, std::string_view value) {
    auto kind = kind_of(key);
    auto& ctx = contexts_[kind];
    if (!ctx) {
      ctx = EVP_MD_CTX_new();
      EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    }
    auto item = normalized(key, value);
    uint64_t size = item.size();
    EVP_DigestUpdate(ctx, &size, sizeof size);
    EVP_DigestUpdate(ctx, item.data(), item.size());
    ++counts_[kind];
  }
  std::map<std::string, kind_summary> summary() {
    std::map<std::string, kind_summary> out;
    for (auto& [kind, ctx] : contexts_) {
      unsigned char md[EVP_MAX_MD_SIZE];
      unsigned len = 0;
      EVP_DigestFinal_ex(ctx, md, &len);
      std::ostringstream hex;
      for (unsigned i = 0; i < len; ++i)
        hex << "0123456789abcdef"[md[i] >> 4] << "0123456789abcdef"[md[i] & 15];
      out[kind] = {counts_[kind], hex.str()};
    }
    return out;
  }

 private:
  std::map<std::string, EVP_MD_CTX*> contexts_;
  std::map<std::string, uint64_t> counts_;
};

// --- files: the origin app's layout ---------------------------------------------------------

std::optional<std::string> read_text(const fs::path& p) {
  std::ifstream in{p, std::ios::binary};
  if (!in) return std::nullopt;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool write_text(const fs::path& p, const std::string& text) {
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  std::ofstream out{p, std::ios::binary | std::ios::trunc};
  out << text;
  return static_cast<bool>(out);
}

std::string file_problem(const fs::path& p, const std::string& why) {
  return p.string() + ": " + why;
}

// A storage file: tessera's export {"id", "data", "version", ...}, or the storage's data itself.
void read_storage_file(const fs::path& p, int64_t now, std::map<std::string, std::string>& rows,
                       std::vector<std::string>& problems) {
  auto id = p.stem().string();
  auto text = read_text(p);
  if (!text) return problems.push_back(file_problem(p, "cannot be read"));
  auto j = json::parse(*text, nullptr, false);
  if (j.is_discarded()) return problems.push_back(file_problem(p, "is not valid JSON"));
  if (!j.is_object()) return problems.push_back(file_problem(p, "is not a JSON object"));
  storage::storage_record r{id, {}, 1, now, now, 0};
  auto data = j.find("data");
  if (data != j.end() && data->is_object() && (j.contains("id") || j.contains("version"))) {
    if (auto v = j.find("version"); v != j.end() && v->is_number_integer() && *v > 0)
      r.version = v->get<int64_t>();
    for (auto* field : {"created_at", "updated_at"})
      if (auto t = j.find(field); t != j.end() && t->is_number_integer())
        (field[0] == 'c' ? r.created_at : r.updated_at) = t->get<int64_t>();
    r.data = data->dump();
  } else {
    r.data = j.dump();
  }
  rows[storage::storage_key(id)] = storage::encode(r);
}

// A panel directory: tessera's export (the stored record without template and handler) or the
// origin app's metadata (a bundle, with "storages" defaults allowed).
void read_panel_dir(const fs::path& dir, int64_t now, std::map<std::string, std::string>& rows,
                    std::vector<std::string>& problems) {
  auto id = dir.filename().string();
  auto meta_text = read_text(dir / "metadata.json");
  if (!meta_text) return problems.push_back(file_problem(dir / "metadata.json", "cannot be read"));
  auto meta = json::parse(*meta_text, nullptr, false);
  if (!meta.is_object())
    return problems.push_back(file_problem(dir / "metadata.json", "is not a JSON object"));
  if (!meta.contains("id")) meta["id"] = id;
  std::error_code ec;
  for (auto* name : {"template.html", "handler.py"})
    if (fs::exists(dir / name, ec) && !read_text(dir / name))
      return problems.push_back(file_problem(dir / name, "cannot be read"));
  auto template_text = read_text(dir / "template.html");
  auto handler_text = read_text(dir / "handler.py");
  auto stored = meta;
  stored["template"] = template_text.value_or("");
  stored["handler"] = handler_text.value_or("");
  auto keep = [&](const panel::panel_record& r) {
    auto [_, fresh] = rows.emplace(panel::panel_key(r.id), panel::encode(r));
    if (!fresh)
      problems.push_back(file_problem(dir, "panel '" + r.id + "' is defined twice; not copied"));
  };
  if (auto r = panel::decode(stored.dump(), limits()); r && meta.contains("timeout_ms"))
    return keep(*r);
  json bundle = {{"metadata", meta}};
  if (template_text) bundle["template"] = *template_text;
  if (handler_text) bundle["handler"] = *handler_text;
  auto b = panel::parse_bundle(bundle.dump());
  if (!b) return problems.push_back(file_problem(dir, detail_of(b.error())));
  auto r = panel::parse_new_panel(b->panel, limits());
  if (!r) return problems.push_back(file_problem(dir, detail_of(r.error())));
  r->version = 1;
  r->created_at = r->updated_at = now;
  keep(*r);
  for (auto& [sid, data] : b->storages) {  // storages the panel brings, unless one exists
    auto key = storage::storage_key(sid);
    if (!rows.count(key)) rows[key] = storage::encode({sid, data, 1, now, now, 0});
  }
}

// A task: tessera's export (the stored definition without its handler), or the origin app's
// task object (the REST API's create body).
void read_task(json meta, std::optional<std::string> handler, const std::string& where, int64_t now,
               std::map<std::string, std::string>& rows, std::vector<std::string>& problems) {
  if (handler) meta["handler"] = *handler;
  auto keep = [&](const task::task_record& r) {
    auto [_, fresh] = rows.emplace(task::task_key(r.id), task::encode(r));
    if (!fresh) problems.push_back(where + ": task '" + r.id + "' is defined twice; not copied");
  };
  if (meta.contains("timeout_ms"))
    if (auto r = task::decode(meta.dump())) return keep(*r);
  for (auto* field : {"version", "created_at", "updated_at", "next_run", "last_run", "last_status",
                      "status", "running"})
    meta.erase(field);
  auto r = task::parse_new_task(meta, limits());
  if (!r) return problems.push_back(where + ": " + detail_of(r.error()));
  r->version = 1;
  r->created_at = r->updated_at = now;
  keep(*r);
}

caf::expected<kv_rows> read_files(const fs::path& root, std::vector<std::string>& problems) {
  std::error_code ec;
  if (!fs::is_directory(root, ec))
    return make_error(errc::invalid_argument, root.string() + " is not a directory");
  auto now = runtime::now_ms();
  std::map<std::string, std::string> rows;
  auto each = [&](const fs::path& dir, auto&& f) {
    if (!fs::is_directory(dir, ec)) return;
    std::vector<fs::path> entries;
    for (auto& e : fs::directory_iterator(dir, ec)) entries.push_back(e.path());
    if (ec) problems.push_back(file_problem(dir, "cannot be listed: " + ec.message()));
    std::sort(entries.begin(), entries.end());
    for (auto& p : entries) f(p);
  };
  each(root / "storages", [&](const fs::path& p) {
    if (p.extension() == ".json") read_storage_file(p, now, rows, problems);
  });
  each(root / "panels", [&](const fs::path& p) {
    if (fs::is_directory(p, ec)) read_panel_dir(p, now, rows, problems);
  });
  if (auto text = read_text(root / "tasks.json")) {
    auto j = json::parse(*text, nullptr, false);
    auto where = (root / "tasks.json").string();
    if (j.is_array()) {
      for (auto& t : j)
        if (t.is_object())
          read_task(t, std::nullopt, where, now, rows, problems);
        else
          problems.push_back(where + ": an entry is not a JSON object");
    } else if (j.is_object()) {
      for (auto& [id, t] : j.items()) {
        if (!t.is_object()) {
          problems.push_back(where + ": task '" + id + "' is not a JSON object");
          continue;
        }
        auto body = t;
        if (!body.contains("id")) body["id"] = id;
        read_task(body, std::nullopt, where, now, rows, problems);
      }
    } else {
      problems.push_back(file_problem(root / "tasks.json", "is not a JSON list or object"));
    }
  }
  each(root / "tasks", [&](const fs::path& dir) {
    if (!fs::is_directory(dir, ec)) return;
    auto text = read_text(dir / "metadata.json");
    if (!text) return problems.push_back(file_problem(dir / "metadata.json", "cannot be read"));
    auto meta = json::parse(*text, nullptr, false);
    if (!meta.is_object())
      return problems.push_back(file_problem(dir / "metadata.json", "is not a JSON object"));
    if (!meta.contains("id")) meta["id"] = dir.filename().string();
    auto handler = read_text(dir / "handler.py");
    if (!handler && fs::exists(dir / "handler.py", ec))
      return problems.push_back(file_problem(dir / "handler.py", "cannot be read"));
    read_task(meta, handler, dir.string(), now, rows, problems);
  });
  if (!rows.empty()) rows["meta/started"] = std::to_string(now);  // no demos over migrated data
  return kv_rows{rows.begin(), rows.end()};
}

// Writes one item in the origin layout; false: not kept there (runs, logs, ...).
caf::error write_file(const fs::path& root, const std::string& key, const std::string& value,
                      std::vector<std::string>& problems) {
  auto kind = kind_of(key);
  auto fail = [&](const fs::path& p) {
    return make_error(errc::storage_failure, "cannot write " + p.string());
  };
  if (kind == "storages") {
    auto id = key.substr(storage::key_prefix.size());
    auto r = storage::decode(id, value);
    if (!r) return problems.push_back(key + ": unreadable record, not written"), caf::error{};
    json j = {{"id", r->id},
              {"data", json::parse(r->data, nullptr, false)},
              {"version", r->version},
              {"created_at", r->created_at},
              {"updated_at", r->updated_at}};
    auto p = root / "storages" / (id + ".json");
    if (!write_text(p, j.dump(2) + "\n")) return fail(p);
  } else if (kind == "panels") {
    auto r = panel::decode(value, limits());
    if (!r) return problems.push_back(key + ": unreadable record, not written"), caf::error{};
    auto j = json::parse(panel::encode(*r));
    j.erase("template");
    j.erase("handler");
    auto dir = root / "panels" / r->id;
    if (!write_text(dir / "metadata.json", j.dump(2) + "\n") ||
        !write_text(dir / "template.html", r->template_) ||
        !write_text(dir / "handler.py", r->handler))
      return fail(dir);
  } else if (kind == "tasks") {
    auto r = task::decode(value);
    if (!r) return problems.push_back(key + ": unreadable record, not written"), caf::error{};
    auto j = json::parse(task::encode(*r));
    j.erase("handler");
    auto dir = root / "tasks" / r->id;
    if (!write_text(dir / "metadata.json", j.dump(2) + "\n") ||
        !write_text(dir / "handler.py", r->handler))
      return fail(dir);
  }
  return {};
}

// --- stores ----------------------------------------------------------------------------------

caf::expected<std::shared_ptr<adapters::kv_store>> open_store(const endpoint& e) {
  if (e.what == endpoint::kind::rocksdb) {
    auto s = adapters::rocks_store::open({e.where, /*sync=*/true, nullptr});
    if (!s)
      return make_error(errc::storage_failure,
                        "cannot open RocksDB in " + e.where + ": " + detail_of(s.error()));
    return std::shared_ptr<adapters::kv_store>{*s};
  }
  auto s = adapters::pg_store::open({e.where, 2});
  if (!s) return s.error();
  return std::shared_ptr<adapters::kv_store>{*s};
}

// Every (key, value) of a store, a page at a time, in key order.
caf::error each_page(const adapters::kv_store& s, const std::function<caf::error(kv_rows&)>& f) {
  std::string after;
  for (;;) {
    auto page = s.scan("", after, page_size);
    if (!page) return page.error();
    if (page->empty()) return {};
    after = page->back().first;
    if (auto err = f(*page)) return err;
    if (page->size() < page_size) return {};
  }
}

bool files_empty(const fs::path& root) {
  std::error_code ec;
  for (auto* sub : {"storages", "panels", "tasks"})
    if (fs::is_directory(root / sub, ec) && !fs::is_empty(root / sub, ec)) return false;
  return !fs::exists(root / "tasks.json", ec);
}

}  // namespace

caf::expected<endpoint> parse_endpoint(const std::string& text) {
  auto bad = [&] {
    return make_error(errc::invalid_argument,
                      "'" + adapters::pg::mask_password(text) +
                          "' is not a store: use rocksdb:DIR, files:DIR, postgres://... or "
                          "postgres:KEY=VALUE...");
  };
  auto rest = [&](std::string_view prefix) { return text.substr(prefix.size()); };
  if (text.rfind("rocksdb:", 0) == 0 && text.size() > 8)
    return endpoint{endpoint::kind::rocksdb, rest("rocksdb:"), text};
  if (text.rfind("files:", 0) == 0 && text.size() > 6)
    return endpoint{endpoint::kind::files, rest("files:"), text};
  if (text.rfind("postgres://", 0) == 0 || text.rfind("postgresql://", 0) == 0)
    return endpoint{endpoint::kind::postgres, text, adapters::pg::mask_password(text)};
  if (text.rfind("postgres:", 0) == 0 && text.size() > 9)
    return endpoint{endpoint::kind::postgres, rest("postgres:"),
                    "postgres:" + adapters::pg::mask_password(rest("postgres:"))};
  return bad();
}

caf::expected<migrate_result> migrate(const endpoint& from, const endpoint& to, bool force) {
  migrate_result result;
  checksums source_sums;
  // The target first: refuse a non-empty one before reading anything.
  std::shared_ptr<adapters::kv_store> target;
  if (to.what == endpoint::kind::files) {
    if (!force && !files_empty(to.where))
      return make_error(errc::conflict, to.shown + " is not empty (--force writes over it)");
  } else {
    auto t = open_store(to);
    if (!t) return t.error();
    target = *t;
    auto any = target->scan("", "", 1);
    if (!any) return any.error();
    if (!any->empty() && !force)
      return make_error(errc::conflict, to.shown + " is not empty (--force writes over it)");
  }
  auto write = [&](kv_rows& rows) -> caf::error {
    for (auto& [k, v] : rows) source_sums.add(k, v);
    if (target) {
      std::vector<write_op> ops;
      ops.reserve(rows.size());
      for (auto& [k, v] : rows) ops.push_back({k, v, false});
      if (auto err = target->write(ops)) return err;
    } else {
      for (auto& [k, v] : rows)
        if (auto err = write_file(to.where, k, v, result.problems)) return err;
    }
    result.copied += rows.size();
    return {};
  };
  if (from.what == endpoint::kind::files) {
    auto rows = read_files(from.where, result.problems);
    if (!rows) return rows.error();
    for (size_t i = 0; i < rows->size(); i += page_size) {
      kv_rows page(
          rows->begin() + static_cast<std::ptrdiff_t>(i),
          rows->begin() + static_cast<std::ptrdiff_t>(std::min(rows->size(), i + page_size)));
      if (auto err = write(page)) return err;
    }
  } else {
    auto source = open_store(from);
    if (!source) return source.error();
    if (auto err = each_page(**source, write)) return err;
  }
  result.source = source_sums.summary();
  // Read the target back.
  checksums target_sums;
  if (target) {
    if (auto err = each_page(*target, [&](kv_rows& rows) -> caf::error {
          for (auto& [k, v] : rows) target_sums.add(k, v);
          return {};
        }))
      return err;
  } else {
    std::vector<std::string> ignored;
    auto back = read_files(to.where, ignored);
    if (!back) return back.error();
    for (auto& [k, v] : *back)
      if (kept_in_files(kind_of(k))) target_sums.add(k, v);
  }
  result.target = target_sums.summary();
  return result;
}

int run_migrate_command(const std::string& from_text, const std::string& to_text, bool force) {
  auto from = parse_endpoint(from_text);
  auto to = from ? parse_endpoint(to_text) : from;
  if (!from || !to) {
    std::cerr << "tessera: " << detail_of(from ? to.error() : from.error()) << "\n";
    return 2;
  }
  auto r = migrate(*from, *to, force);
  if (!r) {
    std::cerr << "tessera: migrate " << from->shown << " -> " << to->shown
              << " failed: " << detail_of(r.error()) << "\n";
    return 1;
  }
  std::set<std::string> kinds;
  for (auto& [k, _] : r->source) kinds.insert(k);
  for (auto& [k, _] : r->target) kinds.insert(k);
  bool to_files = to->what == endpoint::kind::files;
  bool differ = false;
  std::cout << "migrated " << from->shown << " -> " << to->shown << ": " << r->copied << " keys\n";
  std::cout << "kind                 source count  target count  checksums\n";
  for (auto& k : kinds) {
    auto s = r->source.count(k) ? r->source.at(k) : kind_summary{};
    auto t = r->target.count(k) ? r->target.at(k) : kind_summary{};
    std::string verdict;
    if (to_files && !kept_in_files(k))
      verdict = "not kept (the files layout has no place for them)";
    else if (s.count == t.count && s.checksum == t.checksum)
      verdict = "equal " + s.checksum.substr(0, 16);
    else {
      verdict = "DIFFER source " + s.checksum.substr(0, 16) + " target " + t.checksum.substr(0, 16);
      differ = true;
    }
    std::printf("%-20s %13llu %13llu  %s\n", k.c_str(), static_cast<unsigned long long>(s.count),
                static_cast<unsigned long long>(t.count), verdict.c_str());
  }
  for (auto& p : r->problems) std::cerr << "tessera: not copied: " << p << "\n";
  if (differ) {
    std::cerr << "tessera: the target does not hold what was copied (see DIFFER above)\n";
    return 1;
  }
  if (!r->problems.empty()) {
    std::cerr << "tessera: incomplete: " << r->problems.size()
              << " item(s) could not be read; everything else was copied\n";
    return 3;
  }
  return 0;
}

}  // namespace tessera::web
