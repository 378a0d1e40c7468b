# Installs the build in BUILD_DIR into WORK_DIR/prefix, then builds the consumer in SOURCE_DIR
# against it: with find_package(stagelog) alone, where SQLite3 and pkg-config's packages (so
# cpp-httplib) are made unfindable, and runs it; with the server and store_sqlite components; and with
# pkg-config. GENERATOR and CXX are the outer build's.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/run_checked.cmake)
function(check_consumer program)
  run(${program})
  if(NOT out MATCHES "\\[consumer\\] Stage: INSTALLED - Complete \\([0-9.]+s\\)")
    message(FATAL_ERROR "unexpected output of ${program}:\n${out}")
  endif()
endfunction()
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# The library alone: none of the server's dependencies may be needed. (PkgConfig itself stays:
# FindOpenSSL uses it; an empty PKG_CONFIG_LIBDIR leaves it nothing to find.)
file(MAKE_DIRECTORY ${WORK_DIR}/no-pkg-config)
set(ENV{PKG_CONFIG_LIBDIR} ${WORK_DIR}/no-pkg-config)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/core -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${prefix}
    -DCMAKE_DISABLE_FIND_PACKAGE_SQLite3=ON)
unset(ENV{PKG_CONFIG_LIBDIR})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/core)
check_consumer(${WORK_DIR}/core/consumer)

# The server and store components: a SQLite store served on a free port, then stopped.
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/server -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${prefix} -DWITH_SERVER=ON)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/server --target server_consumer)
run(${WORK_DIR}/server/server_consumer ${WORK_DIR})
if(NOT out MATCHES "^served on [1-9][0-9]*")
  message(FATAL_ERROR "unexpected output of server_consumer:\n${out}")
endif()

# pkg-config, which leaves the C++ standard to the consumer: a C++23 one stays C++23 (a
# -std=c++20 from the .pc file after its own would downgrade it), and its version is the
# header's (VERSION, from the outer build's project()).
file(GLOB_RECURSE pc_file ${prefix}/stagelog.pc)
get_filename_component(pc_dir "${pc_file}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
execute_process(COMMAND pkg-config --cflags --libs stagelog OUTPUT_VARIABLE flags
                RESULT_VARIABLE status OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "pkg-config does not find stagelog")
endif()
if(flags MATCHES "-std=")
  message(FATAL_ERROR "the .pc file sets the C++ standard: ${flags}")
endif()
execute_process(COMMAND pkg-config --modversion stagelog OUTPUT_VARIABLE pc_version
                OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT pc_version STREQUAL VERSION)
  message(FATAL_ERROR "pkg-config says version '${pc_version}', the project is ${VERSION}")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(${CXX} -std=c++23 -DSTAGELOG_PACKAGE_VERSION="${VERSION}" ${SOURCE_DIR}/main.cpp
    -o ${WORK_DIR}/consumer-pc ${flags})
check_consumer(${WORK_DIR}/consumer-pc)
# ... and C++23 it is: __cplusplus past C++20's 202002L.
file(WRITE ${WORK_DIR}/std.cpp "#include <stagelog/stagelog.hpp>\n"
     "static_assert(__cplusplus > 202002L, \"not C++23\");\nint main() {}\n")
run(${CXX} -std=c++23 ${WORK_DIR}/std.cpp -o ${WORK_DIR}/std ${flags})
