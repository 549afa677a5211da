// For unit tests only: a storage directory over a throwaway RocksDB (removed afterwards), with
// its group committer, an actor system with every message an atomic run sends, and `ask` for a
// blocking request with a 5 s deadline.
#pragma once

#include <unistd.h>

#include <caf/all.hpp>
#include <filesystem>
#include <string>

#include "actors/sandbox/messages.hpp"
#include "actors/storage/storage_directory.hpp"
#include "adapters/error.hpp"
#include "adapters/kv/rocks_store.hpp"
#include "runtime/committer.hpp"
#include "runtime/system.hpp"

namespace tessera::storage {

struct test_storages {
  std::filesystem::path data_dir =
      std::filesystem::temp_directory_path() /
      ("tessera-storages-test-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
  std::shared_ptr<adapters::kv_store> store =
      *adapters::rocks_store::open({data_dir.string(), /*sync=*/false, nullptr});
  std::shared_ptr<prometheus::Registry> registry = adapters::make_metrics_registry();
  runtime::actor_metrics metrics{*registry};
  runtime::system_config cfg{
      2, {add_storage_messages, runtime::add_committer_messages, sandbox::add_sandbox_messages}};
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  runtime::committer_actor committer = runtime::spawn_committer(sys, store);
  directory_impl storages = sys.spawn(
      storage_directory,
      storage_env{store, std::chrono::seconds(30), nullptr, committer, std::chrono::seconds(5), {}},
      metrics.for_kind("s"));

  template <class T, class Handle, class... Ts>
  caf::expected<T> ask(const Handle& dst, Ts&&... xs) {
    caf::expected<T> out = make_error(errc::internal, "no reply");
    self->request(dst, std::chrono::seconds(5), std::forward<Ts>(xs)...)
        .receive([&](T& r) { out = std::move(r); }, [&](caf::error& e) { out = std::move(e); });
    return out;
  }

  ~test_storages() {
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
    caf::anon_send(committer, runtime::stop_atom::value);
    std::filesystem::remove_all(data_dir);
  }
};

}  // namespace tessera::storage
