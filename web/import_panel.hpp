// `tessera import-panel DIR [--server URL] [--token T] [--replace]`.
//
// Reads DIR/metadata.json (required: id, title, ..., storage_ids, and "storages": default data
// of each storage), DIR/template.html and DIR/handler.py (each optional) and posts them to the
// server's POST /api/panels/import. Returns the process exit code: 0 imported, 1 the server
// refused it or could not be reached (the reason is printed), 2 the bundle cannot be read.
#pragma once

#include <string>

namespace tessera::web {

struct import_options {
  std::string dir;
  std::string server = "http://127.0.0.1:8080";
  std::string token;
  bool replace = false;
};

int import_panel(const import_options& opts);

}  // namespace tessera::web
