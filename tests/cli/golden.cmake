# Runs one CLI golden case: ${CASE}.args holds the arguments (one per line); ${CASE}.in, if
# present, is fed on stdin; stdout, stderr and the exit status must equal ${CASE}.stdout,
# ${CASE}.stderr (if present) and ${CASE}.status (default 0). Relative paths in .args are
# relative to the tests/cli folder.
get_filename_component(dir ${CASE} DIRECTORY)
file(STRINGS ${CASE}.args args)
set(input_args)
if(EXISTS ${CASE}.in)
  set(input_args INPUT_FILE ${CASE}.in)
endif()
execute_process(COMMAND ${CLI} ${args} ${input_args}
                WORKING_DIRECTORY ${dir}
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE status)
set(expected_status 0)
if(EXISTS ${CASE}.status)
  file(STRINGS ${CASE}.status expected_status)
endif()
file(READ ${CASE}.stdout expected_out)
if(NOT out STREQUAL expected_out)
  message(FATAL_ERROR "stdout differs for ${CASE}\n--- expected\n${expected_out}--- got\n${out}")
endif()
if(EXISTS ${CASE}.stderr)
  file(READ ${CASE}.stderr expected_err)
  if(NOT err STREQUAL expected_err)
    message(FATAL_ERROR "stderr differs for ${CASE}\n--- expected\n${expected_err}--- got\n${err}")
  endif()
endif()
if(NOT status STREQUAL expected_status)
  message(FATAL_ERROR "exit status ${status}, expected ${expected_status} for ${CASE}\n${err}")
endif()
