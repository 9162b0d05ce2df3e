# `cmake --install`: the static libraries, the public headers, a CMake package
# (find_package(h2loop) → h2loop::h2loop), a pkg-config file (h2loop.pc) and
# the h2loop binary. tests/consumer/ builds an application against the result.
#
#   <prefix>/include/h2loop/{http,server,websocket}.h            #include "h2loop/server.h"
#   <prefix>/include/h2loop/eventloop/...               #include "eventloop/loop.h"
#   <prefix>/lib/libh2loop_*.a
#   <prefix>/lib/cmake/h2loop/h2loop{Config,ConfigVersion,Targets}.cmake
#   <prefix>/lib/pkgconfig/h2loop.pc
#   <prefix>/bin/h2loop
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(H2LOOP_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/h2loop)

# Applications link h2loop::h2loop; it carries the rest, and C++20 (the public
# headers need it).
set_target_properties(h2loop_lib PROPERTIES EXPORT_NAME h2loop)
target_compile_features(h2loop_lib INTERFACE cxx_std_20)

# The libraries' include directory is the source tree while building; once
# installed, include/ ("h2loop/server.h") and include/h2loop ("eventloop/loop.h").
install(TARGETS h2loop_eventloop h2loop_h2 h2loop_h1 h2loop_net h2loop_http h2loop_server h2loop_lib
  EXPORT h2loopTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} ${CMAKE_INSTALL_INCLUDEDIR}/h2loop)

# The public headers: the application API, and the event loop for embedding
# (an existing event_base, or a Loop of the application's own).
install(FILES
  ${PROJECT_SOURCE_DIR}/include/h2loop/http.h
  ${PROJECT_SOURCE_DIR}/include/h2loop/server.h
  ${PROJECT_SOURCE_DIR}/include/h2loop/websocket.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/h2loop)
install(FILES
  ${PROJECT_SOURCE_DIR}/eventloop/loop.h
  ${PROJECT_SOURCE_DIR}/eventloop/loop_factory.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/h2loop/eventloop)
install(FILES
  ${PROJECT_SOURCE_DIR}/eventloop/libevent/libevent_loop.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/h2loop/eventloop/libevent)

if(TARGET h2loop)
  install(TARGETS h2loop RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# CMake package.
install(EXPORT h2loopTargets
  NAMESPACE h2loop::
  FILE h2loopTargets.cmake
  DESTINATION ${H2LOOP_INSTALL_CMAKEDIR})
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/h2loopConfig.cmake.in
  ${PROJECT_BINARY_DIR}/h2loopConfig.cmake
  INSTALL_DESTINATION ${H2LOOP_INSTALL_CMAKEDIR})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/h2loopConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/h2loopConfig.cmake
  ${PROJECT_BINARY_DIR}/h2loopConfigVersion.cmake
  DESTINATION ${H2LOOP_INSTALL_CMAKEDIR})

# pkg-config. Relocatable like the CMake package (prefix found from the .pc
# file's own place) unless the install directories are absolute.
set(H2LOOP_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${H2LOOP_PC_DIR}")
  set(H2LOOP_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH H2LOOP_PC_UP /${H2LOOP_PC_DIR} /)
  string(REGEX REPLACE "/$" "" H2LOOP_PC_UP "${H2LOOP_PC_UP}")
  set(H2LOOP_PC_PREFIX "\${pcfiledir}/${H2LOOP_PC_UP}")
endif()
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(H2LOOP_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(H2LOOP_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
configure_file(${CMAKE_CURRENT_LIST_DIR}/h2loop.pc.in ${PROJECT_BINARY_DIR}/h2loop.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/h2loop.pc DESTINATION ${H2LOOP_PC_DIR})
