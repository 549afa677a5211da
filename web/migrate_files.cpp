#include "web/migrate_files.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "actors/panel/panel_codec.hpp"
#include "actors/panel/panel_directory.hpp"
#include "actors/storage/storage_codec.hpp"
#include "actors/task/task_codec.hpp"
#include "adapters/error.hpp"
#include "config/settings.hpp"
#include "runtime/clock.hpp"

namespace tessera::web::migration {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using adapters::kv_rows;

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

}  // namespace

storage::call_limits limits() { return storage::call_limits::from_settings(config::defaults()); }

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

bool files_empty(const fs::path& root) {
  std::error_code ec;
  for (auto* sub : {"storages", "panels", "tasks"})
    if (fs::is_directory(root / sub, ec) && !fs::is_empty(root / sub, ec)) return false;
  return !fs::exists(root / "tasks.json", ec);
}

}  // namespace tessera::web::migration
