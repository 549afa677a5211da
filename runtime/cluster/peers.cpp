#include "runtime/cluster/peers.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <caf/all.hpp>
#include <map>

#include "adapters/error.hpp"
#include "runtime/log.hpp"

namespace tessera::runtime::cluster {
namespace {

using redial_atom = caf::atom_constant<caf::atom("redial")>;
using gateway_atom = caf::atom_constant<caf::atom("gateway")>;
using peers_impl =
    peers_actor::extend_with<node_actor>::extend<caf::reacts_to<redial_atom, int64_t>,
                                                 caf::reacts_to<gateway_atom, caf::actor>>;

struct peer {
  std::string name;
  std::string address;
  caf::actor handle;  // its node actor, once it answered a hello (or said one, when newer)
  bool dialing = false;
  std::string why = "not reached yet";  // why it is not reached
};

struct peers_state {
  peers_config cfg;
  membership_actor membership;
  member_view view;
  std::map<int64_t, peer> peers;  // the alive members but this node, by generation
  // Newer members that said hello before this node's view showed them alive, by generation.
  std::map<int64_t, std::pair<std::string, caf::actor>> introduced;
  bool activating = false;
  caf::actor gateway;  // this node's published node actor
  static inline const char* name = "cluster_peers";
};

using self_ptr = peers_impl::stateful_pointer<peers_state>;

// The node actors this node is connected to, by member name, for the placement.
void publish_routes(const self_ptr& self) {
  if (!self->state.cfg.place) return;
  std::map<std::string, caf::actor> by_name;
  std::vector<caf::node_id> accepted;
  for (auto& [_, p] : self->state.peers)
    if (p.handle) {
      by_name[p.name] = p.handle;
      accepted.push_back(p.handle.node());
    }
  for (auto& [_, introduced] : self->state.introduced)
    if (introduced.second) accepted.push_back(introduced.second.node());
  self->state.cfg.place->set_gateways(std::move(by_name), std::move(accepted));
}

bool older(const self_ptr& self, int64_t generation) {
  return generation < self->state.view.generation;
}

// A joining node that reached every older alive member asks to become alive.
void maybe_activate(self_ptr self) {
  auto& st = self->state;
  if (st.activating || !st.membership || st.view.self_state() != "joining") return;
  // Earlier runs of this node's own name are not waited for: activation replaces them.
  for (auto& [generation, p] : st.peers)
    if (older(self, generation) && !p.handle && p.name != st.cfg.name) return;
  st.activating = true;
  self->request(st.membership, st.cfg.timeout, activate_atom::value, st.view.generation)
      .then([self](bool) { self->state.activating = false; },
            [self](caf::error&) { self->state.activating = false; });
}

void reached(self_ptr self, int64_t generation, caf::actor h) {
  auto& p = self->state.peers[generation];
  if (p.handle == h) return;
  if (p.handle) self->demonitor(p.handle);
  p.dialing = false;
  p.handle = std::move(h);
  self->monitor(p.handle);
  log_info("cluster: connected to '" + p.name + "' (generation " + std::to_string(generation) +
           ") at " + p.address);
  p.why.clear();
  publish_routes(self);
  maybe_activate(self);
}

void failed(self_ptr self, int64_t generation, std::string why) {
  auto it = self->state.peers.find(generation);
  if (it == self->state.peers.end()) return;  // no longer alive: forgotten
  auto& p = it->second;
  p.dialing = false;
  if (p.handle) self->demonitor(p.handle);
  p.handle = nullptr;
  if (why != p.why)
    log_warning("cluster: cannot reach '" + p.name + "' at " + p.address + ": " + why +
                (older(self, generation) ? "; dialling again every " +
                                               std::to_string(self->state.cfg.retry.count()) + " ms"
                                         : "; waiting for it to dial again"));
  p.why = std::move(why);
  publish_routes(self);
  if (older(self, generation))
    self->delayed_send(self, self->state.cfg.retry, redial_atom::value, generation);
}

// Says hello to an older member over `h`, and keeps `h` once it answers as the member.
void greet(self_ptr self, int64_t generation, caf::actor h) {
  auto& st = self->state;
  auto me = st.gateway ? st.gateway : caf::actor_cast<caf::actor>(self);
  self->request(caf::actor_cast<node_actor>(h), st.cfg.timeout, hello_atom::value, st.cfg.name,
                st.view.generation, me,
                hello_proof(st.cfg.secret, "hello", st.cfg.name, st.view.generation))
      .then(
          [self, generation, h](std::string& name, int64_t answered, std::string& proof) {
            auto it = self->state.peers.find(generation);
            if (it == self->state.peers.end()) return;
            if (name != it->second.name || answered != generation)
              return failed(self, generation,
                            "it answered as '" + name + "' generation " + std::to_string(answered) +
                                ", not the member dialled");
            if (proof != hello_proof(self->state.cfg.secret, "welcome", name, answered))
              return failed(self, generation, "its answer holds no proof of the cluster's secret");
            reached(self, generation, h);
          },
          [self, generation](caf::error& e) {
            failed(self, generation, "no answer to hello: " + self->system().render(e));
          });
}

void dial(self_ptr self, int64_t generation) {
  auto it = self->state.peers.find(generation);
  if (it == self->state.peers.end() || !older(self, generation) || it->second.dialing ||
      it->second.handle)
    return;
  auto& p = it->second;
  auto where = config::parse_listen_address(p.address);
  if (!where || where->port == 0)
    return failed(self, generation, "its address '" + p.address + "' is not HOST:PORT");
  p.dialing = true;
  self->request(transport_of(self->system(), self->state.cfg.tls), self->state.cfg.timeout,
                caf::connect_atom::value, where->host, where->port)
      .then(
          [self, generation](const caf::node_id&, caf::strong_actor_ptr& ptr,
                             const std::set<std::string>&) {
            if (!ptr) return failed(self, generation, "it publishes no node actor");
            greet(self, generation, caf::actor_cast<caf::actor>(ptr));
          },
          [self, generation](caf::error& e) {
            failed(self, generation,
                   self->system().render(e) + (self->state.cfg.tls
                                                   ? " (with TLS: is its certificate signed by "
                                                     "cluster.tls_ca, and ours by its?)"
                                                   : ""));
          });
}

void follow(self_ptr self, const member_view& v) {
  auto& st = self->state;
  bool new_generation = v.generation != st.view.generation;
  st.view = v;
  std::map<int64_t, peer> next;
  for (auto& m : v.members) {
    if (m.state != "alive" || m.generation == v.generation) continue;
    auto it = st.peers.find(m.generation);
    if (it != st.peers.end()) {
      next.emplace(m.generation, std::move(it->second));
      continue;
    }
    peer p;
    p.name = m.name;
    p.address = m.address;
    next.emplace(m.generation, std::move(p));
  }
  for (auto& [generation, p] : st.peers)
    if (!next.count(generation) && p.handle) self->demonitor(p.handle);
  st.peers = std::move(next);
  publish_routes(self);
  // Newer members that introduced themselves before they showed as alive here: adopted once
  // alive, dropped once dead.
  for (auto it = st.introduced.begin(); it != st.introduced.end();) {
    auto p = st.peers.find(it->first);
    bool dead = std::any_of(v.members.begin(), v.members.end(), [&](const member& m) {
      return m.generation == it->first && m.state == "dead";
    });
    if (p != st.peers.end() && p->second.name == it->second.first) {
      if (!p->second.handle) reached(self, it->first, it->second.second);
      it = st.introduced.erase(it);
    } else if (dead) {
      it = st.introduced.erase(it);
    } else if (!v.members.empty() && it->first < v.members.back().generation &&
               std::none_of(v.members.begin(), v.members.end(),
                            [&](const member& m) { return m.generation == it->first; })) {
      it = st.introduced.erase(it);  // older than the newest row, and no row: made up
    } else {
      ++it;
    }
  }
  for (auto& [generation, p] : st.peers) {
    if (!older(self, generation)) continue;
    // Joined again as a newer member: hello again over the connections there are; the peer
    // counts as reached once it answered this generation's hello.
    if (new_generation && p.handle) {
      auto h = std::exchange(p.handle, nullptr);
      self->demonitor(h);
      p.dialing = true;
      greet(self, generation, std::move(h));
    } else {
      dial(self, generation);
    }
  }
  publish_routes(self);
  maybe_activate(self);
}

peers_impl::behavior_type peers(self_ptr self, peers_config cfg) {
  self->state.cfg = std::move(cfg);
  self->set_down_handler([self](caf::down_msg& down) {
    for (auto& [generation, p] : self->state.peers)
      if (p.handle && p.handle.address() == down.source) {
        p.handle = nullptr;
        failed(self, generation, "the connection was lost");
      }
  });
  return {
      [self](attach_atom, caf::actor membership) {
        self->state.membership = caf::actor_cast<membership_actor>(membership);
        maybe_activate(self);
      },
      [self](const member_view& v) { follow(self, v); },
      [self](caf::get_atom) {
        auto v = self->state.view;
        for (auto& m : v.members) {
          auto it = self->state.peers.find(m.generation);
          m.reachable =
              m.generation == v.generation || (it != self->state.peers.end() && it->second.handle);
        }
        return v;
      },
      [self](reached_atom) {
        std::vector<std::string> missing;
        if (self->state.view.generation == 0) missing.push_back("no member view yet");
        for (auto& [generation, p] : self->state.peers)
          if (older(self, generation) && !p.handle && p.name != self->state.cfg.name)
            missing.push_back("'" + p.name + "' at " + p.address + ": " + p.why);
        return missing;
      },
      [self](redial_atom, int64_t generation) { dial(self, generation); },
      [self](gateway_atom, caf::actor g) { self->state.gateway = std::move(g); },
      [](forward_atom, const std::string&, const caf::message&) {},  // only the gateway's
      [self](hello_atom, const std::string& name, int64_t generation, caf::actor caller,
             const std::string& proof) -> caf::result<std::string, int64_t, std::string> {
        auto& st = self->state;
        if (proof != hello_proof(st.cfg.secret, "hello", name, generation)) {
          log_warning("cluster: refused a hello as '" + name +
                      "' without a proof of the cluster's secret");
          return make_error(errc::unauthorized, "no proof of the cluster's secret");
        }
        if (caller && generation > st.view.generation) {
          auto it = st.peers.find(generation);
          if (it != st.peers.end() && it->second.name == name)
            reached(self, generation, std::move(caller));
          else {
            st.introduced[generation] = {name, std::move(caller)};
            publish_routes(self);
          }
        }
        return caf::make_result(
            st.cfg.name, st.view.generation,
            hello_proof(st.cfg.secret, "welcome", st.cfg.name, st.view.generation));
      },
  };
}

// What the node publishes: the hello, and nothing else, handed to the peers actor. Remote
// nodes can send any message to a published actor (CAF does not filter by its interface), so
// the peers actor's local protocol (views, attach) stays out of their reach. Linked: it ends
// with the peers actor.
node_actor::behavior_type gateway(node_actor::pointer self, peers_impl peers,
                                  std::map<std::string, caf::actor> locals,
                                  std::shared_ptr<placement> place) {
  self->link_to(peers);
  return {
      [self, locals, place](forward_atom, const std::string& kind, caf::message& inner) {
        // Only from the peers this node said hello with (TLS, when set, verified them).
        auto& sender = self->current_sender();
        if (!sender || !place || !place->connected(sender->node())) {
          self->make_response_promise().deliver(
              make_error(errc::unauthorized, "forwarded requests come from connected peers only"));
          return;
        }
        auto it = locals.find(kind);
        if (it == locals.end()) {
          auto rp = self->make_response_promise();
          rp.deliver(make_error(errc::invalid_argument, "this node serves no '" + kind + "'"));
          return;
        }
        self->delegate(it->second, std::move(inner));
      },
      [self, peers](hello_atom, std::string& name, int64_t generation, caf::actor& caller,
                    std::string& proof) -> caf::delegated<std::string, int64_t, std::string> {
        return self->delegate(peers, hello_atom::value, std::move(name), generation,
                              std::move(caller), std::move(proof));
      },
  };
}

}  // namespace

std::string hello_proof(const std::string& secret, std::string_view role, const std::string& name,
                        int64_t generation) {
  auto text = std::string{role} + "\n" + name + "\n" + std::to_string(generation);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(text.data()), text.size(), mac, &len);
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += digits[mac[i] >> 4];
    hex += digits[mac[i] & 15];
  }
  return hex;
}

spawned_peers spawn_peers(caf::actor_system& system, peers_config cfg) {
  auto locals = cfg.locals;
  auto place = cfg.place;
  auto actor = system.spawn(peers, std::move(cfg));
  auto published = system.spawn(gateway, actor, std::move(locals), std::move(place));
  caf::anon_send(actor, gateway_atom::value, caf::actor_cast<caf::actor>(published));
  return {caf::actor_cast<peers_actor>(actor), published};
}

}  // namespace tessera::runtime::cluster
