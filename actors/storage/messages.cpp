#include "actors/storage/messages.hpp"

#include <caf/actor_system_config.hpp>

#include "actors/storage/storage_owner.hpp"

namespace tessera::storage {

void add_storage_messages(caf::actor_system_config& cfg) {
  cfg.add_message_type<storage_record>("storage_record");
  cfg.add_message_type<storage_summary>("storage_summary");
  cfg.add_message_type<std::vector<storage_summary>>("std::vector<storage_summary>");
  cfg.add_message_type<storage_page>("storage_page");
  cfg.add_message_type<version_list>("version_list");
  cfg.add_message_type<txn_entry>("txn_entry");
  cfg.add_message_type<stored_storage>("stored_storage");
  cfg.add_message_type<std::vector<txn_entry>>("std::vector<txn_entry>");
  cfg.add_message_type<std::vector<std::string>>("std::vector<std::string>");
}

bool valid_storage_id(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace tessera::storage
