#include "adapters/error.hpp"

#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace tessera {

std::string_view to_string(errc code) {
  switch (code) {
    case errc::ok:
      return "ok";
    case errc::invalid_argument:
      return "invalid_argument";
    case errc::malformed_json:
      return "malformed_json";
    case errc::invalid_utf8:
      return "invalid_utf8";
    case errc::json_too_deep:
      return "json_too_deep";
    case errc::payload_too_large:
      return "payload_too_large";
    case errc::headers_too_large:
      return "headers_too_large";
    case errc::request_timeout:
      return "request_timeout";
    case errc::not_found:
      return "not_found";
    case errc::conflict:
      return "conflict";
    case errc::precondition_failed:
      return "precondition_failed";
    case errc::unauthorized:
      return "unauthorized";
    case errc::method_not_allowed:
      return "method_not_allowed";
    case errc::timeout:
      return "timeout";
    case errc::unavailable:
      return "unavailable";
    case errc::storage_failure:
      return "storage_failure";
    case errc::gone:
      return "gone";
    case errc::sandbox_failed:
      return "sandbox_failed";
    case errc::internal:
      return "internal";
  }
  return "internal";
}

caf::error make_error(errc code, std::string detail) {
  return caf::error{static_cast<uint8_t>(code), error_category,
                    caf::make_message(std::move(detail))};
}

errc code_of(const caf::error& err) {
  if (!err) return errc::ok;
  if (err.category() == error_category) return static_cast<errc>(err.code());
  if (err.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(err.code())) {
      case caf::sec::request_timeout:
        return errc::timeout;
      case caf::sec::request_receiver_down:
      case caf::sec::invalid_argument:
        return errc::unavailable;
      default:
        break;
    }
  }
  return errc::internal;
}

std::string detail_of(const caf::error& err) {
  if (err.category() != error_category) return {};
  const auto& ctx = err.context();
  if (ctx.match_elements<std::string>()) return ctx.get_as<std::string>(0);
  return {};
}

}  // namespace tessera
