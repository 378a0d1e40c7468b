# make package's Debian packages, made from the build in BUILD_DIR by CPack, installed into a
# scratch root with dpkg-deb -x (no root, no dpkg database): the stagelog tool runs from there
# and has its systemd unit, man page and completions; a find_package consumer (SOURCE_DIR)
# builds and runs against the library package's files. The control fields name the dependencies,
# the descriptions the licence, whose text is in /usr/share/doc/stagelog. VERSION is the project's; GENERATOR and CXX the outer build's.
file(REMOVE_RECURSE ${WORK_DIR})
include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/run_checked.cmake)

run(cpack -G DEB --config ${BUILD_DIR}/CPackConfig.cmake -B ${WORK_DIR}/debs)
file(GLOB debs ${WORK_DIR}/debs/*.deb)
list(TRANSFORM debs REPLACE ".*/" "" OUTPUT_VARIABLE names)
list(SORT names)
execute_process(COMMAND dpkg --print-architecture OUTPUT_VARIABLE arch
                OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT names STREQUAL "libstagelog-dev_${VERSION}_${arch}.deb;stagelog_${VERSION}_${arch}.deb")
  message(FATAL_ERROR "unexpected packages: ${names}")
endif()

set(root ${WORK_DIR}/root)
foreach(deb ${debs})
  run(dpkg-deb -x ${deb} ${root})
endforeach()

# The control fields.
run(dpkg-deb -f ${WORK_DIR}/debs/stagelog_${VERSION}_${arch}.deb Package Version Depends
    Description)
foreach(expected "Package: stagelog" "Version: ${VERSION}" "MIT licence" "Depends: [^\n]*libssl")
  if(NOT out MATCHES "${expected}")
    message(FATAL_ERROR "the stagelog package's control fields lack '${expected}':\n${out}")
  endif()
endforeach()
run(dpkg-deb -f ${WORK_DIR}/debs/libstagelog-dev_${VERSION}_${arch}.deb Package Depends
    Description)
foreach(expected "Package: libstagelog-dev" "MIT licence" "Depends: [^\n]*libssl-dev")
  if(NOT out MATCHES "${expected}")
    message(FATAL_ERROR "the library package's control fields lack '${expected}':\n${out}")
  endif()
endforeach()

# The tool, its unit, its licence.
run(${root}/usr/bin/stagelog --version)
if(NOT out STREQUAL "stagelog ${VERSION}\n")
  message(FATAL_ERROR "the packaged stagelog --version says: ${out}")
endif()
set(unit ${root}/usr/lib/systemd/system/stagelog.service)
if(NOT EXISTS ${unit})
  message(FATAL_ERROR "no systemd unit in the stagelog package")
endif()
file(READ ${unit} text)
foreach(line "ExecStart=/usr/bin/stagelog serve " "DynamicUser=yes" "StateDirectory=stagelog"
             "ExecReload=/bin/kill -HUP \\$MAINPID" "ProtectSystem=strict" "NoNewPrivileges=yes")
  if(NOT text MATCHES "\n${line}")
    message(FATAL_ERROR "the systemd unit lacks ${line}:\n${text}")
  endif()
endforeach()
# systemd's own check of the unit, where systemd-analyze is, with the binary of the scratch root.
find_program(SYSTEMD_ANALYZE systemd-analyze)
if(SYSTEMD_ANALYZE)
  string(REPLACE "ExecStart=/usr/bin/stagelog" "ExecStart=${root}/usr/bin/stagelog" text "${text}")
  file(WRITE ${WORK_DIR}/unit/stagelog.service "${text}")
  run(${SYSTEMD_ANALYZE} verify --man=no ${WORK_DIR}/unit/stagelog.service)
endif()
file(READ ${root}/usr/share/doc/stagelog/copyright copyright)
if(NOT copyright MATCHES "^MIT License\n\nCopyright \\(c\\) [0-9]+ the stagelog authors")
  message(FATAL_ERROR "/usr/share/doc/stagelog/copyright is not the MIT licence:\n${copyright}")
endif()
foreach(file usr/share/doc/stagelog/copyright usr/share/doc/stagelog/LICENSE
             usr/share/bash-completion/completions/stagelog
             usr/share/zsh/vendor-completions/_stagelog
             usr/share/fish/vendor_completions.d/stagelog.fish)
  if(NOT EXISTS ${root}/${file})
    message(FATAL_ERROR "the packages lack /${file}")
  endif()
endforeach()
if(HELP2MAN AND NOT EXISTS ${root}/usr/share/man/man1/stagelog-serve.1)
  message(FATAL_ERROR "help2man was found, but the package has no man page for stagelog serve")
endif()

# The library: a consumer finds it in the scratch root.
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/consumer -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${root}/usr)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer --target consumer)
run(${WORK_DIR}/consumer/consumer)
if(NOT out MATCHES "\\[consumer\\] Stage: INSTALLED - Complete")
  message(FATAL_ERROR "unexpected output of the consumer of the packaged library:\n${out}")
endif()
