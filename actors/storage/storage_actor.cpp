#include "actors/storage/storage_actor.hpp"

#include <prometheus/counter.h>

#include <algorithm>
#include <caf/all.hpp>
#include <deque>
#include <functional>

#include "actors/storage/storage_owner.hpp"
#include "adapters/error.hpp"
#include "runtime/committer.hpp"
#include "runtime/off_scheduler.hpp"

namespace tessera::storage {
namespace {

using promise = caf::typed_response_promise<storage_record>;

// One storage actor's state: the owner, and the work waiting while a commit or a transaction
// step is in flight (busy). Everything runs on the actor.
class storage_state {
 public:
  storage_state(caf::event_based_actor* self, storage_env env, directory_impl directory,
                std::string id)
      : self_(self),
        env_(std::move(env)),
        directory_(std::move(directory)),
        owner_(std::move(id)) {}

  uint64_t handled = 0;  // messages from the directory handled so far

  bool idle() const { return !busy_ && queue_.empty(); }
  std::chrono::milliseconds idle_passivate() const { return env_.idle_passivate; }
  const std::string& id() const { return owner_.id(); }

  caf::result<storage_record> read() {
    refresh();
    auto rp = self_->make_response_promise<storage_record>();
    later([this, rp]() mutable {
      auto r = owner_.read();
      if (r)
        rp.deliver(std::move(*r));
      else
        rp.deliver(fail(std::move(r.error())));
    });
    return rp;
  }

  // Another node wrote this storage: read it again in its turn, telling the watchers.
  void changed_elsewhere() {
    later([this] { load(true); });
  }

  using clock = std::chrono::steady_clock;

  // A write computed on the state when its turn comes (after the writes queued before it). If
  // that turn comes after `due`, it is answered `timeout` and writes nothing.
  caf::result<storage_record> write(std::function<caf::expected<change>(storage_owner&)> make,
                                    clock::time_point due = clock::time_point::max()) {
    refresh();
    auto rp = self_->make_response_promise<storage_record>();
    queue_.push_back({std::move(make), {}, rp, due});
    pump();
    return rp;
  }

  // A transaction step (transaction.hpp), in its turn: check the version, hand T the write
  // ops, and serve nothing else until T decides.
  void prepare(caf::actor txn, int64_t expected, std::string data, int64_t lease_ms) {
    refresh();
    later([=, this] {
      auto step = owner_.prepare(expected, data);
      if (!step) {
        self_->send(txn, refused_atom::value, owner_.id(), std::move(step.error()));
        return;
      }
      auto pending = std::make_shared<std::optional<change>>(std::move(*step));
      std::vector<adapters::write_op> ops;
      if (*pending) ops = std::move((*pending)->ops);  // apply() needs only the record
      busy_ = true;
      self_->request(txn, lease(lease_ms), prepared_atom::value, owner_.id(), std::move(ops))
          .then(
              [=, this](bool committed) {
                if (committed && *pending) {
                  if (env_.commits) env_.commits->Increment();
                  owner_.apply(std::move(**pending));
                  changed();
                }
                resume();
              },
              [=, this](caf::error& err) { undecided(err); });
    });
  }

  // Locked until T answers with the record it committed (version 0: unchanged).
  void lock(caf::actor txn, int64_t lease_ms) {
    refresh();
    later([=, this] {
      auto current = owner_.read();
      if (!current && code_of(current.error()) != errc::not_found) {
        self_->send(txn, refused_atom::value, owner_.id(), current.error());  // unreadable
        return;
      }
      storage_record held = current ? *current : owner_.absent();
      busy_ = true;
      self_->request(txn, lease(lease_ms), locked_atom::value, std::move(held))
          .then(
              [=, this](storage_record& next) {
                if (next.version != 0) {
                  if (env_.commits) env_.commits->Increment();
                  owner_.apply_committed(std::move(next));
                  changed();
                }
                resume();
              },
              [=, this](caf::error& err) { undecided(err); });
    });
  }

  // An absent storage holds nothing worth keeping: after a not_found it offers to retire at
  // once, so requests for missing ids cannot pile up live actors for a whole idle period.
  caf::error fail(caf::error err) {
    if (code_of(err) == errc::not_found && idle())
      self_->send(directory_, passivate_atom::value, owner_.id(), handled);
    return err;
  }

  // `within_ms` from now, clamped to [0, a day] so that the sum cannot overflow.
  static clock::time_point due_in(int64_t within_ms) {
    return clock::now() + std::chrono::milliseconds(std::clamp<int64_t>(within_ms, 0, 86'400'000));
  }

  // Reads the storage's state off the scheduler (env.readers); what arrives meanwhile waits.
  // Reads the record from the store, and serves what waits. `announce`: tell the watchers
  // when the version changed (another server wrote since this one read it).
  void load(bool announce = false) {
    busy_ = true;
    auto before = owner_.version();
    runtime::off_scheduler(
        self_, env_.readers, env_.commit_timeout,
        [store = env_.store, id = owner_.id()] { return storage_owner::fetch(*store, id); })
        .then(
            [this, announce, before](stored_storage& found) {
              owner_.load(std::move(found));
              if (announce && owner_.version() != before) changed();
              resume();
            },
            [this](caf::error& err) {
              owner_.load(std::move(err));
              resume();
            });
  }

 private:
  // A load that failed (the store unreachable, a query cancelled, an unreadable record) is
  // tried again by the next request, which waits for it.
  void refresh() {
    if (idle() && owner_.load_failed()) load();
  }

  struct item {
    std::function<caf::expected<change>(storage_owner&)> write;  // a write, or
    std::function<void()> other;                                 // a read or a step
    promise rp;                                                  // a write's requester
    clock::time_point due = clock::time_point::max();            // a write's last turn
  };

  // Runs `f` now if nothing is in flight or waiting, else in its turn.
  void later(std::function<void()> f) {
    if (idle()) return f();
    queue_.push_back({{}, std::move(f), {}});
  }

  void resume() {
    busy_ = false;
    pump();
  }

  // Serves the queue in order until something is in flight. Consecutive writes form one group:
  // each is computed on the state the ones before it left, and all go to the committer as one
  // batch; each is acknowledged once the batch is durable. Nothing reads the state while the
  // group is in flight (reads wait their turn), so no one sees a change before it is durable.
  void pump() {
    while (!busy_ && !queue_.empty()) {
      if (!queue_.front().write) {
        auto f = std::move(queue_.front().other);
        queue_.pop_front();
        f();  // may start a step (busy)
        continue;
      }
      auto acks = std::make_shared<std::vector<std::pair<promise, storage_record>>>();
      std::vector<adapters::write_op> ops;
      while (!queue_.empty() && queue_.front().write) {
        auto it = std::move(queue_.front());
        queue_.pop_front();
        if (clock::now() > it.due) {  // its requester has given up on it by now
          it.rp.deliver(make_error(errc::timeout, "storage '" + owner_.id() +
                                                      "' was busy past the write's deadline; "
                                                      "nothing was written"));
          continue;
        }
        auto c = it.write(owner_);
        if (!c) {
          it.rp.deliver(fail(std::move(c.error())));
          continue;
        }
        for (auto& op : c->ops) add_op(ops, std::move(op));
        acks->emplace_back(std::move(it.rp), std::move(c->reply));
        owner_.apply(std::move(*c));  // ahead of disk until the batch is durable
      }
      if (!acks->empty()) commit(std::move(acks), std::move(ops));
    }
  }

  // A later write of the same key replaces an earlier one in the batch; the earlier one's
  // condition stays (the version the store holds before the batch).
  static void add_op(std::vector<adapters::write_op>& ops, adapters::write_op op) {
    auto same = std::find_if(ops.begin(), ops.end(),
                             [&](const adapters::write_op& o) { return o.key == op.key; });
    if (same == ops.end()) return ops.push_back(std::move(op));
    same->value = std::move(op.value);
    same->erase = op.erase;
  }

  void commit(std::shared_ptr<std::vector<std::pair<promise, storage_record>>> acks,
              std::vector<adapters::write_op> ops) {
    busy_ = true;
    self_->request(env_.committer, env_.commit_timeout, runtime::commit_atom::value, std::move(ops))
        .then(
            [=, this](caf::ok_atom) {
              if (env_.commits) env_.commits->Increment(static_cast<double>(acks->size()));
              for (auto& [rp, reply] : *acks) rp.deliver(std::move(reply));
              changed();
              resume();
            },
            [=, this](caf::error& err) {
              for (auto& [rp, _] : *acks) rp.deliver(err);
              // The store's fence: another server wrote since this one read, and nothing was
              // written. Read again in place; what waits is served on the fresh record.
              if (code_of(err) == errc::conflict) return load(true);
              // Memory is ahead of disk, and a timed-out batch may still land: let the next
              // activation read what the store holds.
              give_up(err);
            });
  }

  // Quits; what waits gets `unavailable` rather than a broken promise.
  void give_up(const caf::error& err) {
    auto gone = make_error(errc::unavailable, "storage '" + owner_.id() +
                                                  "' is reloading after a failed write; retry");
    for (auto& it : queue_)
      if (it.write) it.rp.deliver(gone);
    queue_.clear();
    self_->quit(err);
  }

  // An error from the transaction: request_receiver_down means it was gone before this step
  // handed it anything, so nothing was written; anything else leaves the outcome unknown.
  void undecided(const caf::error& err) {
    if (code_of(err) == errc::conflict) return load(true);  // fenced off: nothing was written
    if (code_of(err) != errc::unavailable) return give_up(err);
    resume();
  }

  // How long a step waits for its transaction: at least the transaction's own deadline, so a
  // storage never gives up its lock while the transaction may still commit over it.
  std::chrono::milliseconds lease(int64_t lease_ms) const {
    return std::max(env_.commit_timeout,
                    std::chrono::milliseconds(lease_ms) + std::chrono::seconds(5));
  }

  void changed() {
    if (env_.changes) self_->send(env_.changes, changed_atom::value, owner_.id(), owner_.version());
  }

  caf::event_based_actor* self_;
  storage_env env_;
  directory_impl directory_;
  storage_owner owner_;
  bool busy_ = false;  // a write batch or a transaction step is in flight
  std::deque<item> queue_;
};

}  // namespace

caf::behavior storage_actor(caf::event_based_actor* self, storage_env env, directory_impl directory,
                            std::string id) {
  auto st = std::make_shared<storage_state>(self, std::move(env), directory, std::move(id));
  st->load();
  auto idle = st->idle_passivate();
  return {
      [st](read_atom, const std::string&) {
        ++st->handled;
        return st->read();
      },
      [st](create_atom, const std::string&, std::string& data) {
        ++st->handled;
        return st->write([data = std::move(data)](storage_owner& o) { return o.create(data); });
      },
      [st](replace_atom, const std::string&, std::string& data, version_list& m) {
        ++st->handled;
        return st->write([data = std::move(data), m = std::move(m)](storage_owner& o) {
          return o.replace(data, m);
        });
      },
      [st](replace_atom, const std::string&, std::string& data, version_list& m,
           int64_t within_ms) {
        ++st->handled;
        return st->write([data = std::move(data),
                          m = std::move(m)](storage_owner& o) { return o.replace(data, m); },
                         storage_state::due_in(within_ms));
      },
      [st](merge_atom, const std::string&, std::string& patch, version_list& m) {
        ++st->handled;
        return st->write([patch = std::move(patch), m = std::move(m)](storage_owner& o) {
          return o.merge(patch, m);
        });
      },
      [st](erase_atom, const std::string&, version_list& m) {
        ++st->handled;
        return st->write([m = std::move(m)](storage_owner& o) { return o.erase(m); });
      },
      [st, self](prepare_atom, const std::string&, int64_t expected, std::string& data,
                 int64_t lease_ms) {
        ++st->handled;
        st->prepare(caf::actor_cast<caf::actor>(self->current_sender()), expected, std::move(data),
                    lease_ms);
      },
      [st, self](lock_atom, const std::string&, int64_t lease_ms) {
        ++st->handled;
        st->lock(caf::actor_cast<caf::actor>(self->current_sender()), lease_ms);
      },
      [st](refresh_atom, const std::string&) {
        ++st->handled;
        st->changed_elsewhere();
      },
      [self](retire_atom) { self->quit(); },
      [st, self, directory](passivate_atom) {
        if (st->idle()) self->send(directory, passivate_atom::value, st->id(), st->handled);
      },
      caf::after(idle) >>
          [st, self, directory] {
            if (st->idle()) self->send(directory, passivate_atom::value, st->id(), st->handled);
          },
  };
}

}  // namespace tessera::storage
