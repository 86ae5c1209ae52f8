# Installs the build tree into a scratch prefix, checks which headers were installed, then builds
# and runs a separate project that finds framecast with find_package(). Run by ctest as
# package.find_package. The consumer is built with the same compiler flags (a sanitizer build's
# library needs its runtime).
cmake_minimum_required(VERSION 3.25)  # IN_LIST, among others
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}")
    endif()
endfunction()
# DESTDIR keeps every file, absolute destinations (/etc/framecast) included, in the scratch tree.
run(${CMAKE_COMMAND} -E env DESTDIR=${WORK_DIR}/root ${CMAKE_COMMAND} --install ${BUILD_DIR})

# What ships is the codec: its headers, and nothing of the io or backplane libraries, which are
# not installed. Every installed header must compile on its own (includes only what ships).
set(include_root ${WORK_DIR}/root${INSTALL_PREFIX}/include)
file(GLOB_RECURSE installed_headers RELATIVE ${include_root} ${include_root}/framecast/*)
if(NOT installed_headers)
    message(FATAL_ERROR "no framecast headers installed under ${include_root}")
endif()
set(header_sources "")
foreach(header IN LISTS installed_headers)
    if(header MATCHES "^framecast/io/" OR header MATCHES "backplane")
        message(FATAL_ERROR "installed ${header}, a header of a library that is not installed")
    endif()
    string(MAKE_C_IDENTIFIER ${header} name)
    file(WRITE ${WORK_DIR}/headers/${name}.cpp "#include <${header}>\n")
    list(APPEND header_sources ${WORK_DIR}/headers/${name}.cpp)
endforeach()
foreach(required IN ITEMS framecast/codec.hpp framecast/error.hpp)
    if(NOT required IN_LIST installed_headers)
        message(FATAL_ERROR "${required} is not installed")
    endif()
endforeach()

run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/consumer -B ${WORK_DIR}/build -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/root${INSTALL_PREFIX}
    "-DHEADER_SOURCES=${header_sources}"
    "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${LINKER_FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
message(STATUS "find_package(framecast) consumer built and ran; installed headers: ${installed_headers}")
