#include "actors/storage/storage_owner.hpp"

#include <algorithm>
#include <charconv>

#include "actors/storage/storage_codec.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"

namespace tessera::storage {
namespace {

caf::expected<nlohmann::json> parse_object(const std::string& text) {
  auto value = nlohmann::json::parse(text, nullptr, false);
  if (value.is_discarded() || !value.is_object())
    return make_error(errc::invalid_argument, "data must be a JSON object");
  return value;
}

bool matches(const version_list& if_match, int64_t version) {
  return if_match.empty() || std::find(if_match.begin(), if_match.end(), version) != if_match.end();
}

}  // namespace

storage_owner::storage_owner(std::string id) : id_(std::move(id)) {}

storage_owner::storage_owner(const adapters::kv_store& store, std::string id) : id_(std::move(id)) {
  load(fetch(store, id_));
}

caf::expected<stored_storage> storage_owner::fetch(const adapters::kv_store& store,
                                                   const std::string& id) {
  stored_storage out;
  auto value = store.get(storage_key(id));
  if (!value) return std::move(value.error());
  if (*value) {
    out.has_record = true;
    out.record = std::move(**value);
    return out;
  }
  auto tombstone = store.get(tombstone_key(id));
  if (!tombstone) return std::move(tombstone.error());
  if (*tombstone) {
    out.has_tombstone = true;
    out.tombstone = std::move(**tombstone);
  }
  return out;
}

void storage_owner::load(caf::expected<stored_storage> found) {
  load_error_ = caf::error{};
  record_.reset();
  document_ = nlohmann::json{};
  floor_ = 0;
  if (!found) {
    load_error_ = std::move(found.error());
    return;
  }
  if (found->has_record) {
    record_ = decode(id_, found->record);
    if (record_) document_ = nlohmann::json::parse(record_->data, nullptr, false);
    if (!record_ || !document_.is_object()) {
      record_.reset();
      load_error_ = make_error(errc::storage_failure, "unreadable record for " + id_);
    }
    return;
  }
  if (!found->has_tombstone) return;
  auto& text = found->tombstone;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), floor_);
  if (ec != std::errc{} || end != text.data() + text.size() || floor_ < 0) {
    floor_ = 0;
    load_error_ = make_error(errc::storage_failure, "unreadable tombstone for " + id_);
  }
}

caf::expected<storage_record> storage_owner::read() const {
  if (load_error_) return load_error_;
  if (!record_) return not_found();
  return *record_;
}

caf::expected<change> storage_owner::create(const std::string& data) const {
  if (load_error_) return load_error_;
  if (record_) return make_error(errc::conflict, "storage '" + id_ + "' already exists");
  auto value = parse_object(data);
  if (!value) return value.error();
  return with_data(next_record(absent(), {}, runtime::now_ms()), std::move(*value));
}

caf::expected<change> storage_owner::replace(const std::string& data,
                                             const version_list& if_match) const {
  if (auto err = check_write(if_match)) return err;
  auto value = parse_object(data);
  if (!value) return value.error();
  return with_data(next_version(), std::move(*value));
}

caf::expected<change> storage_owner::merge(const std::string& patch,
                                           const version_list& if_match) const {
  if (auto err = check_write(if_match)) return err;
  auto changes = parse_object(patch);
  if (!changes) return changes.error();
  auto merged = document_;
  for (auto& [key, value] : changes->items()) {
    if (value.is_null())
      merged.erase(key);
    else
      merged[key] = std::move(value);
  }
  return with_data(next_version(), std::move(merged));
}

caf::expected<std::optional<change>> storage_owner::prepare(int64_t expected,
                                                            const std::string& data) const {
  if (load_error_) return load_error_;
  int64_t current = version();
  if (current != expected)
    return make_error(errc::conflict, "storage '" + id_ + "' is at version " +
                                          std::to_string(current) + ", not " +
                                          std::to_string(expected));
  if (data.empty()) return std::optional<change>{};
  auto c = record_ ? replace(data, {}) : create(data);
  if (!c) return c.error();
  return std::optional<change>{std::move(*c)};
}

caf::expected<change> storage_owner::erase(const version_list& if_match) const {
  if (auto err = check_write(if_match)) return err;
  std::vector<adapters::write_op> ops{fenced_write(id_, record_->version, std::nullopt),
                                      {tombstone_key(id_), std::to_string(record_->version)}};
  return change{std::nullopt, nullptr, *record_, std::move(ops)};
}

void storage_owner::apply(change c) {
  floor_ = c.next ? 0 : record_->version;
  record_ = std::move(c.next);
  document_ = std::move(c.document);
}

void storage_owner::apply_committed(storage_record r) {
  floor_ = 0;
  document_ = nlohmann::json::parse(r.data, nullptr, false);
  record_ = std::move(r);
}

caf::error storage_owner::check_write(const version_list& if_match) const {
  if (load_error_) return load_error_;
  if (!record_) return not_found();
  if (!matches(if_match, record_->version))
    return make_error(errc::precondition_failed,
                      "storage '" + id_ + "' is at version " + std::to_string(record_->version));
  return {};
}

caf::error storage_owner::not_found() const {
  return make_error(errc::not_found, "storage '" + id_ + "' does not exist");
}

// The same rule a locked transaction uses (storage_codec.hpp); with_data() sets the data.
storage_record storage_owner::next_version() const {
  return next_record(*record_, {}, runtime::now_ms());
}

change storage_owner::with_data(storage_record next, nlohmann::json document) const {
  next.data = document.dump();
  std::vector<adapters::write_op> ops{fenced_write(id_, record_ ? record_->version : 0, next)};
  if (!record_ && floor_ > 0) ops.push_back({tombstone_key(id_), {}, true});
  auto reply = next;
  return change{std::move(next), std::move(document), std::move(reply), std::move(ops)};
}

}  // namespace tessera::storage
