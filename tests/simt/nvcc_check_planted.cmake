# Self-test of nvcc_check.cmake's local-memory rule: run on the planted kernels of
# nvcc-planted-local.cu.in, the check must fail, naming the spilling kernel and the one with a
# stack frame for every architecture. Run by ctest (nvcc-check-planted, label nvcc):
#   cmake -DNVCC=<nvcc> -DROOT=<source dir> -DARCHS=80,90a [-DHOST_CXX=<g++>] -P nvcc_check_planted.cmake
if(NOT NVCC OR NOT ROOT OR NOT ARCHS)
  message(FATAL_ERROR "usage: cmake -DNVCC=... -DROOT=... -DARCHS=80,90a -P nvcc_check_planted.cmake")
endif()
set(host)
if(HOST_CXX)
  set(host -DHOST_CXX=${HOST_CXX})
endif()
execute_process(
  COMMAND ${CMAKE_COMMAND} -DNVCC=${NVCC} -DROOT=${ROOT} -DARCHS=${ARCHS} ${host}
          -DFILES=${ROOT}/tests/simt/nvcc-planted-local.cu.in -P ${ROOT}/tests/simt/nvcc_check.cmake
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(log "${out}${err}")
set(missing)
if(rc EQUAL 0)
  list(APPEND missing "a failing exit status")
endif()
string(REPLACE "," ";" archs "${ARCHS}")
foreach(a IN LISTS archs)
  if(NOT log MATCHES "rlx_planted_spill_kernel[^\n]*\\(sm_${a}\\): [1-9][0-9]* bytes spill stores")
    list(APPEND missing "the spilling kernel on sm_${a}")
  endif()
  if(NOT log MATCHES "rlx_planted_stack_kernel[^\n]*\\(sm_${a}\\): [1-9][0-9]* bytes stack frame")
    list(APPEND missing "the stack-frame kernel on sm_${a}")
  endif()
endforeach()
if(missing)
  message(FATAL_ERROR "nvcc check on planted local memory: missing ${missing}\n--- its output:\n${log}")
endif()
message("nvcc check on planted local memory: fails, naming both kernels for ${ARCHS}")
