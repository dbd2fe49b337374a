# Compiles every .cu under kernels/ and tests/ with nvcc for each architecture (compile only) and
# fails on any error or warning, and on any kernel that uses local memory: ptxas -v reporting spill
# stores or loads above 0 bytes for an entry function (a spill in a hot loop is local-memory traffic
# the design never budgeted for), or a stack frame above 0 bytes (what spilling leaves, or a local
# array indexed at run time: local memory either way). Each failure names the file, the kernel and
# the architecture. Run by ctest (label nvcc):
#   cmake -DNVCC=<nvcc> -DROOT=<source dir> -DARCHS=80,90a [-DHOST_CXX=<g++>] [-DFILES=<f>,...] -P nvcc_check.cmake
# The file list is globbed when the test runs, so a new kernel is checked without reconfiguring
# (FILES replaces it: the self-test's planted kernels, nvcc_check_planted.cmake).
# It prints registers, stack, spills and static shared memory per kernel and architecture (the
# table of kernels/README.md, "Registers, spills and shared memory", comes from this output).
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

if(FILES)
  string(REPLACE "," ";" files "${FILES}")
else()
  file(GLOB_RECURSE files LIST_DIRECTORIES false ${ROOT}/kernels/*.cu ${ROOT}/tests/*.cu)
endif()
list(SORT files)
# Kernel names demangled where c++filt is found (the report names the template arguments).
find_program(CXXFILT NAMES c++filt)
# Objects go to a private temporary directory, never into the source tree.
set(tmp_root /tmp)
if(DEFINED ENV{TMPDIR} AND IS_DIRECTORY "$ENV{TMPDIR}")
  set(tmp_root $ENV{TMPDIR})
endif()
string(RANDOM LENGTH 12 tag)
set(tmp ${tmp_root}/rlx-nvcc-check-${tag})
file(MAKE_DIRECTORY ${tmp})

# Test kernels whose stack frame is their point (no spills allowed there either): the planted
# out-of-bounds bug indexes a local array past its end, for simt to catch; the planted
# address-space bug hands ldmatrix a row of a thread's local array (not shared memory).
set(stack_ok simt_planted_oob_kernel simt_planted_not_shared_kernel)

set(failed)
foreach(f IN LISTS files)
  get_filename_component(dir ${f} DIRECTORY)
  execute_process(
    COMMAND ${NVCC} ${ccbin} -std=c++17 -x cu -c ${f} -o ${tmp}/out.o ${gencode} --threads 0
            -I${ROOT}/kernels -I${ROOT}/include -I${ROOT}/host -I${dir}
            -Werror all-warnings -Xcompiler=-Wall,-Wextra,-Werror -Xptxas=-v
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  file(RELATIVE_PATH rel ${ROOT} ${f})
  # ptxas -v: "Compiling entry function '<name>' for 'sm_XX'", then (after a "Function properties"
  # line) "<n> bytes stack frame, <n> bytes spill stores, <n> bytes spill loads".
  set(log "${out}${err}")
  if(CXXFILT)
    file(WRITE ${tmp}/log.txt "${log}")
    execute_process(COMMAND ${CXXFILT} INPUT_FILE ${tmp}/log.txt OUTPUT_VARIABLE demangled RESULT_VARIABLE frc)
    if(frc EQUAL 0)
      set(log "${demangled}")
    endif()
  endif()
  string(REPLACE ";" "," log "${log}")
  string(REPLACE "\n" ";" lines "${log}")
  set(entry "?")
  set(name "?")
  set(spills)
  set(resources)
  set(frame 0)
  set(st 0)
  set(ld 0)
  foreach(line IN LISTS lines)
    if(line MATCHES "Compiling entry function '([^']+)' for '(sm_[0-9a-z]+)'")
      set(name "${CMAKE_MATCH_1}")
      set(entry "${CMAKE_MATCH_1} (${CMAKE_MATCH_2})")
    elseif(line MATCHES "([0-9]+) bytes stack frame, ([0-9]+) bytes spill stores, ([0-9]+) bytes spill loads")
      set(frame ${CMAKE_MATCH_1})
      set(st ${CMAKE_MATCH_2})
      set(ld ${CMAKE_MATCH_3})
    elseif(line MATCHES "Used ([0-9]+) registers")
      # the entry's last line: registers, then (when there is any) static shared memory
      set(regs ${CMAKE_MATCH_1})
      set(smem 0)
      if(line MATCHES "([0-9]+) bytes smem")
        set(smem ${CMAKE_MATCH_1})
      endif()
      list(APPEND resources "  ${entry}: ${regs} registers, ${frame} bytes stack, ${st}/${ld} bytes spill stores/loads, ${smem} bytes static smem")
      set(stack_allowed FALSE)
      foreach(k IN LISTS stack_ok)
        if(name MATCHES "^${k}")
          set(stack_allowed TRUE)
        endif()
      endforeach()
      if(NOT st EQUAL 0 OR NOT ld EQUAL 0)
        list(APPEND spills "  ${entry}: ${st} bytes spill stores, ${ld} bytes spill loads (${regs} registers)")
      elseif(NOT frame EQUAL 0 AND NOT stack_allowed)
        list(APPEND spills "  ${entry}: ${frame} bytes stack frame (local memory: spilling or a local array indexed at run time)")
      endif()
      set(frame 0)
      set(st 0)
      set(ld 0)
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
    message("FAIL ${rel}: local memory (ptxas -v)\n${spill_text}")
    list(APPEND failed ${rel})
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
message("nvcc: ${n} file(s) compile cleanly for ${ARCHS}, no kernel spills registers or has a stack frame "
        "(except the listed test kernels: ${stack_ok})")
