# Runs examples/pipeline into DIR (fast), then reads its text log back with `stagelog parse`:
# every line the recorder wrote must parse.
file(REMOVE_RECURSE ${DIR})
execute_process(COMMAND ${PROGRAM} ${DIR} --fast RESULT_VARIABLE status OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "pipeline failed (${status})\n${out}\n${err}")
endif()
execute_process(COMMAND ${CLI} parse ${DIR}/pipeline.log RESULT_VARIABLE status
                OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "stagelog parse could not read the pipeline's own log:\n${err}")
endif()
