// Parsing untrusted JSON text into nlohmann::json, with limits.
//
// Contract: `parse_json` accepts exactly one JSON value (RFC 8259) of valid UTF-8 whose
// arrays/objects nest at most `max_depth` deep. Errors, checked in this order, all with a
// detail that says where: invalid_utf8 (byte offset), json_too_deep, malformed_json
// (nlohmann's message). It never throws. Thread-safe; runs on the caller's thread.
#pragma once

#include <caf/expected.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

namespace tessera::adapters {

// Offset of the first byte that is not part of valid UTF-8 (no overlongs, no surrogates), or
// npos when all of `text` is valid.
size_t first_invalid_utf8(std::string_view text);

// Deepest array/object nesting of `text`, counting only brackets outside strings. Stops early
// and returns a value over `stop_after` once it is exceeded.
uint32_t nesting_depth(std::string_view text, uint32_t stop_after);

caf::expected<nlohmann::json> parse_json(std::string_view text, uint32_t max_depth);

}  // namespace tessera::adapters
