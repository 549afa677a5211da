// The change sequence's shared parts (kv_store.hpp, "The change sequence"): how the changes
// of one write are kept (a body: each op's kind and key), and how a page is read back from
// the kept writes, the same on both backends.
//
// Contract:
// - A write of n ops whose last number is L numbered its ops L-n+1 .. L in order.
// - Numbers have no gaps except below the retention's cut, so `page_of` recognises a reader
//   asking from before the cut (its next number is missing) and answers errc::gone.
// - A body that does not decode, or writes that do not follow each other (a store written by
//   something else), are storage_failure.
#pragma once

#include <caf/expected.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/kv/kv_store.hpp"

namespace tessera::adapters::change_log {

// The body that keeps `ops`' kinds and keys (not their values): per op one byte (0 put,
// 1 delete), the key's length as 4 bytes big-endian, the key.
std::string encode(const std::vector<write_op>& ops);

// The number of changes in `body`, or nothing when it does not decode.
std::optional<uint64_t> count(std::string_view body);

// One kept write: its last number and its body.
struct kept_write {
  uint64_t last_seq = 0;
  std::string body;
};

// The page after `after` from the kept writes with last_seq > after, in order (as many as the
// backend read, which may be fewer than all), at most `limit` changes; `newest` is the newest
// number committed when they were read. errc::gone when the changes right after `after` are
// no longer kept. `sequence` is the sequence's id, copied into the page.
caf::expected<change_page> page_of(const std::vector<kept_write>& writes, uint64_t after,
                                   size_t limit, uint64_t newest, std::string sequence);

// A new sequence's id: 32 random hex digits.
std::string new_sequence_id();

}  // namespace tessera::adapters::change_log
