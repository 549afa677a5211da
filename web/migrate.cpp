#include "web/migrate.hpp"

#include <openssl/evp.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "actors/panel/panel_codec.hpp"
#include "actors/storage/storage_codec.hpp"
#include "actors/task/task_codec.hpp"
#include "adapters/error.hpp"
#include "adapters/pg/connection.hpp"
#include "config/settings.hpp"
#include "web/migrate_files.hpp"
#include "web/store_backend.hpp"

namespace tessera::web {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using adapters::kv_rows;
using adapters::write_op;

constexpr size_t page_size = 5000;

using migration::kept_in_files;
using migration::kind_of;
using migration::limits;

// --- kinds and checksums ---------------------------------------------------------------------

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

// --- stores ----------------------------------------------------------------------------------

// The server's own opening of a store (web/store_backend.hpp), with every write fsynced.
caf::expected<std::shared_ptr<adapters::kv_store>> open_endpoint(const endpoint& e,
                                                                 prometheus::Registry& registry) {
  auto s = config::defaults();
  s.sync = true;
  s.postgres_pool = 2;
  if (e.what == endpoint::kind::rocksdb) {
    s.data_dir = e.where;
  } else {
    s.backend = "postgres";
    s.postgres_url = e.where;
  }
  return open_store(s, registry);
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
  prometheus::Registry registry;  // the stores' metrics, unread: declared first, freed last
  // The target first: refuse a non-empty one before reading anything.
  std::shared_ptr<adapters::kv_store> target;
  if (to.what == endpoint::kind::files) {
    if (!force && !migration::files_empty(to.where))
      return make_error(errc::conflict, to.shown + " is not empty (--force writes over it)");
  } else {
    auto t = open_endpoint(to, registry);
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
        if (auto err = migration::write_file(to.where, k, v, result.problems)) return err;
    }
    result.copied += rows.size();
    return {};
  };
  if (from.what == endpoint::kind::files) {
    auto rows = migration::read_files(from.where, result.problems);
    if (!rows) return rows.error();
    for (size_t i = 0; i < rows->size(); i += page_size) {
      kv_rows page(
          rows->begin() + static_cast<std::ptrdiff_t>(i),
          rows->begin() + static_cast<std::ptrdiff_t>(std::min(rows->size(), i + page_size)));
      if (auto err = write(page)) return err;
    }
  } else {
    auto source = open_endpoint(from, registry);
    if (!source) return source.error();
    // One moment of the source, even while servers write to it (a PostgreSQL in use).
    auto view = (*source)->read_view();
    if (!view) return view.error();
    if (auto err = each_page(**view, write)) return err;
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
    auto back = migration::read_files(to.where, ignored);
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
