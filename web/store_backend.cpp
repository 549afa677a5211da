#include "web/store_backend.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <filesystem>

#include "adapters/error.hpp"
#include "adapters/kv/pg_store.hpp"
#include "adapters/kv/rocks_store.hpp"
#include "adapters/metrics/registry.hpp"
#include "adapters/pg/connection.hpp"

namespace tessera::web {
namespace {

std::vector<double> batch_buckets() { return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096}; }

caf::expected<std::shared_ptr<adapters::kv_store>> open_rocksdb(const config::settings& s,
                                                                prometheus::Registry& registry) {
  std::error_code ec;
  std::filesystem::create_directories(s.data_dir, ec);
  if (ec)
    return make_error(errc::storage_failure,
                      "cannot create data dir " + s.data_dir + ": " + ec.message());
  auto& write_latency = prometheus::BuildHistogram()
                            .Name("tessera_rocksdb_write_duration_seconds")
                            .Help("RocksDB batch write latency, WAL append (and fsync with sync)")
                            .Register(registry)
                            .Add({}, adapters::latency_buckets());
  auto store = adapters::rocks_store::open({s.data_dir, s.sync,
                                            [&write_latency](std::chrono::nanoseconds d) {
                                              write_latency.Observe(
                                                  std::chrono::duration<double>(d).count());
                                            },
                                            s.change_retention});
  if (!store)
    return make_error(errc::storage_failure,
                      "cannot open RocksDB in " + s.data_dir + ": " + detail_of(store.error()));
  return std::shared_ptr<adapters::kv_store>{*store};
}

caf::expected<std::shared_ptr<adapters::kv_store>> open_postgres(const config::settings& s,
                                                                 prometheus::Registry& registry) {
  auto& latency = prometheus::BuildHistogram()
                      .Name("tessera_postgres_commit_duration_seconds")
                      .Help("PostgreSQL commit latency of one group-commit batch (one pipeline)")
                      .Register(registry)
                      .Add({}, adapters::latency_buckets());
  auto& batch = prometheus::BuildHistogram()
                    .Name("tessera_postgres_commit_batch_ops")
                    .Help("Writes and deletes in one PostgreSQL commit (group commit)")
                    .Register(registry)
                    .Add({}, batch_buckets());
  auto& pool = prometheus::BuildGauge()
                   .Name("tessera_postgres_pool_connections")
                   .Help("PostgreSQL connections lent now, and callers waiting for one")
                   .Register(registry);
  auto& in_use = pool.Add({{"state", "in_use"}});
  auto& waiting = pool.Add({{"state", "waiting"}});
  auto& reconnects = prometheus::BuildCounter()
                         .Name("tessera_postgres_reconnects_total")
                         .Help("Reconnection attempts of PostgreSQL connections found broken")
                         .Register(registry)
                         .Add({});
  adapters::pg_store::options o;
  o.conninfo = s.postgres_url;
  o.pool = s.postgres_pool;
  o.change_retention = s.change_retention;
  o.notify = s.cluster.enabled;  // the nodes' change feeds follow the commits
  o.on_write = [&latency, &batch](std::chrono::nanoseconds d, size_t ops) {
    latency.Observe(std::chrono::duration<double>(d).count());
    batch.Observe(static_cast<double>(ops));
  };
  o.on_pool = [&in_use, &waiting](size_t lent, size_t queued) {
    in_use.Set(static_cast<double>(lent));
    waiting.Set(static_cast<double>(queued));
  };
  o.on_reconnect = [&reconnects] { reconnects.Increment(); };
  auto store = adapters::pg_store::open(std::move(o));
  if (!store) return store.error();  // names the masked URL
  return std::shared_ptr<adapters::kv_store>{*store};
}

}  // namespace

caf::expected<std::shared_ptr<adapters::kv_store>> open_store(const config::settings& s,
                                                              prometheus::Registry& registry) {
  if (s.backend == "postgres") return open_postgres(s, registry);
  return open_rocksdb(s, registry);
}

std::string describe_store(const config::settings& s) {
  if (s.backend == "postgres")
    return "PostgreSQL at " + adapters::pg::mask_password(s.postgres_url);
  return "RocksDB in " + s.data_dir + (s.sync ? " (fsync per commit)" : "");
}

}  // namespace tessera::web
