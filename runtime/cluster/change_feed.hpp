// The change feed: how a node hears of the writes the other nodes of its cluster commit, so
// that its cached copies (a live storage actor's state, a panel's definition and render) follow
// them. It follows the backend's change sequence (adapters/kv/kv_store.hpp): each commit of
// every node is pushed by PostgreSQL's NOTIFY (adapters/kv/pg_store.hpp, options::notify,
// payload "<origin> <last> <ops>"), and the changes themselves are read by number with
// changes_after, so none is missed: a gap in the numbers, or a lost LISTEN connection, is
// caught up by reading every change after the last one handled.
//
// Contract:
// - feed_cursor is the pure core: given each notice in the order PostgreSQL delivered it, it
//   says which numbers to read (everything after the last number handled up to the notice's
//   last) and which of them are this node's own write (skipped: its actors already hold it).
//   A notice at or below the last number handled is old and changes nothing.
// - change_feed::listen opens two connections of its own (one LISTENs, one reads the changes,
//   so the node's pool, busy with its writes, never delays a notice), LISTENs, and takes the newest
//   number as its start, all before it returns (errors: unavailable, storage_failure): open it
//   before the actors load their state, and every change committed after what they read is handed
//   on. Notices wait in the connection until start(target); from then a thread of its own
//   handles them: each change of another node is given to target.changed, in
//   number order; when the LISTEN connection is lost it reconnects every `retry` and reads
//   every change after the last one handled, attributing all of them to the others (a few
//   needless reloads, never a missed one). When the changes it needs are no longer kept
//   (errc::gone after a long disconnection) it calls target.resync (reload everything) and
//   goes on from the newest number.
// - The destructor stops and joins the thread (within about 250 ms plus a read in flight).
// - Metrics: tessera_cluster_change_feed_changes_total (others' changes handed on),
//   ..._catch_ups_total (reads after a gap or a reconnection), ..._reconnects_total,
//   ..._resyncs_total, and ..._lag (numbers committed, as the newest notice says, and not yet
//   handled; 0 when it keeps up).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <caf/expected.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "adapters/kv/kv_store.hpp"

namespace tessera::adapters::pg {
class connection;
}

namespace tessera::runtime::cluster {

// One commit as its NOTIFY tells it: who wrote it, its last number, and how many it took.
struct write_notice {
  std::string origin;
  uint64_t last = 0;
  uint64_t ops = 0;
  friend bool operator==(const write_notice&, const write_notice&) = default;
};

// "<origin> <last> <ops>", or nothing for a payload of another form.
std::optional<write_notice> parse_notice(std::string_view payload);

// What to read after a notice: the changes numbered in (after, upto], except those in
// [skip_from, skip_to] (this node's own write; skip_from 0: none).
struct feed_read {
  uint64_t after = 0;
  uint64_t upto = 0;
  uint64_t skip_from = 0;
  uint64_t skip_to = 0;

  bool empty() const { return upto <= after || (skip_from == after + 1 && skip_to >= upto); }
  bool wanted(uint64_t seq) const {
    return seq > after && seq <= upto && !(skip_from && seq >= skip_from && seq <= skip_to);
  }
};

class feed_cursor {
 public:
  feed_cursor(std::string self, uint64_t seen) : self_(std::move(self)), seen_(seen) {}

  // The read this notice calls for; the cursor then counts everything up to its last as handled.
  feed_read on_notice(const write_notice& n);
  // Everything after the last number handled up to `newest`, all of it the others' (after a
  // reconnection); the cursor then stands at `newest`.
  feed_read catch_up(uint64_t newest);
  // Jumps to `newest` without reading (the changes in between are gone: resync).
  void restart_at(uint64_t newest) { seen_ = std::max(seen_, newest); }

  uint64_t seen() const { return seen_; }

 private:
  std::string self_;
  uint64_t seen_;
};

struct change_feed_metrics {
  explicit change_feed_metrics(prometheus::Registry& registry);
  prometheus::Counter* changes;
  prometheus::Counter* catch_ups;
  prometheus::Counter* reconnects;
  prometheus::Counter* resyncs;
  prometheus::Gauge* lag;
};

class change_feed {
 public:
  struct target {
    std::function<void(const adapters::change&)> changed;  // a change another node made
    std::function<void()> resync;  // changes were lost: reload every cached copy
  };

  // `origin`: this node's store's (pg_store::origin), whose writes are skipped.
  static caf::expected<std::unique_ptr<change_feed>> listen(const std::string& conninfo,
                                                            std::string origin,
                                                            change_feed_metrics* metrics,
                                                            std::chrono::milliseconds retry);

  // Hands on the changes from now on (once).
  void start(target t);

  ~change_feed();
  change_feed(const change_feed&) = delete;
  change_feed& operator=(const change_feed&) = delete;

 private:
  change_feed(std::unique_ptr<adapters::pg::connection> c,
              std::shared_ptr<adapters::kv_store> store, feed_cursor cursor,
              change_feed_metrics* metrics, std::chrono::milliseconds retry);
  void run();
  bool follow(const feed_read& r);  // false: the changes are gone (resynced)
  void reconnect();
  bool stopping(std::chrono::milliseconds wait);

  std::unique_ptr<adapters::pg::connection> conn_;
  std::shared_ptr<adapters::kv_store> store_;
  feed_cursor cursor_;
  target target_;
  change_feed_metrics* metrics_;
  std::chrono::milliseconds retry_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tessera::runtime::cluster
