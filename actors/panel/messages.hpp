// Messages of the panel area (see panel_directory.hpp and panel_actor.hpp for the protocols).
//
// Like storages, panel definitions travel as JSON text: the web layer parses and bounds the
// request body, the actors validate fields (panel_codec.hpp). Successful replies are JSON text
// the web layer sends as is; errors are tessera errc values. A failure of user code (a template
// or handler that does not compile, a handler exception, a template error) is
// errc::sandbox_failed whose detail is the sandbox's JSON answer ({"ok":false,"error":{kind,
// ...},"logs"}), so the web layer can show the kind, message, line and logs.
#pragma once

#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "actors/storage/messages.hpp"

namespace tessera::panel {

using list_atom = caf::atom_constant<caf::atom("plist")>;
using get_atom = caf::atom_constant<caf::atom("pget")>;
using create_atom = caf::atom_constant<caf::atom("pcreate")>;
using update_atom = caf::atom_constant<caf::atom("pupdate")>;
using erase_atom = caf::atom_constant<caf::atom("perase")>;
using render_atom = caf::atom_constant<caf::atom("prender")>;
using action_atom = caf::atom_constant<caf::atom("paction")>;
using export_atom = caf::atom_constant<caf::atom("pexport")>;
using import_atom = caf::atom_constant<caf::atom("pimport")>;
using bound_atom = caf::atom_constant<caf::atom("pbound")>;
using gone_atom = caf::atom_constant<caf::atom("pgone")>;
using fresh_atom = caf::atom_constant<caf::atom("pfresh")>;

// The panel directory as its clients see it (panel_directory.hpp and panel_actor.hpp have the
// protocol): the REST routes, the live sessions and main hold this handle. Replies are JSON
// text; (storage::changed_atom, storage id, version) comes from storage actors.
using directory_actor = caf::typed_actor<
    caf::replies_to<list_atom>::with<std::string>, caf::replies_to<fresh_atom>::with<bool>,
    caf::replies_to<create_atom, std::string>::with<std::string>,
    caf::replies_to<import_atom, std::string, bool>::with<std::string>,
    caf::replies_to<get_atom, std::string>::with<std::string>,
    caf::replies_to<update_atom, std::string, std::string, std::vector<std::string>,
                    storage::version_list>::with<std::string>,
    caf::replies_to<erase_atom, std::string>::with<std::string>,
    caf::replies_to<render_atom, std::string>::with<std::string>,
    caf::replies_to<action_atom, std::string, std::string, std::string>::with<std::string>,
    caf::replies_to<export_atom, std::string>::with<std::string>,
    caf::reacts_to<storage::changed_atom, std::string, int64_t>,
    caf::reacts_to<storage::refresh_atom, std::string>, caf::reacts_to<storage::refresh_atom>,
    caf::reacts_to<storage::peer_lost_atom, caf::actor>>;

// The directory's own interface: its clients' and its panel actors' reports.
using directory_impl =
    directory_actor::extend<caf::reacts_to<bound_atom, std::string, std::vector<std::string>>,
                            caf::reacts_to<gone_atom, std::string>>;

// What a panel actor publishes for its subscribers (the web layer fans it out).
struct render_event {
  enum class kind { render, render_error, deleted };
  kind what = kind::render;
  std::string panel;
  int64_t version = 0;
  std::string body;  // render: the HTML; render_error: the sandbox's JSON answer; deleted: ""
};

// Called on a panel actor's thread for every render of a panel that has subscribers; must not
// block (the web layer posts the message to each connection's strand).
using render_sink = std::function<void(const render_event&)>;

}  // namespace tessera::panel
