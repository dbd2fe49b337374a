# rlx_package.cmake: the library's dependencies, declared once, and what installs the package.
#
#   rlx_dependency(PKGCONFIG <PREFIX> <module>)            e.g. rlx_dependency(PKGCONFIG JANSSON jansson)
#   rlx_dependency(PACKAGE <Name> TARGETS <t>... PC_LIBS <flags>...)
#                                                         e.g. rlx_dependency(PACKAGE Threads TARGETS Threads::Threads PC_LIBS -pthread)
#   rlx_dependency(LIBRARY <name>|<path>)                 e.g. rlx_dependency(LIBRARY m), or a library file
#   rlx_dependency(FIND <name> PC <module> HEADER <h> LIB <lib> DEB <package>)
#                                                         RLX::<name> by pkg-config, else by header and library
#                                                         (cmake/rlx_find.cmake, installed with the package)
#
# Each call finds the dependency now and records it: the library targets link what was recorded
# (RLX_DEPENDENCY_LINK), the installed rlxConfig.cmake finds it again for rlx::rlx_static
# (find_dependency / pkg_check_modules), and rlx.pc lists it (Requires.private / Libs.private).
# So a new dependency of the library is one line in the top-level CMakeLists.txt.
include_guard(GLOBAL)
include(GNUInstallDirs)
include(${CMAKE_CURRENT_LIST_DIR}/rlx_find.cmake)

function(rlx_dependency kind)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "TARGETS;PC_LIBS")
  set(name_args ${arg_UNPARSED_ARGUMENTS})
  if(kind STREQUAL "PKGCONFIG")
    list(GET name_args 0 prefix)
    list(GET name_args 1 module)
    find_package(PkgConfig REQUIRED)
    pkg_check_modules(${prefix} REQUIRED IMPORTED_TARGET ${module})
    set_property(GLOBAL APPEND PROPERTY RLX_DEPENDENCY_LINK PkgConfig::${prefix})
    set_property(GLOBAL APPEND PROPERTY RLX_DEPENDENCY_CONFIG
                 "find_dependency(PkgConfig)\n  pkg_check_modules(${prefix} REQUIRED QUIET IMPORTED_TARGET ${module})")
    set_property(GLOBAL APPEND PROPERTY RLX_DEPENDENCY_PC_REQUIRES ${module})
  elseif(kind STREQUAL "PACKAGE")
    list(GET name_args 0 package)
    find_package(${package} REQUIRED)
    set_property(GLOBAL APPEND PROPERTY RLX_DEPENDENCY_LINK ${arg_TARGETS})
    set_property(GLOBAL APPEND PROPERTY RLX_DEPENDENCY_CONFIG "find_dependency(${package})")
    set_property(GLOBAL APPEND PROPERTY RLX_DEPENDENCY_PC_LIBS ${arg_PC_LIBS})
  elseif(kind STREQUAL "FIND")
    rlx_find(${ARGN})
    if(NOT RLX_FIND_FOUND)
      message(FATAL_ERROR "${RLX_FIND_MESSAGE}")
    endif()
    list(GET name_args 0 name)
    list(JOIN ARGN " " find_args)
    set_property(GLOBAL APPEND PROPERTY RLX_DEPENDENCY_LINK RLX::${name})
    set_property(GLOBAL APPEND PROPERTY RLX_DEPENDENCY_CONFIG
                 "rlx_find(${find_args})\n  if(NOT RLX_FIND_FOUND)\n    set(rlx_FOUND FALSE)\n    set(rlx_NOT_FOUND_MESSAGE \"\${RLX_FIND_MESSAGE}\")\n    return()\n  endif()")
    set_property(GLOBAL APPEND PROPERTY RLX_DEPENDENCY_PC_REQUIRES ${RLX_FIND_PC_REQUIRES})
    set_property(GLOBAL APPEND PROPERTY RLX_DEPENDENCY_PC_LIBS ${RLX_FIND_PC_LIBS})
  elseif(kind STREQUAL "LIBRARY")
    list(GET name_args 0 lib)
    set_property(GLOBAL APPEND PROPERTY RLX_DEPENDENCY_LINK ${lib})
    if(IS_ABSOLUTE ${lib})
      set_property(GLOBAL APPEND PROPERTY RLX_DEPENDENCY_PC_LIBS ${lib}) # a library file found by path
    else()
      set_property(GLOBAL APPEND PROPERTY RLX_DEPENDENCY_PC_LIBS -l${lib})
    endif()
  else()
    message(FATAL_ERROR "rlx_dependency: kind '${kind}' is not FIND, PKGCONFIG, PACKAGE or LIBRARY")
  endif()
endfunction()

# rlx_install_package(): install rules for the headers, both libraries, the command, the CMake
# package (rlx::rlx, rlx::rlx_static) and rlx.pc. Called once, after the targets exist.
function(rlx_install_package)
  include(GNUInstallDirs)
  include(CMakePackageConfigHelpers)
  set(cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/rlx)
  set(pc_dir ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

  install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/rlx DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
  install(TARGETS rlx EXPORT rlxTargets
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(TARGETS rlx_core EXPORT rlxStaticTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(TARGETS rlx_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(EXPORT rlxTargets NAMESPACE rlx:: DESTINATION ${cmake_dir})
  install(EXPORT rlxStaticTargets NAMESPACE rlx:: DESTINATION ${cmake_dir})

  get_property(config_deps GLOBAL PROPERTY RLX_DEPENDENCY_CONFIG)
  list(REMOVE_DUPLICATES config_deps)
  list(JOIN config_deps "\n  " RLX_CONFIG_DEPENDENCIES)
  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/rlxConfig.cmake.in ${PROJECT_BINARY_DIR}/rlxConfig.cmake
                                INSTALL_DESTINATION ${cmake_dir})
  # 0.x: a minor release may change the ABI (the SONAME carries it), so only the same minor matches.
  if(PROJECT_VERSION_MAJOR EQUAL 0)
    set(compat SameMinorVersion)
  else()
    set(compat SameMajorVersion)
  endif()
  write_basic_package_version_file(${PROJECT_BINARY_DIR}/rlxConfigVersion.cmake COMPATIBILITY ${compat})
  install(FILES ${PROJECT_BINARY_DIR}/rlxConfig.cmake ${PROJECT_BINARY_DIR}/rlxConfigVersion.cmake
          ${PROJECT_SOURCE_DIR}/cmake/rlx_find.cmake DESTINATION ${cmake_dir})

  # rlx.pc finds the prefix from its own place (${pcfiledir}), so `cmake --install --prefix P`
  # works whatever CMAKE_INSTALL_PREFIX was at configure time.
  file(RELATIVE_PATH pc_to_prefix /prefix/${pc_dir} /prefix)
  string(REGEX REPLACE "/$" "" RLX_PC_PREFIX "\${pcfiledir}/${pc_to_prefix}")
  set(RLX_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(RLX_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
  get_property(pc_requires GLOBAL PROPERTY RLX_DEPENDENCY_PC_REQUIRES)
  get_property(pc_libs GLOBAL PROPERTY RLX_DEPENDENCY_PC_LIBS)
  list(REMOVE_DUPLICATES pc_requires)
  list(REMOVE_DUPLICATES pc_libs)
  list(JOIN pc_requires ", " RLX_PC_REQUIRES_PRIVATE)
  list(JOIN pc_libs " " RLX_PC_LIBS_PRIVATE)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/rlx.pc.in ${PROJECT_BINARY_DIR}/rlx.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/rlx.pc DESTINATION ${pc_dir})
endfunction()
