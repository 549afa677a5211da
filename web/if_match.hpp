// The If-Match request header as tessera reads it.
#pragma once

#include <caf/expected.hpp>
#include <string>

#include "actors/storage/messages.hpp"

namespace tessera::web {

// `*` or empty: unconditional (an empty list); else a comma-separated list of "N" (bare N
// accepted); weak W/ tags never match. Anything else is invalid_argument.
caf::expected<storage::version_list> parse_if_match(const std::string& header);

}  // namespace tessera::web
