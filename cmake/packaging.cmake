# CPack: `cpack -G DEB` in a build directory makes framecast_<version>_<arch>.deb for Debian 12.
set(CPACK_PACKAGE_NAME framecast)
set(CPACK_PACKAGE_VENDOR "framecast developers")
set(CPACK_PACKAGE_CONTACT "framecast developers <framecast@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})  # /usr in the presets
set(CPACK_SET_DESTDIR ON)  # the config file's destination is absolute (/etc/framecast)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # dpkg-shlibdeps fills Depends: (spdlog, fmt, libc...)
# Installed binaries are stripped, as Debian's policy asks (dh_strip): the build's line tables
# (-g1) serve profiling and backtraces in the build tree, not in /usr/bin.
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${PROJECT_SOURCE_DIR}/packaging/conffiles")
include(CPack)
