#include "runtime/cluster/change_feed.hpp"

#include <charconv>

#include "adapters/error.hpp"
#include "adapters/kv/pg_store.hpp"
#include "adapters/pg/connection.hpp"
#include "runtime/log.hpp"

namespace tessera::runtime::cluster {
namespace {

// How long the thread waits for a notice before it looks at its stop flag again.
constexpr std::chrono::milliseconds poll_interval{250};
// Changes read per page while following.
constexpr size_t page_size = 1000;

std::optional<uint64_t> number(std::string_view s) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc{} || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return n;
}

std::string listen_sql() { return std::string{"LISTEN "} + adapters::pg_store::change_channel; }

}  // namespace

std::optional<write_notice> parse_notice(std::string_view payload) {
  auto first = payload.find(' ');
  if (first == std::string_view::npos || first == 0) return std::nullopt;
  auto second = payload.find(' ', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  auto last = number(payload.substr(first + 1, second - first - 1));
  auto ops = number(payload.substr(second + 1));
  if (!last || !ops || *ops == 0 || *ops > *last) return std::nullopt;
  return write_notice{std::string{payload.substr(0, first)}, *last, *ops};
}

feed_read feed_cursor::on_notice(const write_notice& n) {
  if (n.last <= seen_) return {seen_, seen_};
  feed_read r{seen_, n.last};
  if (n.origin == self_) {
    r.skip_from = n.last - n.ops + 1;
    r.skip_to = n.last;
  }
  seen_ = n.last;
  return r;
}

feed_read feed_cursor::catch_up(uint64_t newest) {
  feed_read r{seen_, std::max(seen_, newest)};
  seen_ = r.upto;
  return r;
}

change_feed_metrics::change_feed_metrics(prometheus::Registry& registry) {
  auto counter = [&registry](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add({});
  };
  changes = counter("tessera_cluster_change_feed_changes_total",
                    "Changes made by other nodes that this node's change feed handed on");
  catch_ups = counter("tessera_cluster_change_feed_catch_ups_total",
                      "Reads of the change sequence after a gap in the notices or a reconnection");
  reconnects = counter("tessera_cluster_change_feed_reconnects_total",
                       "Reconnections of the change feed's LISTEN connection");
  resyncs = counter("tessera_cluster_change_feed_resyncs_total",
                    "Times the changes to catch up were no longer kept: every copy reloaded");
  lag = &prometheus::BuildGauge()
             .Name("tessera_cluster_change_feed_lag")
             .Help("Change numbers committed (as the newest notice says) not yet handled here")
             .Register(registry)
             .Add({});
}

caf::expected<std::unique_ptr<change_feed>> change_feed::listen(const std::string& conninfo,
                                                                std::string origin,
                                                                change_feed_metrics* metrics,
                                                                std::chrono::milliseconds retry) {
  auto reader = adapters::pg_store::open(conninfo, 1);
  if (!reader) return reader.error();
  std::shared_ptr<adapters::kv_store> store = *reader;
  auto c = adapters::pg::connection::open(conninfo, {});
  if (!c) return c.error();
  if (auto listening = (*c)->exec(listen_sql()); !listening) return listening.error();
  // Listening first: every commit after this newest number is notified.
  auto newest = store->changes_after(0, 0);
  if (!newest) return newest.error();
  return std::unique_ptr<change_feed>{new change_feed(std::move(*c), std::move(store),
                                                      feed_cursor{std::move(origin), newest->last},
                                                      metrics, retry)};
}

change_feed::change_feed(std::unique_ptr<adapters::pg::connection> c,
                         std::shared_ptr<adapters::kv_store> store, feed_cursor cursor,
                         change_feed_metrics* metrics, std::chrono::milliseconds retry)
    : conn_(std::move(c)),
      store_(std::move(store)),
      cursor_(std::move(cursor)),
      metrics_(metrics),
      retry_(retry) {}

void change_feed::start(target t) {
  if (thread_.joinable()) return;
  target_ = std::move(t);
  thread_ = std::thread([this] { run(); });
}

change_feed::~change_feed() {
  {
    std::lock_guard lock{mutex_};
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool change_feed::stopping(std::chrono::milliseconds wait) {
  std::unique_lock lock{mutex_};
  return wake_.wait_for(lock, wait, [this] { return stop_; });
}

void change_feed::run() {
  while (!stopping(std::chrono::milliseconds{0})) {
    auto payloads = conn_->notifications(poll_interval);
    if (!payloads) {
      log_error("the change feed lost its connection to PostgreSQL: " +
                detail_of(payloads.error()) + "; reconnecting");
      reconnect();
      continue;
    }
    for (auto& p : *payloads) {
      auto n = parse_notice(p);
      if (!n) continue;  // not ours
      if (metrics_)
        metrics_->lag->Set(static_cast<double>(n->last - std::min(n->last, cursor_.seen())));
      auto gap = n->last - n->ops != cursor_.seen() && n->last > cursor_.seen();
      if (gap && metrics_) metrics_->catch_ups->Increment();
      follow(cursor_.on_notice(*n));
    }
    if (metrics_) metrics_->lag->Set(0);
  }
}

// Reads the changes `r` wants, page by page, and hands them on in number order.
bool change_feed::follow(const feed_read& r) {
  auto after = r.after;
  while (!r.empty() && after < r.upto) {
    if (r.skip_from == after + 1 && r.skip_to >= r.upto) break;
    auto page = store_->changes_after(after, page_size);
    if (!page && code_of(page.error()) == errc::gone) {
      log_error(
          "the change feed fell behind the changes kept (storage.change_retention): "
          "every cached copy reloads");
      if (metrics_) metrics_->resyncs->Increment();
      if (target_.resync) target_.resync();
      if (auto newest = store_->changes_after(0, 0)) cursor_.restart_at(newest->last);
      return false;
    }
    if (!page) {
      // The store is away: try again until it answers or the feed stops.
      log_error("the change feed cannot read the changes after " + std::to_string(after) + ": " +
                detail_of(page.error()));
      if (stopping(retry_)) return true;
      continue;
    }
    if (page->changes.empty()) break;  // nothing after `after` (a notified commit is readable)
    for (auto& c : page->changes) {
      if (c.seq > r.upto) return true;
      if (r.wanted(c.seq)) {
        if (metrics_) metrics_->changes->Increment();
        if (target_.changed) target_.changed(c);
      }
      after = c.seq;
    }
  }
  return true;
}

void change_feed::reconnect() {
  while (!stopping(retry_)) {
    if (metrics_) metrics_->reconnects->Increment();
    if (auto err = conn_->reset()) continue;
    if (auto listening = conn_->exec(listen_sql()); !listening) continue;
    auto newest = store_->changes_after(0, 0);
    if (!newest) continue;
    if (metrics_) metrics_->catch_ups->Increment();
    log_info("the change feed is back: reading the changes after " +
             std::to_string(cursor_.seen()));
    follow(cursor_.catch_up(newest->last));
    return;
  }
}

}  // namespace tessera::runtime::cluster
