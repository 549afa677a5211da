#include "actors/storage/storage_codec.hpp"

#include <algorithm>
#include <charconv>

namespace tessera::storage {

std::string storage_key(std::string_view id) {
  std::string key{key_prefix};
  key += id;
  return key;
}

std::string tombstone_key(std::string_view id) {
  std::string key{"tombstone/"};
  key += key_prefix;
  key += id;
  return key;
}

std::string encode(const storage_record& r) {
  std::string out = "v1 " + std::to_string(r.version) + ' ' + std::to_string(r.created_at) + ' ' +
                    std::to_string(r.updated_at) + '\n';
  out += r.data;
  return out;
}

adapters::write_op fenced_write(const std::string& id, int64_t read_version,
                                std::optional<storage_record> next) {
  adapters::write_op op{storage_key(id), next ? encode(*next) : std::string{}, !next};
  if (read_version == 0) {
    op.expect = adapters::write_op::absent;
  } else {
    op.expect = adapters::write_op::has_prefix;
    op.prefix = "v1 " + std::to_string(read_version) + ' ';
  }
  return op;
}

std::optional<storage_record> decode(std::string_view id, std::string_view value) {
  auto newline = value.find('\n');
  if (newline == std::string_view::npos || !value.starts_with("v1 ")) return std::nullopt;
  storage_record r;
  r.id = std::string{id};
  const char* p = value.data() + 3;
  const char* end = value.data() + newline;
  for (int64_t* field : {&r.version, &r.created_at, &r.updated_at}) {
    auto [next, ec] = std::from_chars(p, end, *field);
    if (ec != std::errc{}) return std::nullopt;
    p = next;
    if (p < end && *p == ' ') ++p;
  }
  if (p != end) return std::nullopt;
  r.data = std::string{value.substr(newline + 1)};
  return r;
}

storage_record next_record(const storage_record& current, std::string data, int64_t now_ms) {
  if (current.version == 0) return {current.id, std::move(data), current.floor + 1, now_ms, now_ms};
  return {current.id, std::move(data), current.version + 1, current.created_at,
          std::max(now_ms, current.updated_at)};
}

}  // namespace tessera::storage
