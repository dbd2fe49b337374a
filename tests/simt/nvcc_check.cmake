# Compiles every .cu under kernels/ and tests/ with nvcc for each architecture (compile only) and
# fails on any error or warning. Run by ctest (label nvcc):
#   cmake -DNVCC=<nvcc> -DROOT=<source dir> -DARCHS=80,90a [-DHOST_CXX=<g++>] -P nvcc_check.cmake
# The file list is globbed when the test runs, so a new kernel is checked without reconfiguring.
if(NOT NVCC OR NOT ROOT OR NOT ARCHS)
  message(FATAL_ERROR "usage: cmake -DNVCC=... -DROOT=... -DARCHS=80,90a -P nvcc_check.cmake")
endif()
string(REPLACE "," ";" archs "${ARCHS}")
set(gencode)
foreach(a IN LISTS archs)
  list(APPEND gencode -gencode arch=compute_${a},code=sm_${a})
endforeach()
set(ccbin)
if(HOST_CXX)
  set(ccbin -ccbin ${HOST_CXX})
endif()

file(GLOB_RECURSE files LIST_DIRECTORIES false ${ROOT}/kernels/*.cu ${ROOT}/tests/*.cu)
list(SORT files)
# Objects go to a private temporary directory, never into the source tree.
set(tmp_root /tmp)
if(DEFINED ENV{TMPDIR} AND IS_DIRECTORY "$ENV{TMPDIR}")
  set(tmp_root $ENV{TMPDIR})
endif()
string(RANDOM LENGTH 12 tag)
set(tmp ${tmp_root}/rlx-nvcc-check-${tag})
file(MAKE_DIRECTORY ${tmp})

set(failed)
foreach(f IN LISTS files)
  get_filename_component(dir ${f} DIRECTORY)
  execute_process(
    COMMAND ${NVCC} ${ccbin} -std=c++17 -c ${f} -o ${tmp}/out.o ${gencode} --threads 0
            -I${ROOT}/kernels -I${ROOT}/include -I${ROOT}/host -I${dir}
            -Werror all-warnings -Xcompiler=-Wall,-Wextra,-Werror
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  file(RELATIVE_PATH rel ${ROOT} ${f})
  if(NOT rc EQUAL 0 OR "${out}${err}" MATCHES "[Ww]arning")
    message("FAIL ${rel} (exit ${rc})\n${out}${err}")
    list(APPEND failed ${rel})
  else()
    message("ok   ${rel}")
  endif()
endforeach()
file(REMOVE_RECURSE ${tmp})
list(LENGTH files n)
if(failed)
  message(FATAL_ERROR "nvcc: ${n} file(s), failed: ${failed}")
endif()
message("nvcc: ${n} file(s) compile cleanly for ${ARCHS}")
