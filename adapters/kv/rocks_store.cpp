#include "adapters/kv/rocks_store.hpp"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "adapters/error.hpp"

namespace tessera::adapters {
namespace {

caf::error failure(const rocksdb::Status& s) {
  return make_error(errc::storage_failure, s.ToString());
}

}  // namespace

rocks_store::rocks_store(options opts, std::unique_ptr<rocksdb::DB> db)
    : opts_(std::move(opts)), db_(std::move(db)) {}

rocks_store::~rocks_store() {
  if (db_) db_->Close();
}

caf::expected<std::shared_ptr<rocks_store>> rocks_store::open(options opts) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.IncreaseParallelism(2);
  o.OptimizeLevelStyleCompaction();
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(o, opts.path, &raw);
  if (!s.ok()) return failure(s);
  return std::shared_ptr<rocks_store>{
      new rocks_store(std::move(opts), std::unique_ptr<rocksdb::DB>{raw})};
}

caf::expected<std::optional<std::string>> rocks_store::get(std::string_view key) const {
  std::string value;
  auto s = db_->Get(rocksdb::ReadOptions{}, rocksdb::Slice{key.data(), key.size()}, &value);
  if (s.IsNotFound()) return std::optional<std::string>{};
  if (!s.ok()) return failure(s);
  return std::optional<std::string>{std::move(value)};
}

caf::error rocks_store::write(const std::vector<write_op>& ops) {
  rocksdb::WriteBatch batch;
  for (auto& op : ops) {
    auto s = op.erase ? batch.Delete(op.key) : batch.Put(op.key, op.value);
    if (!s.ok()) return failure(s);
  }
  rocksdb::WriteOptions wo;
  wo.sync = opts_.sync;
  auto start = std::chrono::steady_clock::now();
  auto s = db_->Write(wo, &batch);
  if (opts_.on_write) opts_.on_write(std::chrono::steady_clock::now() - start);
  if (!s.ok()) return failure(s);
  return {};
}

caf::expected<kv_rows> rocks_store::scan(std::string_view prefix, std::string_view after,
                                         size_t limit) const {
  kv_rows out;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{})};
  std::string start{prefix};
  start += after;
  for (it->Seek(start); it->Valid() && out.size() < limit; it->Next()) {
    auto key = it->key();
    if (!key.starts_with(rocksdb::Slice{prefix.data(), prefix.size()})) break;
    if (!after.empty() && key.ToString() == start) continue;
    out.emplace_back(key.ToString(), it->value().ToString());
  }
  if (!it->status().ok()) return failure(it->status());
  return out;
}

caf::expected<kv_rows> rocks_store::range(std::string_view from, std::string_view to, size_t limit,
                                          bool reverse) const {
  kv_rows out;
  if (from >= to) return out;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{})};
  rocksdb::Slice lo{from.data(), from.size()}, hi{to.data(), to.size()};
  if (reverse) {
    for (it->SeekForPrev(hi); it->Valid() && out.size() < limit; it->Prev()) {
      if (it->key().compare(hi) >= 0) continue;
      if (it->key().compare(lo) < 0) break;
      out.emplace_back(it->key().ToString(), it->value().ToString());
    }
  } else {
    for (it->Seek(lo); it->Valid() && out.size() < limit; it->Next()) {
      if (it->key().compare(hi) >= 0) break;
      out.emplace_back(it->key().ToString(), it->value().ToString());
    }
  }
  if (!it->status().ok()) return failure(it->status());
  return out;
}

caf::error rocks_store::flush() {
  auto s = db_->FlushWAL(true);
  if (!s.ok()) return failure(s);
  s = db_->Flush(rocksdb::FlushOptions{});
  if (!s.ok()) return failure(s);
  return {};
}

bool rocks_store::healthy() const {
  std::string ignored;
  auto s = db_->Get(rocksdb::ReadOptions{}, "health/probe", &ignored);
  return s.ok() || s.IsNotFound();
}

}  // namespace tessera::adapters
