# Installs the library and its headers; with STAGELOG_BUILD_SERVER also stagelog::store_sqlite,
# stagelog::server, their headers (stagelog/store/, stagelog/server/) and the CLI. A CMake
# package: find_package(stagelog) -> stagelog::stagelog, and
# find_package(stagelog COMPONENTS server store_sqlite) -> stagelog::server, stagelog::store_sqlite.
# One export set per component, so that a consumer of the library alone needs none of the
# server's dependencies. And a pkg-config file for the library: pkg-config --cflags --libs stagelog.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(STAGELOG_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/stagelog)

install(TARGETS stagelog EXPORT stagelogTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY include/stagelog DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        PATTERN store EXCLUDE PATTERN server EXCLUDE)
install(EXPORT stagelogTargets NAMESPACE stagelog:: DESTINATION ${STAGELOG_CMAKE_DIR})

if(STAGELOG_BUILD_SERVER)
  # stagelog/store/store.hpp, the Store interface, goes with the server, which takes any Store.
  install(DIRECTORY include/stagelog/store include/stagelog/server
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/stagelog)
  # store_common: what the SQLite store shares with the PostgreSQL one (not installed yet).
  install(TARGETS stagelog_store_common stagelog_store_sqlite EXPORT stagelogStoreSqliteTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT stagelogStoreSqliteTargets NAMESPACE stagelog::
          DESTINATION ${STAGELOG_CMAKE_DIR})
  install(TARGETS stagelog_server EXPORT stagelogServerTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT stagelogServerTargets NAMESPACE stagelog:: DESTINATION ${STAGELOG_CMAKE_DIR})
  install(TARGETS stagelog_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

configure_package_config_file(cmake/stagelogConfig.cmake.in
  ${PROJECT_BINARY_DIR}/stagelogConfig.cmake
  INSTALL_DESTINATION ${STAGELOG_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/stagelogConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/stagelogConfig.cmake
              ${PROJECT_BINARY_DIR}/stagelogConfigVersion.cmake
        DESTINATION ${STAGELOG_CMAKE_DIR})

# Relocatable: the prefix is found from the .pc file's own folder.
file(RELATIVE_PATH STAGELOG_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(cmake/stagelog.pc.in ${PROJECT_BINARY_DIR}/stagelog.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/stagelog.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
