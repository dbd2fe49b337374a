# NCCL, for tensor parallelism over CUDA devices (host/dist/comm_nccl.c). Looked for in NCCL_ROOT
# (CMake or environment variable), then the CUDA toolkit (which ships it), then the system paths.
# Only nccl.h is needed to build: rlx loads libnccl.so.2 with dlopen at the first NCCL call (a
# process holds one NCCL; a framework like torch ships its own), so nothing links it and no
# package file names it. Variables:
#   RLX_HAVE_NCCL          ON when the NCCL backend is built (nccl.h >= 2.14 found)
#   RLX_NCCL_INCLUDE_DIR   the directory of nccl.h
#   RLX_NCCL_LIBRARY       the libnccl CMake found, if any: dlopen's last resort (after the
#                          RLX_NCCL_LIBRARY environment variable and the loader's search)
#   RLX_NCCL_VERSION       of the header, e.g. 2.28.9
# Without NCCL rlx still builds and runs at tp = 1; the NCCL entry points then say why they cannot.
set(RLX_NCCL "AUTO" CACHE STRING "Build the NCCL backend (tensor parallelism over CUDA devices): AUTO|ON|OFF")
set_property(CACHE RLX_NCCL PROPERTY STRINGS AUTO ON OFF)
set(RLX_HAVE_NCCL OFF)
if(RLX_HAVE_CUDA AND NOT RLX_NCCL STREQUAL "OFF")
  set(_rlx_nccl_hints ${NCCL_ROOT} $ENV{NCCL_ROOT} ${CUDAToolkit_LIBRARY_ROOT} ${CUDAToolkit_TARGET_DIR})
  find_path(RLX_NCCL_INCLUDE_DIR nccl.h HINTS ${_rlx_nccl_hints} PATH_SUFFIXES include
            PATHS ${CUDAToolkit_INCLUDE_DIRS} /usr/include /usr/local/include)
  find_library(RLX_NCCL_LIBRARY NAMES nccl HINTS ${_rlx_nccl_hints} PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu
               PATHS ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu)
  if(RLX_NCCL_INCLUDE_DIR)
    file(STRINGS ${RLX_NCCL_INCLUDE_DIR}/nccl.h _rlx_nccl_v REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) +[0-9]+")
    string(REGEX REPLACE ".*NCCL_MAJOR +([0-9]+).*" "\\1" _maj "${_rlx_nccl_v}")
    string(REGEX REPLACE ".*NCCL_MINOR +([0-9]+).*" "\\1" _min "${_rlx_nccl_v}")
    string(REGEX REPLACE ".*NCCL_PATCH +([0-9]+).*" "\\1" _pat "${_rlx_nccl_v}")
    set(RLX_NCCL_VERSION "${_maj}.${_min}.${_pat}")
    if(RLX_NCCL_VERSION VERSION_LESS 2.14)
      message(STATUS "rlx: NCCL ${RLX_NCCL_VERSION} (${RLX_NCCL_INCLUDE_DIR}/nccl.h) is older than 2.14 (non-blocking communicators): not used")
    else()
      set(RLX_HAVE_NCCL ON)
    endif()
  endif()
  if(NOT RLX_HAVE_NCCL AND RLX_NCCL STREQUAL "ON")
    message(FATAL_ERROR "RLX_NCCL=ON but no NCCL >= 2.14 was found (set NCCL_ROOT to its install prefix)")
  endif()
elseif(RLX_NCCL STREQUAL "ON")
  message(FATAL_ERROR "RLX_NCCL=ON needs the CUDA backend (RLX_CUDA)")
endif()
if(RLX_HAVE_NCCL)
  message(STATUS "rlx: NCCL ${RLX_NCCL_VERSION} (nccl.h in ${RLX_NCCL_INCLUDE_DIR}; libnccl.so.2 loaded at run time, else ${RLX_NCCL_LIBRARY})")
else()
  message(STATUS "rlx: NCCL OFF (tensor parallelism on CUDA devices unavailable; tp = 1 and simt/cpu ranks work)")
endif()
