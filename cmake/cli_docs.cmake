# Writes what is installed with the stagelog tool from the built binary itself (CLI), into OUT:
# shell completions (stagelog completion bash|zsh|fish) and, when HELP2MAN is a program (Debian's
# help2man), one man page for stagelog and one per command (stagelog-serve.1 ...), made from
# their --help. Then touches OUT/stamp. Run with cmake -P by install.cmake's custom command.
include(${CMAKE_CURRENT_LIST_DIR}/run_checked.cmake)

file(MAKE_DIRECTORY ${OUT}/completions ${OUT}/man)
run(${CLI} completion bash)
file(WRITE ${OUT}/completions/stagelog "${out}")
run(${CLI} completion zsh)
file(WRITE ${OUT}/completions/_stagelog "${out}")
run(${CLI} completion fish)
file(WRITE ${OUT}/completions/stagelog.fish "${out}")

file(GLOB old_pages ${OUT}/man/*.1)
if(old_pages)
  file(REMOVE ${old_pages})
endif()
if(HELP2MAN)
  set(common --no-info --version-option=--version --no-discard-stderr)
  run(${HELP2MAN} ${common} --help-option=--help
      "--name=which stage is every worker in, for how long, is it alive, and why it failed"
      --output=${OUT}/man/stagelog.1 ${CLI})
  run(${CLI} --version)
  string(REGEX REPLACE "^stagelog ([^\n]*)\n?$" "\\1" version "${out}")
  # The commands, as `stagelog --help` lists them under "Subcommands:": "  NAME  description".
  run(${CLI} --help)
  string(REGEX REPLACE ".*\nSubcommands:\n" "" commands "${out}")
  string(REPLACE "\n" ";" lines "${commands}")
  foreach(line ${lines})
    if(line MATCHES "^  ([a-z][a-z0-9-]*) +(.*)$")
      set(name ${CMAKE_MATCH_1})
      string(REGEX REPLACE "[.:].*" "" what "${CMAKE_MATCH_2}")
      # The page's program is stagelog-NAME: help2man takes it from the version string.
      run(${HELP2MAN} --no-info --no-discard-stderr "--version-string=stagelog-${name} ${version}"
          "--help-option=${name} --help" "--name=${what}"
          --output=${OUT}/man/stagelog-${name}.1 ${CLI})
    endif()
  endforeach()
endif()
file(TOUCH ${OUT}/stamp)
