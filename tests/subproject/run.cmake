# Configures the project in SOURCE_DIR, which includes stagelog (STAGELOG_SOURCE_DIR) with
# add_subdirectory, in a fresh WORK_DIR, with every dependency that is not the library's own
# made unfindable (pkg-config's packages too: cpp-httplib); builds it; checks that its ctest lists its own test alone, runs it, and that
# stagelog adds no install rules; then configures it again with stagelog's examples on, whose
# target names must not clash with the project's. GENERATOR and CXX are the outer build's.
file(REMOVE_RECURSE ${WORK_DIR})
set(build ${WORK_DIR}/build)
include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/run_checked.cmake)

set(not_ours "")
foreach(package GTest GMock benchmark spdlog CLI11 SQLite3 Boost ZLIB)
  list(APPEND not_ours -DCMAKE_DISABLE_FIND_PACKAGE_${package}=ON)
endforeach()
file(MAKE_DIRECTORY ${WORK_DIR}/no-pkg-config)  # PkgConfig itself stays: FindOpenSSL uses it.
set(ENV{PKG_CONFIG_LIBDIR} ${WORK_DIR}/no-pkg-config)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${build} -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX}
    -DSTAGELOG_SOURCE_DIR=${STAGELOG_SOURCE_DIR} ${not_ours})
run(${CMAKE_COMMAND} --build ${build} --parallel 2)

run(${CMAKE_CTEST_COMMAND} --test-dir ${build} -N)
string(REGEX MATCHALL "Test +#[0-9]+: [^\n]+" tests "${out}")
if(NOT tests MATCHES "^Test +#1: subproject.pipeline$")
  message(FATAL_ERROR "the including project's ctest lists more than its own test:\n${out}")
endif()
run(${CMAKE_CTEST_COMMAND} --test-dir ${build} --output-on-failure)

run(${CMAKE_COMMAND} --install ${build} --prefix ${WORK_DIR}/prefix)
file(GLOB_RECURSE installed ${WORK_DIR}/prefix/*)
if(installed)
  message(FATAL_ERROR "stagelog installed files into the including project's install:\n"
                      "${installed}")
endif()

run(${CMAKE_COMMAND} ${build} -DSTAGELOG_BUILD_EXAMPLES=ON)
