#include "actors/storage/storage_actor.hpp"

#include <prometheus/counter.h>

#include <algorithm>
#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <optional>

#include "actors/storage/storage_codec.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"
#include "runtime/committer.hpp"

namespace tessera::storage {
namespace {

caf::expected<nlohmann::json> parse_object(const std::string& text) {
  auto value = nlohmann::json::parse(text, nullptr, false);
  if (value.is_discarded() || !value.is_object())
    return make_error(errc::invalid_argument, "data must be a JSON object");
  return value;
}

bool matches(const version_list& if_match, int64_t version) {
  return if_match.empty() || std::find(if_match.begin(), if_match.end(), version) != if_match.end();
}

// A change computed from the current state, not yet durable.
struct change {
  std::optional<storage_record> next;  // nullopt: the storage is erased
  nlohmann::json document;             // next->data parsed
  storage_record reply;                // what the requester gets once it is durable
  adapters::write_op op;
};

// The state of one storage and the rules for changing it. Runs on the storage actor.
class storage_owner {
 public:
  storage_owner(const storage_env& env, std::string id) : id_(std::move(id)) {
    auto value = env.store->get(storage_key(id_));
    if (!value) {
      load_error_ = std::move(value.error());
    } else if (*value) {
      record_ = decode(id_, **value);
      if (record_) document_ = nlohmann::json::parse(record_->data, nullptr, false);
      if (!record_ || !document_.is_object())
        load_error_ = make_error(errc::storage_failure, "unreadable record for " + id_);
    }
  }

  const std::string& id() const { return id_; }

  caf::expected<storage_record> read() const {
    if (load_error_) return load_error_;
    if (!record_) return not_found();
    return *record_;
  }

  caf::expected<change> create(const std::string& data) const {
    if (load_error_) return load_error_;
    if (record_) return make_error(errc::conflict, "storage '" + id_ + "' already exists");
    auto value = parse_object(data);
    if (!value) return value.error();
    return with_data(next_record(storage_record{id_, {}, 0, 0, 0}, {}, runtime::now_ms()),
                     std::move(*value));
  }

  caf::expected<change> replace(const std::string& data, const version_list& if_match) const {
    if (auto err = check_write(if_match)) return err;
    auto value = parse_object(data);
    if (!value) return value.error();
    return with_data(next_version(), std::move(*value));
  }

  caf::expected<change> merge(const std::string& patch, const version_list& if_match) const {
    if (auto err = check_write(if_match)) return err;
    auto changes = parse_object(patch);
    if (!changes) return changes.error();
    auto merged = document_;
    for (auto& [key, value] : changes->items()) {
      if (value.is_null())
        merged.erase(key);
      else
        merged[key] = std::move(value);
    }
    return with_data(next_version(), std::move(merged));
  }

  // The change a transaction step makes: the storage must be at `expected` (0: absent); an
  // empty `data` only checks that (nullopt: nothing to write).
  caf::expected<std::optional<change>> prepare(int64_t expected, const std::string& data) const {
    if (load_error_) return load_error_;
    int64_t current = record_ ? record_->version : 0;
    if (current != expected)
      return make_error(errc::conflict, "storage '" + id_ + "' is at version " +
                                            std::to_string(current) + ", not " +
                                            std::to_string(expected));
    if (data.empty()) return std::optional<change>{};
    auto c = record_ ? replace(data, {}) : create(data);
    if (!c) return c.error();
    return std::optional<change>{std::move(*c)};
  }

  int64_t version() const { return record_ ? record_->version : 0; }

  // Makes a record a locked transaction committed the current state.
  void apply_committed(storage_record r) {
    document_ = nlohmann::json::parse(r.data, nullptr, false);
    record_ = std::move(r);
  }

  caf::expected<change> erase(const version_list& if_match) const {
    if (auto err = check_write(if_match)) return err;
    return change{std::nullopt, nullptr, *record_, {storage_key(id_), {}, true}};
  }

  // Makes a durable change the current state.
  void apply(change c) {
    record_ = std::move(c.next);
    document_ = std::move(c.document);
  }

 private:
  caf::error check_write(const version_list& if_match) const {
    if (load_error_) return load_error_;
    if (!record_) return not_found();
    if (!matches(if_match, record_->version))
      return make_error(errc::precondition_failed,
                        "storage '" + id_ + "' is at version " + std::to_string(record_->version));
    return {};
  }

  caf::error not_found() const {
    return make_error(errc::not_found, "storage '" + id_ + "' does not exist");
  }

  // The same rule a locked transaction uses (storage_codec.hpp); with_data() sets the data.
  storage_record next_version() const { return next_record(*record_, {}, runtime::now_ms()); }

  change with_data(storage_record next, nlohmann::json document) const {
    next.data = document.dump();
    adapters::write_op op{storage_key(id_), encode(next), false};
    auto reply = next;
    return change{std::move(next), std::move(document), std::move(reply), std::move(op)};
  }

  std::string id_;
  std::optional<storage_record> record_;  // nullopt: absent
  nlohmann::json document_;               // record_->data parsed, to merge without re-parsing
  caf::error load_error_;                 // RocksDB could not be read at activation
};

}  // namespace

caf::behavior storage_actor(caf::event_based_actor* self, storage_env env, caf::actor directory,
                            std::string id) {
  auto owner = std::make_shared<storage_owner>(env, std::move(id));
  auto handled = std::make_shared<uint64_t>(0);  // messages from the directory handled so far
  // An absent storage holds nothing worth keeping: after a not_found it offers to retire at
  // once, so requests for missing ids cannot pile up live actors for a whole idle period.
  auto fail = [self, directory, owner, handled](caf::error err) {
    if (code_of(err) == errc::not_found)
      self->send(directory, passivate_atom::value, owner->id(), *handled);
    return err;
  };
  auto changed = [self, env, owner] {
    if (env.changes) self->send(env.changes, changed_atom::value, owner->id(), owner->version());
  };
  auto commit = [self, env, owner, fail,
                 changed](caf::expected<change> c) -> caf::result<storage_record> {
    if (!c) return fail(std::move(c.error()));
    auto rp = self->make_response_promise<storage_record>();
    auto pending = std::make_shared<change>(std::move(*c));
    std::vector<adapters::write_op> ops;
    ops.push_back(std::move(pending->op));  // moved, not copied: the record can be large
    self->request(env.committer, env.commit_timeout, runtime::commit_atom::value, std::move(ops))
        .await(
            [=](caf::ok_atom) mutable {
              if (env.commits) env.commits->Increment();
              auto reply = pending->reply;
              owner->apply(std::move(*pending));
              rp.deliver(std::move(reply));
              changed();
            },
            [=](caf::error& err) mutable {
              rp.deliver(err);
              // A timed-out commit may still land: let the next activation read the truth.
              if (code_of(err) != errc::storage_failure) self->quit(err);
            });
    return rp;
  };
  // A transaction step (transaction.hpp): check the version, hand T the write op, wait for T.
  // How long a step waits for its transaction: at least the transaction's own deadline, so a
  // storage never gives up its lock while the transaction may still commit over it.
  auto lease = [env](int64_t lease_ms) {
    return std::max(env.commit_timeout,
                    std::chrono::milliseconds(lease_ms) + std::chrono::seconds(5));
  };
  // An error from the transaction: request_receiver_down means it was gone before this step
  // handed it anything, so nothing was written; anything else leaves the outcome unknown.
  auto undecided = [self](const caf::error& err) {
    if (code_of(err) != errc::unavailable) self->quit(err);
  };
  auto prepare = [self, env, owner, changed, lease, undecided](
                     caf::actor txn, int64_t expected, const std::string& data, int64_t lease_ms) {
    auto step = owner->prepare(expected, data);
    if (!step) {
      self->send(txn, refused_atom::value, owner->id(), std::move(step.error()));
      return;
    }
    auto pending = std::make_shared<std::optional<change>>(std::move(*step));
    std::vector<adapters::write_op> ops;
    if (*pending) ops.push_back(std::move((*pending)->op));  // apply() needs only the record
    self->request(txn, lease(lease_ms), prepared_atom::value, owner->id(), std::move(ops))
        .await(
            [=](bool committed) {
              if (!committed || !*pending) return;
              if (env.commits) env.commits->Increment();
              owner->apply(std::move(**pending));
              changed();
            },
            [=](caf::error& err) { undecided(err); });
  };
  return {
      [=](read_atom, const std::string&) -> caf::result<storage_record> {
        ++*handled;
        auto r = owner->read();
        if (!r) return fail(std::move(r.error()));
        return std::move(*r);
      },
      [=](create_atom, const std::string&, const std::string& data) {
        ++*handled;
        return commit(owner->create(data));
      },
      [=](replace_atom, const std::string&, const std::string& data, const version_list& m) {
        ++*handled;
        return commit(owner->replace(data, m));
      },
      [=](merge_atom, const std::string&, const std::string& patch, const version_list& m) {
        ++*handled;
        return commit(owner->merge(patch, m));
      },
      [=](erase_atom, const std::string&, const version_list& m) {
        ++*handled;
        return commit(owner->erase(m));
      },
      [=](prepare_atom, const std::string&, int64_t expected, const std::string& data,
          int64_t lease_ms) {
        ++*handled;
        prepare(caf::actor_cast<caf::actor>(self->current_sender()), expected, data, lease_ms);
      },
      [=](lock_atom, const std::string&, int64_t lease_ms) {
        ++*handled;
        // Locked until T answers with the record it committed (version 0: unchanged).
        auto txn = caf::actor_cast<caf::actor>(self->current_sender());
        auto current = owner->read();
        if (!current && code_of(current.error()) != errc::not_found) {
          self->send(txn, refused_atom::value, owner->id(), current.error());  // unreadable
          return;
        }
        storage_record held = current ? *current : storage_record{owner->id(), "{}", 0, 0, 0};
        self->request(txn, lease(lease_ms), locked_atom::value, std::move(held))
            .await(
                [=](storage_record& next) {
                  if (next.version == 0) return;
                  if (env.commits) env.commits->Increment();
                  owner->apply_committed(std::move(next));
                  changed();
                },
                [=](caf::error& err) { undecided(err); });
      },
      [=](retire_atom) { self->quit(); },
      caf::after(env.idle_passivate) >>
          [=] { self->send(directory, passivate_atom::value, owner->id(), *handled); },
  };
}

}  // namespace tessera::storage
