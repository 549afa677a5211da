#include "actors/storage/storage_actor.hpp"

#include <prometheus/counter.h>

#include <algorithm>
#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <optional>

#include "actors/storage/storage_codec.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"

namespace tessera::storage {
namespace {

struct storage_state {
  std::optional<storage_record> record;  // nullopt: absent
  nlohmann::json document;               // record->data parsed, kept to merge without re-parsing
  caf::error load_error;                 // set when RocksDB could not be read at activation
  uint64_t handled = 0;                  // messages from the directory handled so far
};

caf::expected<nlohmann::json> parse_object(const std::string& text) {
  auto value = nlohmann::json::parse(text, nullptr, false);
  if (value.is_discarded() || !value.is_object())
    return make_error(errc::invalid_argument, "data must be a JSON object");
  return value;
}

bool matches(const version_list& if_match, int64_t version) {
  return if_match.empty() || std::find(if_match.begin(), if_match.end(), version) != if_match.end();
}

class storage_owner {
 public:
  storage_owner(storage_env env, std::string id) : env_(std::move(env)), id_(std::move(id)) {
    auto value = env_.store->get(storage_key(id_));
    if (!value) {
      state_.load_error = std::move(value.error());
    } else if (*value) {
      state_.record = decode(id_, **value);
      if (state_.record)
        state_.document = nlohmann::json::parse(state_.record->data, nullptr, false);
      if (!state_.record || !state_.document.is_object())
        state_.load_error = make_error(errc::storage_failure, "unreadable record for " + id_);
    }
  }

  uint64_t handled() const { return state_.handled; }
  const std::string& id() const { return id_; }

  caf::result<storage_record> read() {
    if (auto err = precheck()) return err;
    if (!state_.record) return not_found();
    return *state_.record;
  }

  caf::result<storage_record> create(const std::string& data) {
    if (auto err = precheck()) return err;
    if (state_.record) return make_error(errc::conflict, "storage '" + id_ + "' already exists");
    auto value = parse_object(data);
    if (!value) return value.error();
    auto now = runtime::now_ms();
    auto text = value->dump();
    return commit(storage_record{id_, std::move(text), 1, now, now}, std::move(*value));
  }

  caf::result<storage_record> replace(const std::string& data, const version_list& if_match) {
    if (auto err = precheck_write(if_match)) return err;
    auto value = parse_object(data);
    if (!value) return value.error();
    auto text = value->dump();
    return commit(next_version(std::move(text)), std::move(*value));
  }

  caf::result<storage_record> merge(const std::string& patch, const version_list& if_match) {
    if (auto err = precheck_write(if_match)) return err;
    auto changes = parse_object(patch);
    if (!changes) return changes.error();
    auto merged = state_.document;
    for (auto& [key, value] : changes->items()) {
      if (value.is_null())
        merged.erase(key);
      else
        merged[key] = std::move(value);
    }
    auto text = merged.dump();
    return commit(next_version(std::move(text)), std::move(merged));
  }

  caf::result<storage_record> erase(const version_list& if_match) {
    if (auto err = precheck_write(if_match)) return err;
    if (auto err = env_.store->write({{storage_key(id_), std::nullopt}})) return err;
    if (env_.commits) env_.commits->Increment();
    auto erased = std::move(*state_.record);
    state_.record.reset();
    state_.document = nullptr;
    return erased;
  }

  void count_message() { ++state_.handled; }

 private:
  caf::error precheck() const { return state_.load_error; }

  caf::error precheck_write(const version_list& if_match) const {
    if (auto err = precheck()) return err;
    if (!state_.record) return not_found();
    if (!matches(if_match, state_.record->version))
      return make_error(errc::precondition_failed, "storage '" + id_ + "' is at version " +
                                                       std::to_string(state_.record->version));
    return {};
  }

  caf::error not_found() const {
    return make_error(errc::not_found, "storage '" + id_ + "' does not exist");
  }

  storage_record next_version(std::string data) const {
    auto next = *state_.record;
    next.data = std::move(data);
    next.version += 1;
    next.updated_at = std::max(runtime::now_ms(), next.updated_at);
    return next;
  }

  // Persists `next` (whose data is `document` serialized), then makes it the current state.
  caf::result<storage_record> commit(storage_record next, nlohmann::json document) {
    if (auto err = env_.store->write({{storage_key(id_), encode(next)}})) return err;
    if (env_.commits) env_.commits->Increment();
    state_.record = std::move(next);
    state_.document = std::move(document);
    return *state_.record;
  }

  storage_env env_;
  std::string id_;
  storage_state state_;
};

}  // namespace

caf::behavior storage_actor(caf::event_based_actor* self, storage_env env, caf::actor directory,
                            std::string id) {
  auto idle = env.idle_passivate;
  auto owner = std::make_shared<storage_owner>(std::move(env), std::move(id));
  return {
      [=](read_atom, const std::string&) {
        owner->count_message();
        return owner->read();
      },
      [=](create_atom, const std::string&, const std::string& data) {
        owner->count_message();
        return owner->create(data);
      },
      [=](replace_atom, const std::string&, const std::string& data, const version_list& m) {
        owner->count_message();
        return owner->replace(data, m);
      },
      [=](merge_atom, const std::string&, const std::string& patch, const version_list& m) {
        owner->count_message();
        return owner->merge(patch, m);
      },
      [=](erase_atom, const std::string&, const version_list& m) {
        owner->count_message();
        return owner->erase(m);
      },
      [=](retire_atom) { self->quit(); },
      caf::after(idle) >>
          [=] { self->send(directory, passivate_atom::value, owner->id(), owner->handled()); },
  };
}

}  // namespace tessera::storage
