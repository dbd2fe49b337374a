# rlx_find(<name> PC <pkg-config module> HEADER <header> LIB <library> DEB <Debian package>)
# defines RLX::<name>: through pkg-config where there is one, else by its header and library (a
# machine with a bare toolchain, or a prefix given with CMAKE_PREFIX_PATH). The build calls it
# through rlx_dependency(FIND ...); it is installed with the CMake package, where rlxConfig.cmake
# calls it again for rlx::rlx_static. Sets, in the caller's scope: RLX_FIND_FOUND,
# RLX_FIND_MESSAGE, and for rlx.pc RLX_FIND_PC_REQUIRES (the module) or RLX_FIND_PC_LIBS (the
# library file itself).
include_guard(GLOBAL)

function(rlx_find name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "PC;HEADER;LIB;DEB" "")
  string(TOUPPER ${name} up)
  set(found TRUE)
  set(message "")
  if(NOT TARGET RLX::${name})
    find_package(PkgConfig QUIET)
    if(PKG_CONFIG_FOUND)
      pkg_check_modules(${up} QUIET IMPORTED_TARGET ${arg_PC})
    endif()
    if(TARGET PkgConfig::${up})
      add_library(RLX::${name} ALIAS PkgConfig::${up})
    else()
      find_path(RLX_${up}_INCLUDE ${arg_HEADER})
      find_library(RLX_${up}_LIB ${arg_LIB})
      if(RLX_${up}_INCLUDE AND RLX_${up}_LIB)
        add_library(RLX::${name} INTERFACE IMPORTED)
        set_target_properties(RLX::${name} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES ${RLX_${up}_INCLUDE}
                              INTERFACE_LINK_LIBRARIES ${RLX_${up}_LIB})
      else()
        set(found FALSE)
        set(message "rlx needs ${name} (${arg_HEADER} and lib${arg_LIB}): apt install ${arg_DEB}, "
                    "or point CMAKE_PREFIX_PATH at a prefix holding it")
      endif()
    endif()
  endif()
  set(RLX_FIND_FOUND ${found} PARENT_SCOPE)
  set(RLX_FIND_MESSAGE "${message}" PARENT_SCOPE)
  set(RLX_FIND_PC_REQUIRES "" PARENT_SCOPE)
  set(RLX_FIND_PC_LIBS "" PARENT_SCOPE)
  if(TARGET PkgConfig::${up})
    set(RLX_FIND_PC_REQUIRES ${arg_PC} PARENT_SCOPE)
  elseif(RLX_${up}_LIB)
    set(RLX_FIND_PC_LIBS ${RLX_${up}_LIB} PARENT_SCOPE)
  endif()
endfunction()
