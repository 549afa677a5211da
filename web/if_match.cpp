#include "web/if_match.hpp"

#include <charconv>

#include "adapters/error.hpp"

namespace tessera::web {

using storage::version_list;

caf::expected<version_list> parse_if_match(const std::string& header) {
  version_list out;
  if (header.empty() || header == "*") return out;
  size_t pos = 0;
  while (pos <= header.size()) {
    auto comma = header.find(',', pos);
    auto tag = header.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    auto first = tag.find_first_not_of(" \t");
    auto last = tag.find_last_not_of(" \t");
    tag = first == std::string::npos ? "" : tag.substr(first, last - first + 1);
    bool weak = tag.starts_with("W/");
    if (weak) tag.erase(0, 2);
    if (tag.size() >= 2 && tag.front() == '"' && tag.back() == '"')
      tag = tag.substr(1, tag.size() - 2);
    int64_t v = 0;
    auto [end, ec] = std::from_chars(tag.data(), tag.data() + tag.size(), v);
    if (tag.empty() || ec != std::errc{} || end != tag.data() + tag.size())
      return make_error(errc::invalid_argument, "If-Match must be \"<version>\" or *");
    out.push_back(weak ? -1 : v);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

}  // namespace tessera::web
