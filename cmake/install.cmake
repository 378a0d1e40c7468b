# Installs the library and its headers; with STAGELOG_BUILD_SERVER also stagelog::store_sqlite,
# stagelog::server, their headers (stagelog/store/, stagelog/server/) and the CLI. A CMake
# package: find_package(stagelog) -> stagelog::stagelog, and
# find_package(stagelog COMPONENTS server store_sqlite) -> stagelog::server, stagelog::store_sqlite.
# One export set per component, so that a consumer of the library alone needs none of the
# server's dependencies. And a pkg-config file for the library: pkg-config --cflags --libs stagelog.
# Two install components, which make the two Debian packages (cmake/package.cmake): "library"
# (libraries, headers, the CMake and pkg-config files) and "tool" (the CLI, its systemd unit,
# man pages and shell completions). The licence goes with both.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(STAGELOG_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/stagelog)

set(CMAKE_INSTALL_DEFAULT_COMPONENT_NAME library)
install(TARGETS stagelog EXPORT stagelogTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} NAMELINK_COMPONENT library
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/stagelog DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        PATTERN store EXCLUDE PATTERN server EXCLUDE)
install(EXPORT stagelogTargets NAMESPACE stagelog:: DESTINATION ${STAGELOG_CMAKE_DIR})
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT library)

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
  install(TARGETS stagelog_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tool)
  # Shell completions and man pages, made from the built stagelog (cmake/cli_docs.cmake); man
  # pages only where help2man is installed (scripts/setup installs it).
  find_program(STAGELOG_HELP2MAN help2man)
  if(NOT STAGELOG_HELP2MAN)
    message(STATUS "help2man not found: stagelog's man pages are not made (scripts/setup)")
  endif()
  set(cli_docs ${PROJECT_BINARY_DIR}/cli-docs)
  add_custom_command(
    OUTPUT ${cli_docs}/stamp
    COMMAND ${CMAKE_COMMAND} -DCLI=$<TARGET_FILE:stagelog_cli> -DOUT=${cli_docs}
            -DHELP2MAN=${STAGELOG_HELP2MAN} -P ${PROJECT_SOURCE_DIR}/cmake/cli_docs.cmake
    DEPENDS stagelog_cli ${PROJECT_SOURCE_DIR}/cmake/cli_docs.cmake
    COMMENT "Shell completions and man pages of stagelog"
    VERBATIM)
  add_custom_target(stagelog_cli_docs ALL DEPENDS ${cli_docs}/stamp)
  install(FILES ${cli_docs}/completions/stagelog
          DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions COMPONENT tool)
  install(FILES ${cli_docs}/completions/_stagelog
          DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions COMPONENT tool)
  install(FILES ${cli_docs}/completions/stagelog.fish
          DESTINATION ${CMAKE_INSTALL_DATADIR}/fish/vendor_completions.d COMPONENT tool)
  install(DIRECTORY ${cli_docs}/man/ DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT tool
          FILES_MATCHING PATTERN "*.1")
  # The Debian package's copyright file (the library's package has LICENSE beside it).
  install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME copyright COMPONENT tool)
  # The systemd unit names the binary by the prefix it is installed to (CPack's /usr too).
  install(CODE "configure_file(\"${PROJECT_SOURCE_DIR}/packaging/stagelog.service.in\"
                  \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/lib/systemd/system/stagelog.service\"
                  @ONLY)"
          COMPONENT tool)
endif()

configure_package_config_file(cmake/stagelogConfig.cmake.in
  ${PROJECT_BINARY_DIR}/stagelogConfig.cmake
  INSTALL_DESTINATION ${STAGELOG_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/stagelogConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/stagelogConfig.cmake
              ${PROJECT_BINARY_DIR}/stagelogConfigVersion.cmake
        DESTINATION ${STAGELOG_CMAKE_DIR})

# Relocatable: the prefix is found from the .pc file's own folder. A static libstagelog needs
# what it links (OpenSSL) on every link line; a shared one only when linking statically.
if(BUILD_SHARED_LIBS)
  set(STAGELOG_PC_LIBS "-L\${libdir} -lstagelog")
  set(STAGELOG_PC_LIBS_PRIVATE "-lssl -lcrypto -pthread")
else()
  set(STAGELOG_PC_LIBS "-L\${libdir} -lstagelog -lssl -lcrypto -pthread")
  set(STAGELOG_PC_LIBS_PRIVATE "")
endif()
file(RELATIVE_PATH STAGELOG_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(cmake/stagelog.pc.in ${PROJECT_BINARY_DIR}/stagelog.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/stagelog.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
