# The README's FetchContent snippet, verbatim, in an outside project: FetchContent takes
# stagelog's source from STAGELOG_SOURCE_DIR (FETCHCONTENT_SOURCE_DIR_STAGELOG, as a user with a
# local checkout would; nothing is downloaded). Built as a shared library (BUILD_SHARED_LIBS)
# with its install rules on (STAGELOG_INSTALL): the program links libstagelog.so.SOVERSION and
# runs; the install has the versioned library and its links, and a find_package consumer
# (tests/package, PACKAGE_DIR) builds and runs against that install. README is the README.md
# to take the snippet from; GENERATOR, CXX and LAUNCHER (a compiler launcher, or empty) are the
# outer build's; SOVERSION and VERSION its project's.
file(REMOVE_RECURSE ${WORK_DIR})
include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/run_checked.cmake)

file(READ ${README} readme)
string(REGEX MATCH "<!-- fetchcontent -->\n```cmake\n([^`]*)```" _ "${readme}")
set(snippet "${CMAKE_MATCH_1}")
if(NOT snippet MATCHES "FetchContent_MakeAvailable\\(stagelog\\)")
  message(FATAL_ERROR "no FetchContent snippet after <!-- fetchcontent --> in ${README}")
endif()
file(MAKE_DIRECTORY ${WORK_DIR}/src)
file(COPY ${SOURCE_DIR}/main.cpp DESTINATION ${WORK_DIR}/src)
file(WRITE ${WORK_DIR}/src/CMakeLists.txt
     "cmake_minimum_required(VERSION 3.22)\nproject(app LANGUAGES CXX)\n"
     "add_executable(app main.cpp)\n${snippet}")

set(launcher "")
if(LAUNCHER)
  set(launcher -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER})
endif()
run(${CMAKE_COMMAND} -S ${WORK_DIR}/src -B ${WORK_DIR}/build -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX} ${launcher}
    -DFETCHCONTENT_SOURCE_DIR_STAGELOG=${STAGELOG_SOURCE_DIR}
    -DBUILD_SHARED_LIBS=ON -DSTAGELOG_INSTALL=ON)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build --parallel 2)
run(${WORK_DIR}/build/app)
if(NOT out MATCHES "\\[parent\\] Stage: SUBPROJECT - Complete")
  message(FATAL_ERROR "unexpected output of the FetchContent build's program:\n${out}")
endif()
run(readelf -d ${WORK_DIR}/build/app)
if(NOT out MATCHES "NEEDED[^\n]*\\[libstagelog\\.so\\.${SOVERSION}\\]")
  message(FATAL_ERROR "the program does not link libstagelog.so.${SOVERSION}:\n${out}")
endif()

set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${WORK_DIR}/build --prefix ${prefix})
file(GLOB_RECURSE libraries LIST_DIRECTORIES false ${prefix}/libstagelog.so*)
list(TRANSFORM libraries REPLACE ".*/" "")
list(SORT libraries)
if(NOT libraries STREQUAL "libstagelog.so;libstagelog.so.${SOVERSION};libstagelog.so.${VERSION}")
  message(FATAL_ERROR "installed shared libraries: ${libraries}")
endif()
run(${CMAKE_COMMAND} -S ${PACKAGE_DIR} -B ${WORK_DIR}/consumer -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX} ${launcher} -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run(${WORK_DIR}/consumer/consumer)
if(NOT out MATCHES "\\[consumer\\] Stage: INSTALLED - Complete")
  message(FATAL_ERROR "unexpected output of the consumer of the shared library:\n${out}")
endif()
