# Third-party libraries, all from Debian packages (see ../shared/notes/platform.md).
find_package(Threads REQUIRED)

# CAF 0.17.6 ships no CMake config: wrap the headers and libraries in IMPORTED targets.
find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
find_library(CAF_CORE_LIBRARY caf_core REQUIRED)
find_library(CAF_IO_LIBRARY caf_io REQUIRED)
add_library(caf::core SHARED IMPORTED)
set_target_properties(caf::core PROPERTIES
  IMPORTED_LOCATION ${CAF_CORE_LIBRARY}
  INTERFACE_SYSTEM_INCLUDE_DIRECTORIES ${CAF_INCLUDE_DIR}
  INTERFACE_LINK_LIBRARIES Threads::Threads)
add_library(caf::io SHARED IMPORTED)
set_target_properties(caf::io PROPERTIES
  IMPORTED_LOCATION ${CAF_IO_LIBRARY}
  INTERFACE_LINK_LIBRARIES caf::core)
find_library(CAF_OPENSSL_LIBRARY caf_openssl REQUIRED)
add_library(caf::openssl SHARED IMPORTED)
set_target_properties(caf::openssl PROPERTIES
  IMPORTED_LOCATION ${CAF_OPENSSL_LIBRARY}
  INTERFACE_LINK_LIBRARIES caf::io)

find_package(RocksDB CONFIG REQUIRED)
find_package(Boost 1.81 CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(doctest CONFIG REQUIRED)
find_package(tomlplusplus CONFIG REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
# libpq (PostgreSQL 15's client, with pipeline mode) for storage.backend = "postgres".
find_package(PostgreSQL REQUIRED)
find_package(OpenSSL REQUIRED)  # SHA-256 and randomness for the token and sessions
# IANA time zones for cron schedules (GCC 12's libstdc++ has no chrono tzdb). date::date-tz
# defines USE_OS_TZDB=1: it reads the tzdata package's /usr/share/zoneinfo.
find_package(date CONFIG REQUIRED)

# The sandbox embeds Debian's CPython 3.11. The pyenv Python first on PATH would be picked
# otherwise (configure fails, or pyenv's libpython gets embedded): pin it before pybind11.
set(Python3_EXECUTABLE /usr/bin/python3.11)
find_package(Python3 3.11 EXACT REQUIRED COMPONENTS Interpreter Development.Embed)
find_package(pybind11 CONFIG REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(seccomp REQUIRED IMPORTED_TARGET libseccomp)
