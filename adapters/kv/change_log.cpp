#include "adapters/kv/change_log.hpp"

#include <algorithm>
#include <random>

#include "adapters/error.hpp"

namespace tessera::adapters::change_log {
namespace {

constexpr size_t header = 5;  // kind byte, key length

uint32_t read_length(std::string_view s) {
  auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(s[i])); };
  return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

// Calls fn(erase, key) for each change in `body`; false when it does not decode.
template <class Fn>
bool each(std::string_view body, Fn fn) {
  while (!body.empty()) {
    if (body.size() < header || static_cast<unsigned char>(body[0]) > 1) return false;
    bool erase = body[0] == 1;
    auto n = read_length(body.substr(1));
    if (body.size() - header < n) return false;
    if (!fn(erase, body.substr(header, n))) return true;
    body.remove_prefix(header + n);
  }
  return true;
}

caf::error undecodable(uint64_t last_seq) {
  return make_error(errc::storage_failure, "the change sequence's write ending at " +
                                               std::to_string(last_seq) + " does not decode");
}

}  // namespace

std::string encode(const std::vector<write_op>& ops) {
  std::string out;
  size_t size = 0;
  for (auto& op : ops) size += header + op.key.size();
  out.reserve(size);
  for (auto& op : ops) {
    out.push_back(op.erase ? 1 : 0);
    auto n = static_cast<uint32_t>(op.key.size());
    for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<char>((n >> shift) & 0xff));
    out += op.key;
  }
  return out;
}

std::optional<uint64_t> count(std::string_view body) {
  uint64_t n = 0;
  if (!each(body, [&](bool, std::string_view) { return ++n, true; })) return std::nullopt;
  return n;
}

caf::expected<change_page> page_of(const std::vector<kept_write>& writes, uint64_t after,
                                   size_t limit, uint64_t newest, std::string sequence) {
  change_page page;
  page.last = newest;
  page.sequence = std::move(sequence);
  for (auto& w : writes) page.last = std::max(page.last, w.last_seq);
  if (page.last <= after) return page;
  auto gone = [&](uint64_t first_kept) {
    return make_error(errc::gone, "the changes after " + std::to_string(after) +
                                      " are no longer kept (the oldest kept is " +
                                      std::to_string(first_kept) +
                                      ", storage.change_retention): read the current state, "
                                      "then follow from " +
                                      std::to_string(page.last));
  };
  if (writes.empty()) return gone(page.last + 1);
  uint64_t previous = 0;  // the last number of the write before
  for (auto& w : writes) {
    auto n = count(w.body);
    if (!n || *n == 0 || *n > w.last_seq) return undecodable(w.last_seq);
    uint64_t seq = w.last_seq - *n;  // the number before this write's first
    if (&w == &writes.front()) {
      if (seq > after) return gone(seq + 1);
    } else if (seq != previous) {
      return make_error(errc::storage_failure,
                        "the change sequence's write ending at " + std::to_string(w.last_seq) +
                            " does not follow the one ending at " + std::to_string(previous));
    }
    previous = w.last_seq;
    bool room = true;
    each(w.body, [&](bool erase, std::string_view key) {
      ++seq;
      if (seq <= after) return true;
      if (page.changes.size() >= limit) return room = false;
      page.changes.push_back({seq, std::string{key}, erase});
      return true;
    });
    if (!room || page.changes.size() >= limit) break;
  }
  return page;
}

std::string new_sequence_id() {
  std::random_device random;
  static constexpr char hex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 32; ++i) id.push_back(hex[random() % 16]);
  return id;
}

}  // namespace tessera::adapters::change_log
