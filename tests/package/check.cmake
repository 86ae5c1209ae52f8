# Installs the build tree into a scratch prefix, then builds and runs a separate project that
# finds framecast with find_package(). Run by ctest as package.find_package. The consumer is
# built with the same compiler flags (a sanitizer build's library needs its runtime).
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}")
    endif()
endfunction()
# DESTDIR keeps every file, absolute destinations (/etc/framecast) included, in the scratch tree.
run(${CMAKE_COMMAND} -E env DESTDIR=${WORK_DIR}/root ${CMAKE_COMMAND} --install ${BUILD_DIR})
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/consumer -B ${WORK_DIR}/build -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/root${INSTALL_PREFIX}
    "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${LINKER_FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
message(STATUS "find_package(framecast) consumer built and ran")
