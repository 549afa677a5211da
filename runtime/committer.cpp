#include "runtime/committer.hpp"

#include <caf/all.hpp>
#include <vector>

#include "adapters/error.hpp"

namespace tessera::runtime {

void committer(caf::blocking_actor* self, std::shared_ptr<adapters::kv_store> store,
               size_t max_batch) {
  bool running = true;
  while (running) {
    std::vector<adapters::write_op> batch;
    std::vector<caf::response_promise> waiting;
    std::vector<size_t> ends;  // where each commit's ops end in `batch`
    auto take = [&](commit_atom, std::vector<adapters::write_op>& ops) {
      batch.insert(batch.end(), std::make_move_iterator(ops.begin()),
                   std::make_move_iterator(ops.end()));
      waiting.push_back(self->make_response_promise());
      ends.push_back(batch.size());
    };
    auto stop = [&](stop_atom) { running = false; };
    self->receive(take, stop);
    bool more = true;
    while (running && more && waiting.size() < max_batch)
      self->receive(
          take, stop, caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
    if (waiting.empty()) continue;
    auto err = store->write(batch);
    if (code_of(err) == errc::conflict && waiting.size() > 1) {
      // One commit's condition failed and nothing was written: each commit on its own, so
      // only the one whose condition fails is refused.
      size_t begin = 0;
      for (size_t i = 0; i < waiting.size(); ++i) {
        std::vector<adapters::write_op> own(
            std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(begin)),
            std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(ends[i])));
        begin = ends[i];
        auto own_err = store->write(own);
        if (own_err)
          waiting[i].deliver(own_err);
        else
          waiting[i].deliver(caf::ok_atom::value);
      }
      continue;
    }
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
