#include "runtime/committer.hpp"

#include <caf/all.hpp>
#include <vector>

namespace tessera::runtime {

void committer(caf::blocking_actor* self, std::shared_ptr<adapters::kv_store> store,
               size_t max_batch) {
  bool running = true;
  while (running) {
    std::vector<adapters::write_op> batch;
    std::vector<caf::response_promise> waiting;
    auto take = [&](commit_atom, std::vector<adapters::write_op>& ops) {
      batch.insert(batch.end(), std::make_move_iterator(ops.begin()),
                   std::make_move_iterator(ops.end()));
      waiting.push_back(self->make_response_promise());
    };
    auto stop = [&](stop_atom) { running = false; };
    self->receive(take, stop);
    bool more = true;
    while (running && more && waiting.size() < max_batch)
      self->receive(
          take, stop, caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
    if (waiting.empty()) continue;
    auto err = store->write(batch);
    for (auto& rp : waiting) {
      if (err)
        rp.deliver(err);
      else
        rp.deliver(caf::ok_atom::value);
    }
  }
}

committer_actor spawn_committer(caf::actor_system& sys, std::shared_ptr<adapters::kv_store> store,
                                size_t max_batch) {
  return caf::actor_cast<committer_actor>(
      sys.spawn<caf::detached>(committer, std::move(store), max_batch));
}

void add_committer_messages(caf::actor_system_config& cfg) {
  cfg.add_message_type<adapters::write_op>("write_op");
  cfg.add_message_type<std::vector<adapters::write_op>>("std::vector<write_op>");
  cfg.add_message_type<adapters::change>("change");
  cfg.add_message_type<std::vector<adapters::change>>("std::vector<change>");
  cfg.add_message_type<adapters::change_page>("change_page");
}

}  // namespace tessera::runtime
