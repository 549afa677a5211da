#include "adapters/json/parse.hpp"

#include "adapters/error.hpp"

namespace tessera::adapters {

size_t first_invalid_utf8(std::string_view text) {
  auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    bool overlong =
        (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

uint32_t nesting_depth(std::string_view text, uint32_t stop_after) {
  uint32_t depth = 0;
  uint32_t deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest) deepest = depth;
      if (deepest > stop_after) return deepest;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

caf::expected<nlohmann::json> parse_json(std::string_view text, uint32_t max_depth) {
  if (auto bad = first_invalid_utf8(text); bad != std::string_view::npos)
    return make_error(errc::invalid_utf8, "invalid UTF-8 at byte " + std::to_string(bad));
  if (nesting_depth(text, max_depth) > max_depth)
    return make_error(errc::json_too_deep,
                      "JSON nests deeper than " + std::to_string(max_depth) + " levels");
  auto value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    // Parse again with exceptions only on the error path, for nlohmann's positioned message.
    try {
      auto unreachable = nlohmann::json::parse(text);
      (void)unreachable;
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e400
      return make_error(errc::malformed_json, e.what());
    }
    return make_error(errc::malformed_json, "not a JSON value");
  }
  return value;
}

}  // namespace tessera::adapters
