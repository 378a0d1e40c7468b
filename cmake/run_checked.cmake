# For cmake -P scripts (cmake/cli_docs.cmake, tests/package, tests/subproject): run(COMMAND...)
# runs a command and stops the script with its status, output and errors when it fails; its
# standard output is left in `out` for the caller.
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "failed (${status}): ${ARGN}\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()
