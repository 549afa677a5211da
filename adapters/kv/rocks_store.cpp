#include "adapters/kv/rocks_store.hpp"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <map>

#include "adapters/error.hpp"
#include "adapters/kv/change_log.hpp"

namespace tessera::adapters {
namespace {

caf::error failure(const rocksdb::Status& s) {
  return make_error(errc::storage_failure, s.ToString());
}

constexpr const char* changes_family = "changes";
constexpr const char* sequence_key = "sequence";  // sorts after every number

// A write's last number as a key of the "changes" family: 20 digits, so keys sort as numbers.
std::string seq_key(uint64_t seq) {
  auto digits = std::to_string(seq);
  return std::string(20 - digits.size(), '0') + digits;
}

std::optional<uint64_t> parse_seq(const rocksdb::Slice& key) {
  if (key.size() != 20) return std::nullopt;
  uint64_t n = 0;
  for (size_t i = 0; i < key.size(); ++i) {
    if (key[i] < '0' || key[i] > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(key[i] - '0');
  }
  return n;
}

}  // namespace

rocks_store::rocks_store(options opts, std::unique_ptr<rocksdb::DB> db,
                         std::vector<rocksdb::ColumnFamilyHandle*> families)
    : opts_(std::move(opts)), db_(std::move(db)), families_(std::move(families)) {}

rocks_store::~rocks_store() {
  if (!db_) return;
  for (auto* family : families_) db_->DestroyColumnFamilyHandle(family);
  db_->Close();
}

caf::expected<std::shared_ptr<rocks_store>> rocks_store::open(options opts) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.create_missing_column_families = true;  // data dirs from before the change sequence
  o.IncreaseParallelism(2);
  o.OptimizeLevelStyleCompaction();
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors{
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions{o}},
      {changes_family, rocksdb::ColumnFamilyOptions{o}}};
  std::vector<rocksdb::ColumnFamilyHandle*> families;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(rocksdb::DBOptions{o}, opts.path, descriptors, &families, &raw);
  if (!s.ok()) return failure(s);
  std::shared_ptr<rocks_store> store{
      new rocks_store(std::move(opts), std::unique_ptr<rocksdb::DB>{raw}, std::move(families))};
  if (auto err = store->load_sequence()) return err;
  return store;
}

caf::error rocks_store::load_sequence() {
  auto s = db_->Get(rocksdb::ReadOptions{}, families_[1], sequence_key, &sequence_);
  if (s.IsNotFound()) {
    sequence_ = change_log::new_sequence_id();
    rocksdb::WriteOptions wo;
    wo.sync = true;
    s = db_->Put(wo, families_[1], sequence_key, sequence_);
  }
  if (!s.ok()) return failure(s);
  if (auto err = load_last()) return err;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, families_[1])};
  it->SeekToFirst();
  if (it->Valid() && it->key() != rocksdb::Slice{sequence_key}) {
    auto first = parse_seq(it->key());
    auto n = change_log::count(std::string_view{it->value().data(), it->value().size()});
    if (!first || !n || *n > *first)
      return make_error(errc::storage_failure,
                        "the change sequence's oldest write does not decode");
    first_kept_ = *first - *n + 1;
  }
  if (!it->status().ok()) return failure(it->status());
  return {};
}

caf::error rocks_store::load_last() {
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, families_[1])};
  it->SeekForPrev(seq_key(UINT64_MAX));
  if (it->Valid()) {
    auto last = parse_seq(it->key());
    if (!last) return make_error(errc::storage_failure, "the change sequence holds a foreign key");
    last_seq_ = *last;
  }
  if (!it->status().ok()) return failure(it->status());
  return {};
}

caf::expected<std::optional<std::string>> rocks_store::get(std::string_view key) const {
  return get_at(rocksdb::ReadOptions{}, key);
}

caf::expected<std::optional<std::string>> rocks_store::get_at(const rocksdb::ReadOptions& ro,
                                                              std::string_view key) const {
  std::string value;
  auto s = db_->Get(ro, rocksdb::Slice{key.data(), key.size()}, &value);
  if (s.IsNotFound()) return std::optional<std::string>{};
  if (!s.ok()) return failure(s);
  return std::optional<std::string>{std::move(value)};
}

caf::error rocks_store::write(const std::vector<write_op>& ops) {
  if (ops.empty()) return {};
  rocksdb::WriteBatch batch;
  for (auto& op : ops) {
    auto s = op.erase ? batch.Delete(op.key) : batch.Put(op.key, op.value);
    if (!s.ok()) return failure(s);
  }
  std::lock_guard lock{write_mutex_};
  // Conditions, under the mutex every write takes: nothing can change between check and
  // write. Each is checked against the ops before it in this write, then the database, as
  // PostgreSQL runs a pipeline's statements in order.
  bool conditional = std::any_of(ops.begin(), ops.end(),
                                 [](const write_op& op) { return op.expect != write_op::any; });
  std::map<std::string_view, const write_op*> earlier;
  for (auto& op : ops) {
    if (!conditional) break;
    if (op.expect != write_op::any) {
      std::optional<std::string> current;
      if (auto it = earlier.find(op.key); it != earlier.end()) {
        if (!it->second->erase) current = it->second->value;
      } else {
        std::string value;
        auto s = db_->Get(rocksdb::ReadOptions{}, op.key, &value);
        if (!s.ok() && !s.IsNotFound()) return failure(s);
        if (s.ok()) current = std::move(value);
      }
      bool holds = op.expect == write_op::absent
                       ? !current
                       : current && std::string_view{*current}.starts_with(op.prefix);
      if (!holds)
        return make_error(errc::conflict, "a key changed since it was read; nothing was written");
    }
    earlier[op.key] = &op;
  }
  uint64_t last = last_seq_ + ops.size();
  if (auto s = batch.Put(families_[1], seq_key(last), change_log::encode(ops)); !s.ok())
    return failure(s);
  auto retention = std::max<uint64_t>(opts_.change_retention, 1);
  uint64_t cut = 0;  // drop the writes ending at or before it
  if (last - first_kept_ + 1 > retention + retention / 8) {
    cut = last - retention;
    if (auto s = batch.DeleteRange(families_[1], seq_key(0), seq_key(cut + 1)); !s.ok())
      return failure(s);
  }
  rocksdb::WriteOptions wo;
  wo.sync = opts_.sync;
  auto start = std::chrono::steady_clock::now();
  auto s = db_->Write(wo, &batch);
  if (opts_.on_write) opts_.on_write(std::chrono::steady_clock::now() - start);
  if (!s.ok()) {
    (void)load_last();  // it may have landed: number on from what is there
    return failure(s);
  }
  last_seq_ = last;
  if (cut) first_kept_ = cut + 1;  // at most: a write across the cut is kept whole
  return {};
}

caf::expected<change_page> rocks_store::changes_after(uint64_t after, size_t limit) const {
  return changes_at(rocksdb::ReadOptions{}, after, limit, last_seq_);
}

caf::expected<change_page> rocks_store::changes_at(const rocksdb::ReadOptions& ro, uint64_t after,
                                                   size_t limit,
                                                   std::optional<uint64_t> newest_known) const {
  std::vector<change_log::kept_write> writes;
  uint64_t newest = 0;
  if (newest_known) {
    newest = *newest_known;
  } else {  // a snapshot's: its newest write
    std::unique_ptr<rocksdb::Iterator> last{db_->NewIterator(ro, families_[1])};
    last->SeekForPrev(seq_key(UINT64_MAX));
    if (last->Valid()) newest = parse_seq(last->key()).value_or(0);
    if (!last->status().ok()) return failure(last->status());
  }
  if (limit == 0 || after == UINT64_MAX) return change_page{{}, newest, sequence_};
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(ro, families_[1])};
  size_t changes = 0;
  for (it->Seek(seq_key(after + 1)); it->Valid() && changes < limit; it->Next()) {
    if (it->key() == rocksdb::Slice{sequence_key}) break;
    auto seq = parse_seq(it->key());
    if (!seq) return make_error(errc::storage_failure, "the change sequence holds a foreign key");
    auto& w = writes.emplace_back(change_log::kept_write{*seq, it->value().ToString()});
    changes += change_log::count(w.body).value_or(1);
  }
  if (!it->status().ok()) return failure(it->status());
  return change_log::page_of(writes, after, limit, newest, sequence_);
}

caf::expected<kv_rows> rocks_store::scan(std::string_view prefix, std::string_view after,
                                         size_t limit) const {
  return scan_at(rocksdb::ReadOptions{}, prefix, after, limit);
}

caf::expected<kv_rows> rocks_store::scan_at(const rocksdb::ReadOptions& ro, std::string_view prefix,
                                            std::string_view after, size_t limit) const {
  kv_rows out;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(ro)};
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
  return range_at(rocksdb::ReadOptions{}, from, to, limit, reverse);
}

caf::expected<kv_rows> rocks_store::range_at(const rocksdb::ReadOptions& ro, std::string_view from,
                                             std::string_view to, size_t limit,
                                             bool reverse) const {
  kv_rows out;
  if (from >= to) return out;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(ro)};
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

// A snapshot of the store: every read through it sees the moment it was taken.
class rocks_store::view final : public kv_store, public std::enable_shared_from_this<view> {
 public:
  explicit view(std::shared_ptr<const rocks_store> store)
      : store_(std::move(store)), snapshot_(store_->db_->GetSnapshot()) {
    ro_.snapshot = snapshot_;
  }
  ~view() override { store_->db_->ReleaseSnapshot(snapshot_); }

  caf::expected<std::optional<std::string>> get(std::string_view key) const override {
    return store_->get_at(ro_, key);
  }
  caf::error write(const std::vector<write_op>&) override {
    return make_error(errc::invalid_argument, "a read view takes no writes");
  }
  caf::expected<kv_rows> scan(std::string_view prefix, std::string_view after,
                              size_t limit) const override {
    return store_->scan_at(ro_, prefix, after, limit);
  }
  caf::expected<kv_rows> range(std::string_view from, std::string_view to, size_t limit,
                               bool reverse) const override {
    return store_->range_at(ro_, from, to, limit, reverse);
  }
  caf::expected<change_page> changes_after(uint64_t after, size_t limit) const override {
    return store_->changes_at(ro_, after, limit, std::nullopt);
  }
  caf::expected<std::shared_ptr<kv_store>> read_view() const override {  // the same moment
    return std::const_pointer_cast<kv_store>(
        std::static_pointer_cast<const kv_store>(shared_from_this()));
  }
  caf::error flush() override { return {}; }
  bool healthy() const override { return store_->healthy(); }

 private:
  std::shared_ptr<const rocks_store> store_;
  const rocksdb::Snapshot* snapshot_;
  rocksdb::ReadOptions ro_;
};

caf::expected<std::shared_ptr<kv_store>> rocks_store::read_view() const {
  return std::make_shared<view>(shared_from_this());
}

caf::error rocks_store::flush() {
  auto s = db_->FlushWAL(true);
  if (!s.ok()) return failure(s);
  s = db_->Flush(rocksdb::FlushOptions{}, families_);
  if (!s.ok()) return failure(s);
  return {};
}

bool rocks_store::healthy() const {
  std::string ignored;
  auto s = db_->Get(rocksdb::ReadOptions{}, "health/probe", &ignored);
  return s.ok() || s.IsNotFound();
}

}  // namespace tessera::adapters
