# Installs the library, its headers, the CLI, a CMake package (find_package(stagelog) ->
# stagelog::stagelog) and a pkg-config file (pkg-config --cflags --libs stagelog).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS stagelog EXPORT stagelogTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(STAGELOG_BUILD_SERVER)
  install(TARGETS stagelog_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(DIRECTORY include/stagelog DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT stagelogTargets NAMESPACE stagelog::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/stagelog)

configure_package_config_file(cmake/stagelogConfig.cmake.in
  ${PROJECT_BINARY_DIR}/stagelogConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/stagelog)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/stagelogConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/stagelogConfig.cmake
              ${PROJECT_BINARY_DIR}/stagelogConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/stagelog)

# Relocatable: the prefix is found from the .pc file's own folder.
file(RELATIVE_PATH STAGELOG_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(cmake/stagelog.pc.in ${PROJECT_BINARY_DIR}/stagelog.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/stagelog.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
