# Builds and runs tests/consumer against bnn. MODE=find_package installs the build tree into a
# scratch prefix first; MODE=add_subdirectory points the consumer at the source tree.
# WITH_MPI=ON also builds and runs consumer_mpi on bnn::mpi.
# Inputs: BNN_SOURCE_DIR, BNN_BUILD_DIR, WORK_DIR, MODE, WITH_MPI.
file(REMOVE_RECURSE ${WORK_DIR})
set(consumer_src ${BNN_SOURCE_DIR}/tests/consumer)

function(run step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer ${MODE}: ${step} failed (${rc})\n${out}\n${err}")
  endif()
  message(STATUS "${step}: ok")
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

if(MODE STREQUAL "find_package")
  run(install ${CMAKE_COMMAND} --install ${BNN_BUILD_DIR} --prefix ${WORK_DIR}/prefix)
  set(configure_args -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
else()
  set(configure_args -DBNN_SOURCE_DIR=${BNN_SOURCE_DIR})
endif()
run(configure ${CMAKE_COMMAND} -S ${consumer_src} -B ${WORK_DIR}/build -DCMAKE_BUILD_TYPE=Release
    -DBNN_CONSUMER_MPI=${WITH_MPI} ${configure_args})
run(build ${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(run ${WORK_DIR}/build/consumer)
message(STATUS "${last_output}")
if(WITH_MPI)
  run(run_mpi ${WORK_DIR}/build/consumer_mpi)
  message(STATUS "${last_output}")
endif()
