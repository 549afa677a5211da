#include "runtime/cluster/membership.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <caf/all.hpp>
#include <csignal>
#include <set>
#include <utility>

#include "adapters/error.hpp"
#include "adapters/pg/member_table.hpp"
#include "runtime/log.hpp"

namespace tessera::runtime::cluster {
namespace {

using namespace std::chrono;
using tick_atom = caf::atom_constant<caf::atom("mtick")>;
using expire_atom = caf::atom_constant<caf::atom("mexpire")>;
using claim_now_atom = caf::atom_constant<caf::atom("mclaim")>;

// What the actor handles: its clients' protocol and its own timers.
using membership_impl =
    membership_actor::extend<caf::reacts_to<tick_atom>, caf::reacts_to<expire_atom>,
                             caf::reacts_to<claim_now_atom>>;

member member_of(const adapters::pg::member_row& r) {
  return {r.name, r.generation, r.state, r.address, r.http, r.heartbeat_at_ms, false};
}

struct membership_state {
  std::shared_ptr<adapters::pg::member_table> table;
  membership_config cfg;
  member_view view;
  std::vector<caf::actor> subscribers;
  steady_clock::time_point renewed;
  steady_clock::time_point quiet_until;  // failures are logged at most once per lease
  bool expire_pending = false;
  std::set<std::string> to_claim;  // claims queued since the last statement
  bool claim_pending = false;
  static inline const char* name = "cluster_membership";

  bool self_alive() const { return steady_clock::now() - renewed < cfg.lease; }

  // Takes the leases queued, in one statement.
  void claim() {
    claim_pending = false;
    if (to_claim.empty()) return;
    std::vector<std::string> keys{to_claim.begin(), to_claim.end()};
    to_claim.clear();
    auto got = table->claim(keys, cfg.name, view.generation);
    if (!got) return failed("claiming leases", got.error());
    size_t takeovers = 0;
    for (auto& c : *got)
      if (c.previous != 0) ++takeovers;
    if (cfg.metrics) {
      cfg.metrics->lease_claims->Increment(static_cast<double>(got->size()));
      cfg.metrics->lease_takeovers->Increment(static_cast<double>(takeovers));
    }
  }

  void failed(std::string_view step, const caf::error& err) {
    if (steady_clock::now() < quiet_until) return;
    quiet_until = steady_clock::now() + cfg.lease;
    log_warning("cluster: " + std::string{step} + " failed (" + detail_of(err) +
                "); retrying every " + std::to_string(cfg.heartbeat.count()) + " ms");
  }

  // Renews the heartbeat; joins again as a new member when this one was declared dead.
  void renew() {
    auto ok = table->heartbeat(view.generation);
    if (!ok) {
      cfg.metrics->heartbeat_failures->Increment();
      return failed("the heartbeat", ok.error());
    }
    if (*ok) {
      renewed = steady_clock::now();
      return;
    }
    auto members = table->list();  // who replaced it, before taking the name back
    if (!members) return failed("reading the members", members.error());
    for (auto& m : members->members)
      if (m.state == "alive" && m.name == cfg.name && m.generation > view.generation) {
        log_error("cluster: another process joined as '" + cfg.name + "' (generation " +
                  std::to_string(m.generation) + ", " + m.address +
                  ") while this one (generation " + std::to_string(view.generation) +
                  ") was cut off; two processes must not share a node name, so this one stops");
        std::raise(SIGTERM);
        return;
      }
    log_warning("cluster: this node ('" + cfg.name + "', generation " +
                std::to_string(view.generation) +
                ") was declared dead while its heartbeat was late (paused or cut off); it "
                "joins again as a new member");
    auto gen = table->join(cfg.name, cfg.address, cfg.http);
    if (!gen) return failed("joining again", gen.error());
    view.generation = *gen;
    renewed = steady_clock::now();
    cfg.metrics->rejoins->Increment();
    log_info("cluster: joined again as generation " + std::to_string(*gen));
  }

  void expire_peers() {
    auto declared = table->expire(view.generation, cfg.lease);
    if (!declared) return failed("declaring late members dead", declared.error());
    for (auto& m : *declared) {
      cfg.metrics->declared_dead->Increment();
      log_warning("cluster: declared '" + m.name + "' (generation " + std::to_string(m.generation) +
                  ", " + m.address + ") dead: no heartbeat for " +
                  std::to_string(cfg.lease.count()) + " ms");
    }
  }

  // Reads the members; returns how long until the oldest alive peer's lease ends (or nothing).
  std::optional<milliseconds> refresh() {
    auto members = table->list();
    if (!members) {
      failed("reading the members", members.error());
      return std::nullopt;
    }
    view.members.clear();
    double joining = 0, alive = 0, dead = 0;
    std::optional<milliseconds> next_lease_end;
    for (auto& r : members->members) {
      view.members.push_back(member_of(r));
      (r.state == "alive" ? alive : r.state == "joining" ? joining : dead) += 1;
      if (r.state != "dead" && r.generation != view.generation) {
        auto left = milliseconds{r.heartbeat_at_ms + cfg.lease.count() - members->now_ms};
        if (!next_lease_end || left < *next_lease_end) next_lease_end = left;
      }
    }
    view.read_at_ms = members->now_ms;
    view.self_alive = self_alive();
    cfg.metrics->joining->Set(joining);
    cfg.metrics->alive->Set(alive);
    cfg.metrics->dead->Set(dead);
    // Every read goes out (a few members, once per heartbeat): subscribers keep the newest.
    for (auto& s : subscribers) caf::anon_send(s, view);  // typed actors anon_send to untyped
    return next_lease_end;
  }
};

membership_impl::behavior_type membership(membership_impl::stateful_pointer<membership_state> self,
                                          std::shared_ptr<adapters::pg::member_table> table,
                                          membership_config cfg, int64_t generation) {
  auto& init = self->state;
  init.table = std::move(table);
  init.cfg = std::move(cfg);
  init.view.self = init.cfg.name;
  init.view.generation = generation;
  init.renewed = steady_clock::now();
  init.refresh();
  self->send(self, tick_atom::value);
  return {
      [self](caf::get_atom) {
        self->state.view.self_alive = self->state.self_alive();
        return self->state.view;
      },
      [self](subscribe_atom, caf::actor who) {
        self->state.subscribers.push_back(who);
        caf::anon_send(who, self->state.view);
      },
      [self](activate_atom, int64_t asked) {
        auto& st = self->state;
        if (asked != st.view.generation) return false;  // asked for an earlier run
        auto replaced = st.table->activate(asked);
        if (!replaced) {
          if (code_of(replaced.error()) != errc::conflict)
            st.failed("becoming alive", replaced.error());
          return false;
        }
        for (auto g : *replaced)
          log_info("cluster: replaced this node's earlier run (generation " + std::to_string(g) +
                   ")");
        log_info("cluster: alive as '" + st.cfg.name + "', generation " + std::to_string(asked));
        st.refresh();
        return true;
      },
      [self](leave_atom) {
        auto err = self->state.table->leave(self->state.view.generation);
        if (err)
          log_warning("cluster: could not tell the others this node leaves (" + detail_of(err) +
                      "); they declare it dead after cluster.lease_ms");
        self->quit();
        return !err;
      },
      [self](tick_atom) {
        auto& st = self->state;
        st.renew();
        st.expire_peers();
        auto next = st.refresh();
        self->delayed_send(self, st.cfg.heartbeat, tick_atom::value);
        // A peer whose lease ends before the next tick is checked just after it ends.
        if (next && *next < st.cfg.heartbeat && !st.expire_pending) {
          st.expire_pending = true;
          self->delayed_send(self, std::max(*next, milliseconds{0}) + milliseconds{10},
                             expire_atom::value);
        }
      },
      [self](claim_atom, std::vector<std::string>& keys) {
        auto& st = self->state;
        st.to_claim.insert(std::make_move_iterator(keys.begin()),
                           std::make_move_iterator(keys.end()));
        // Behind the claims queued now: they all go in one statement.
        if (!std::exchange(st.claim_pending, true)) self->send(self, claim_now_atom::value);
      },
      [self](claim_now_atom) { self->state.claim(); },
      [self](expire_atom) {
        auto& st = self->state;
        st.expire_pending = false;
        st.expire_peers();
        st.refresh();
      },
  };
}

}  // namespace

std::vector<member> member_view::alive() const {
  std::vector<member> out;
  for (auto& m : members)
    if (m.state == "alive" && (m.generation != generation || self_alive)) out.push_back(m);
  return out;
}

std::string member_view::self_state() const {
  for (auto& m : members)
    if (m.generation == generation) return m.state;
  return "";
}

membership_metrics::membership_metrics(prometheus::Registry& registry) {
  auto& members = prometheus::BuildGauge()
                      .Name("tessera_cluster_members")
                      .Help("Members of the cluster's member table, by state, as this node read it")
                      .Register(registry);
  joining = &members.Add({{"state", "joining"}});
  alive = &members.Add({{"state", "alive"}});
  dead = &members.Add({{"state", "dead"}});
  heartbeat_failures = &prometheus::BuildCounter()
                            .Name("tessera_cluster_heartbeat_failures_total")
                            .Help("Heartbeats of this node that could not reach PostgreSQL")
                            .Register(registry)
                            .Add({});
  declared_dead = &prometheus::BuildCounter()
                       .Name("tessera_cluster_members_declared_dead_total")
                       .Help("Members this node declared dead once their lease ran out")
                       .Register(registry)
                       .Add({});
  rejoins = &prometheus::BuildCounter()
                 .Name("tessera_cluster_rejoins_total")
                 .Help("Times this node found itself declared dead and joined again")
                 .Register(registry)
                 .Add({});
  lease_claims = &prometheus::BuildCounter()
                      .Name("tessera_cluster_lease_claims_total")
                      .Help("Actor leases this node took (it became the owner of the key)")
                      .Register(registry)
                      .Add({});
  lease_takeovers = &prometheus::BuildCounter()
                         .Name("tessera_cluster_lease_takeovers_total")
                         .Help(
                             "Actor leases this node took over from another member (a lost "
                             "node's, or one whose keys moved here)")
                         .Register(registry)
                         .Add({});
}

caf::expected<membership_actor> join_cluster(caf::actor_system& system, membership_config cfg) {
  auto table = adapters::pg::member_table::open(cfg.conninfo, cfg.lease);
  if (!table) return table.error();
  auto generation = (*table)->join(cfg.name, cfg.address, cfg.http);
  if (!generation) return generation.error();
  log_info("cluster: joined as '" + cfg.name + "', generation " + std::to_string(*generation) +
           ", reachable at " + cfg.address);
  std::shared_ptr<adapters::pg::member_table> shared{std::move(*table)};
  auto actor =
      system.spawn<caf::detached>(membership, std::move(shared), std::move(cfg), *generation);
  return caf::actor_cast<membership_actor>(actor);
}

void add_cluster_messages(caf::actor_system_config& cfg) {
  cfg.add_message_type<member>("tessera::member");
  cfg.add_message_type<std::vector<member>>("std::vector<tessera::member>");
  cfg.add_message_type<member_view>("tessera::member_view");
}

}  // namespace tessera::runtime::cluster
