# `make package`: Debian packages made by CPack from the install components (install.cmake):
#   libstagelog-dev  the library, the store and server libraries, headers, CMake and pkg-config
#                    files
#   stagelog         the stagelog tool, its systemd unit (packaging/stagelog.service.in), man
#                    pages and shell completions
# `cpack -G DEB` in a build folder (configured with STAGELOG_BUILD_SERVER, as at top level)
# writes them there; tests/package/deb.cmake installs them into a scratch root.
set(CPACK_PACKAGE_NAME stagelog)
set(CPACK_PACKAGE_VENDOR "the stagelog authors")
set(CPACK_PACKAGE_CONTACT "the stagelog authors")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Installed with DESTDIR and the prefix /usr (not the build's CMAKE_INSTALL_PREFIX), so that
# what install(CODE) writes (the systemd unit's ExecStart) names /usr, not CPack's staging folder.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_COMPONENTS_ALL library tool)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)

set(CPACK_DEBIAN_LIBRARY_PACKAGE_NAME libstagelog-dev)
set(CPACK_DEBIAN_LIBRARY_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_LIBRARY_DESCRIPTION
    "stagelog's C++20 recorder library and headers (MIT licence)
 Which stage is every worker in, for how long, is it alive, and where and why did it
 fail: a recorder whose hot path neither locks nor allocates, with text, JSONL, console
 and network sinks and a watchdog. Also stagelog::server and stagelog::store_sqlite.
 find_package(stagelog) or pkg-config stagelog.")
# What a consumer links along: OpenSSL for the library; the server component also needs SQLite,
# zlib and brotli's decoder (found by pkg-config).
set(CPACK_DEBIAN_LIBRARY_PACKAGE_DEPENDS "libssl-dev")
set(CPACK_DEBIAN_LIBRARY_PACKAGE_SUGGESTS "libsqlite3-dev, zlib1g-dev, libbrotli-dev, pkg-config")

set(CPACK_DEBIAN_TOOL_PACKAGE_NAME stagelog)
set(CPACK_DEBIAN_TOOL_PACKAGE_SECTION utils)
set(CPACK_COMPONENT_TOOL_DESCRIPTION
    "stagelog command-line tool and server (MIT licence)
 stagelog parse, summary, tail, run, and stagelog serve: ingest stage events from many
 workers, keep them in SQLite or PostgreSQL, serve an HTTP API, a live stream, Prometheus
 metrics and a web UI. Comes with a systemd unit (stagelog.service).")
set(CPACK_DEBIAN_TOOL_PACKAGE_SHLIBDEPS ON)  # dpkg-shlibdeps: libssl3, libsqlite3-0, libpq5 ...

include(CPack)
