# Registers the two consumer builds as tests (see run_consumer.cmake); where this build has
# bnn::mpi, each consumer also builds and runs a program on it.
if(TARGET bnn::mpi)
  set(BNN_CONSUMER_MPI ON)
else()
  set(BNN_CONSUMER_MPI OFF)
endif()
foreach(mode find_package add_subdirectory)
  add_test(NAME consumer_${mode}
    COMMAND ${CMAKE_COMMAND} -DBNN_SOURCE_DIR=${PROJECT_SOURCE_DIR} -DBNN_BUILD_DIR=${PROJECT_BINARY_DIR}
            -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumer_${mode} -DMODE=${mode} -DWITH_MPI=${BNN_CONSUMER_MPI}
            -P ${CMAKE_CURRENT_LIST_DIR}/run_consumer.cmake)
  set_tests_properties(consumer_${mode} PROPERTIES LABELS consumer TIMEOUT 600)
endforeach()
