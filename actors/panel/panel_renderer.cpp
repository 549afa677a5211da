#include "actors/panel/panel_renderer.hpp"

#include <caf/all.hpp>

#include "actors/panel/panel_ops.hpp"
#include "actors/sandbox/messages.hpp"
#include "adapters/error.hpp"

namespace tessera::panel {
namespace {

using clock = std::chrono::steady_clock;
using json = nlohmann::json;

// A string member of an untrusted answer ("" when missing or not a string).
std::string string_member(const json& answer, const char* key) {
  if (!answer.is_object()) return {};
  auto it = answer.find(key);
  return it != answer.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

std::string html_reply(const std::string& html, int64_t version) {
  return json{{"html", html}, {"version", version}}.dump();
}

}  // namespace

// The cache is served only after reading that the bound storages are still at the versions it
// showed: the change notice can lose the race with a client's next request, and a client that
// wrote a storage must see its write in the next render.
caf::result<std::string> panel_renderer::render() {
  auto rp = self_->make_response_promise<std::string>();
  if (!cache_valid_) {
    waiters_.push_back(rp);
    start();
    return rp;
  }
  read([this, rp](caf::expected<storage::snapshot> s) mutable {
    if (s && cache_valid_ && storage::versions_of(*s) == cache_versions_) {
      if (cache_.ok)
        rp.deliver(html_reply(cache_.body, cache_.version));
      else
        rp.deliver(make_error(errc::sandbox_failed, cache_.body));
      return;
    }
    if (s && cache_valid_) changed();  // what the change notice will say
    waiters_.push_back(rp);
    start();
  });
  return rp;
}

void panel_renderer::changed() {
  if (rendering_ && generation_ != render_generation_ && env_.metrics)
    env_.metrics->count_coalesced();  // a render of a newer state is already due
  ++generation_;
  cache_valid_ = false;
  if (watched()) start();
}

bool panel_renderer::shows(const std::string& storage_id, int64_t version) const {
  if (!cache_valid_) return false;
  auto it = cache_versions_.find(storage_id);
  return it != cache_versions_.end() && it->second == version;
}

void panel_renderer::retry() {
  retry_pending_ = false;
  if (!cache_valid_ && watched()) start();
}

int64_t panel_renderer::committed(const storage::snapshot& s, const json& answer,
                                  uint64_t generation) {
  bool current = generation_ == generation && !rendering_;
  auto version = current ? stamp(version_of(s)) : version_of(s);
  auto html = answer.find("html");
  if (current && html != answer.end() && html->is_string()) {
    rendered out{true, version, html->get<std::string>()};
    remember(out, storage::versions_of(s));
    publish(out);
  }
  return version;
}

void panel_renderer::fail_waiting(const caf::error& err) {
  for (auto& w : waiters_) w.deliver(err);
  waiters_.clear();
}

bool panel_renderer::watched() const { return env_.watched && env_.watched(rec_.id); }

int64_t panel_renderer::stamp(int64_t computed) {
  last_version_ = computed >= last_version_ ? computed : last_version_ + 1;
  return last_version_;
}

int64_t panel_renderer::version_of(const storage::snapshot& s) const {
  int64_t v = rec_.version;
  for (auto& [_, entry] : s) v += entry.version;
  return v;
}

void panel_renderer::retry_later() {
  if (retry_pending_ || !watched()) return;
  retry_pending_ = true;
  self_->delayed_send(self_, std::chrono::seconds(1), retry_atom::value);
}

void panel_renderer::read(std::function<void(caf::expected<storage::snapshot>)> then) {
  storage::read_snapshot(self_, env_.atomic.storages, env_.atomic.request_timeout, rec_.storage_ids,
                         std::move(then));
}

void panel_renderer::start() {
  if (rendering_) return;  // done() starts another if the state moved on
  rendering_ = true;
  render_generation_ = generation_;
  auto started = clock::now();
  read([this, started](caf::expected<storage::snapshot> s) {
    if (!s) return done(started, {}, s.error(), {});
    auto version = stamp(version_of(*s));
    auto versions = storage::versions_of(*s);
    sandbox::call c{sandbox::call_kind::render, call_body(rec_, *s, nullptr, nullptr),
                    call_timeout_ms(rec_), 0, warm_key(rec_)};
    self_
        ->request(env_.atomic.sandbox, env_.atomic.call_timeout, sandbox::run_atom::value,
                  std::move(c))
        .then(
            [this, started, version, versions](sandbox::call_result& r) {
              rendered out{sandbox::is_ok(r), version, {}};
              if (out.ok) {
                out.body = string_member(json::parse(r.body, nullptr, false), "html");
              } else {
                auto answer = json::parse(r.body, nullptr, false);
                if (answer.is_object()) answer["version"] = version;
                out.body = answer.dump();
              }
              done(started, std::move(out), {}, versions);
            },
            [this, started](caf::error& err) { done(started, {}, err, {}); });
  });
}

void panel_renderer::done(clock::time_point started, rendered out, caf::error err,
                          std::map<std::string, int64_t> versions) {
  rendering_ = false;
  auto kind = out.ok ? std::string{} : sandbox::error_kind(out.body);
  if (env_.metrics)
    env_.metrics->count_render(err      ? std::string{to_string(code_of(err))}
                               : out.ok ? "ok"
                                        : kind,
                               clock::now() - started);
  auto waiting = std::move(waiters_);
  waiters_.clear();
  bool transient = !err && (kind == "overloaded" || kind == "unavailable");
  auto failure = err ? err : make_error(errc::sandbox_failed, out.body);
  if (err || transient) {
    // Not cached and not published: subscribers keep the last good render until a retry.
    for (auto& w : waiting) w.deliver(failure);
    retry_later();
  } else {
    if (generation_ == render_generation_) remember(out, std::move(versions));
    for (auto& w : waiting) {
      if (out.ok)
        w.deliver(html_reply(out.body, out.version));
      else
        w.deliver(failure);
    }
    publish(out);
  }
  if (watched() && generation_ != render_generation_) start();
}

void panel_renderer::remember(const rendered& out, std::map<std::string, int64_t> versions) {
  cache_ = out;
  cache_versions_ = std::move(versions);
  cache_valid_ = true;
}

void panel_renderer::publish(const rendered& out) {
  if (!env_.sink || !watched()) return;
  env_.sink({out.ok ? render_event::kind::render : render_event::kind::render_error, rec_.id,
             out.version, out.body});
}

}  // namespace tessera::panel
