# Compiles every .cu under kernels/ and tests/ with nvcc for each architecture (compile only) and
# fails on any error or warning, and on any kernel that spills registers (ptxas -v reports spill
# stores or loads above 0 bytes for some entry function: a spill in a hot loop is local-memory
# traffic the design never budgeted for). Run by ctest (label nvcc):
#   cmake -DNVCC=<nvcc> -DROOT=<source dir> -DARCHS=80,90a [-DHOST_CXX=<g++>] -P nvcc_check.cmake
# The file list is globbed when the test runs, so a new kernel is checked without reconfiguring.
# A stack frame without spills (a local array indexed at run time) is allowed; it is printed.
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

# Files whose spills are known and being removed (issue 17, item 1): reported, not failed. Keep
# this list empty; a file leaves it in the commit that makes it spill-free.
set(spill_exempt kernels/flash_attention.cu)

set(failed)
set(spilled)
foreach(f IN LISTS files)
  get_filename_component(dir ${f} DIRECTORY)
  execute_process(
    COMMAND ${NVCC} ${ccbin} -std=c++17 -c ${f} -o ${tmp}/out.o ${gencode} --threads 0
            -I${ROOT}/kernels -I${ROOT}/include -I${ROOT}/host -I${dir}
            -Werror all-warnings -Xcompiler=-Wall,-Wextra,-Werror -Xptxas=-v
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  file(RELATIVE_PATH rel ${ROOT} ${f})
  # ptxas -v: "Compiling entry function '<name>' for 'sm_XX'", then (after a "Function properties"
  # line) "<n> bytes stack frame, <n> bytes spill stores, <n> bytes spill loads".
  set(log "${out}${err}")
  string(REPLACE ";" "," log "${log}")
  string(REPLACE "\n" ";" lines "${log}")
  set(entry "?")
  set(spills)
  set(resources)
  foreach(line IN LISTS lines)
    if(line MATCHES "Compiling entry function '([^']+)' for '(sm_[0-9a-z]+)'")
      set(entry "${CMAKE_MATCH_1} (${CMAKE_MATCH_2})")
    elseif(line MATCHES "([0-9]+) bytes stack frame, ([0-9]+) bytes spill stores, ([0-9]+) bytes spill loads")
      set(frame ${CMAKE_MATCH_1})
      if(NOT CMAKE_MATCH_2 EQUAL 0 OR NOT CMAKE_MATCH_3 EQUAL 0)
        list(APPEND spills "  ${entry}: ${CMAKE_MATCH_2} bytes spill stores, ${CMAKE_MATCH_3} bytes spill loads")
      elseif(NOT frame EQUAL 0)
        list(APPEND resources "  ${entry}: ${frame} bytes stack frame, no spills")
      endif()
    endif()
  endforeach()
  # what is left of the log once ptxas' own report is taken out: compiler diagnostics
  string(REGEX REPLACE "ptxas info[^;]*;?" "" diag "${lines}")
  string(REGEX REPLACE " *[0-9]+ bytes stack frame[^;]*;?" "" diag "${diag}")
  if(NOT rc EQUAL 0 OR "${diag}" MATCHES "[Ww]arning")
    message("FAIL ${rel} (exit ${rc})\n${out}${err}")
    list(APPEND failed ${rel})
  elseif(spills)
    string(REPLACE ";" "\n" spill_text "${spills}")
    list(FIND spill_exempt ${rel} exempt)
    if(exempt EQUAL -1)
      message("FAIL ${rel}: register spills (ptxas -v)\n${spill_text}")
      list(APPEND failed ${rel})
    else()
      message("ok   ${rel} (spills known, exempt until issue 17 item 1 lands)\n${spill_text}")
      list(APPEND spilled ${rel})
    endif()
  else()
    message("ok   ${rel}")
  endif()
  foreach(r IN LISTS resources)
    message("${r}")
  endforeach()
endforeach()
file(REMOVE_RECURSE ${tmp})
list(LENGTH files n)
if(failed)
  message(FATAL_ERROR "nvcc: ${n} file(s), failed: ${failed}")
endif()
if(spilled)
  message("nvcc: ${n} file(s) compile cleanly for ${ARCHS}; register spills only in the exempt ${spilled}")
else()
  message("nvcc: ${n} file(s) compile cleanly for ${ARCHS}, no kernel spills registers")
endif()
