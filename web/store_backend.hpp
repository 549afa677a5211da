// Opens the durable store that storage.backend names, with its metrics: RocksDB in
// storage.data_dir, or PostgreSQL at storage.postgres_url (pool storage.postgres_pool), which
// NOTIFYs every commit when cluster.enabled (pg_store.hpp).
//
// Contract: the error of a store that cannot be opened is a whole sentence for the operator,
// naming the data dir or the URL with its password masked (never the password).
#pragma once

#include <caf/expected.hpp>
#include <memory>
#include <string>

#include "adapters/kv/kv_store.hpp"
#include "config/settings.hpp"

namespace prometheus {
class Registry;
}

namespace tessera::web {

caf::expected<std::shared_ptr<adapters::kv_store>> open_store(const config::settings& s,
                                                              prometheus::Registry& registry);

// "RocksDB in ./data (fsync per commit)" or "PostgreSQL at postgresql://u:***@h/db": for logs.
std::string describe_store(const config::settings& s);

}  // namespace tessera::web
