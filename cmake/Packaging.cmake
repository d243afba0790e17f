# Installation rules and the Debian package (`make package`, or
# `cmake --build build --target package`): build/tlsrelay_<version>_<arch>.deb.
#
# The paths are Debian's: the package installs under /usr, plus the unit in
# /lib/systemd/system and the conffile in /etc/tlsrelay (absolute on purpose:
# systemd and dpkg look there whatever the prefix). deploy/README.md says what
# goes where and why.

include(GNUInstallDirs)

install(TARGETS tlsrelay RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_SOURCE_DIR}/deploy/tlsrelay.service DESTINATION /lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/deb/tlsrelay.toml DESTINATION /etc/tlsrelay)
set(_tlsrelay_doc ${CMAKE_INSTALL_DATAROOTDIR}/doc/tlsrelay)
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${_tlsrelay_doc} RENAME copyright)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/deb/README.Debian DESTINATION ${_tlsrelay_doc})
install(FILES ${PROJECT_SOURCE_DIR}/deploy/tlsrelay-privileged-ports.conf
        DESTINATION ${_tlsrelay_doc}/examples)
# The commented example with every key (written with the config file support).
if(EXISTS ${PROJECT_SOURCE_DIR}/deploy/tlsrelay.toml)
  install(FILES ${PROJECT_SOURCE_DIR}/deploy/tlsrelay.toml DESTINATION ${_tlsrelay_doc}/examples)
endif()

# tlsrelay(1), generated from the binary's own --help and that of every
# subcommand (deploy/deb/man-help.sh), so it cannot drift from the flags.
# Not for sanitizer builds: nothing packages those.
find_program(HELP2MAN_EXECUTABLE help2man)
find_program(GZIP_EXECUTABLE gzip)
if(HELP2MAN_EXECUTABLE AND GZIP_EXECUTABLE AND NOT TLSRELAY_SANITIZE AND NOT TLSRELAY_TSAN)
  set(_man_page ${CMAKE_BINARY_DIR}/man/tlsrelay.1)
  add_custom_command(
    OUTPUT ${_man_page}.gz
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
    COMMAND ${CMAKE_COMMAND} -E env TLSRELAY_BINARY=$<TARGET_FILE:tlsrelay>
            ${HELP2MAN_EXECUTABLE} --no-info --version-string "tlsrelay ${PROJECT_VERSION}"
            --name "relay for TCP/TLS services of servers behind NAT"
            --include ${PROJECT_SOURCE_DIR}/deploy/deb/tlsrelay.h2m
            --output ${_man_page} ${PROJECT_SOURCE_DIR}/deploy/deb/man-help.sh
    # -n: no name or time stamp in the archive, so equal pages give equal files.
    COMMAND ${GZIP_EXECUTABLE} -9 -n -f ${_man_page}
    DEPENDS tlsrelay ${PROJECT_SOURCE_DIR}/deploy/deb/man-help.sh
            ${PROJECT_SOURCE_DIR}/deploy/deb/tlsrelay.h2m
    COMMENT "Generating the man page tlsrelay.1 with help2man"
    VERBATIM)
  add_custom_target(tlsrelay_man ALL DEPENDS ${_man_page}.gz)
  install(FILES ${_man_page}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(STATUS "help2man not found or sanitizer build: no man page (make deps installs help2man)")
endif()

set(TLSRELAY_PACKAGE_MAINTAINER "tlsrelay maintainers <maintainers@tlsrelay.invalid>"
    CACHE STRING "Maintainer field of the .deb")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME tlsrelay)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_CONTACT ${TLSRELAY_PACKAGE_MAINTAINER})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "relay for TCP/TLS services of servers behind NAT")
set(CPACK_PACKAGE_DESCRIPTION
    "tlsrelay lets a program behind NAT (the server) offer a TCP or TLS service on a
public host: the server keeps one TLS control connection to the relay, which
gives it a public port and joins every client that connects there with a fresh
reverse connection from the server. It speaks the protocol of tx_tlsrelay and
its own protocol 2 (tokens, names, warm connections).

This package installs the relay as a hardened systemd service
(tlsrelay.service) reading /etc/tlsrelay/tlsrelay.toml.")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends from the libraries the binary links, as dpkg-shlibdeps finds them.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# groupadd and groupdel (postinst, postrm) come from passwd, which every
# Debian system has (Priority: required).
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/deb/conffiles
    ${PROJECT_SOURCE_DIR}/deploy/deb/postinst
    ${PROJECT_SOURCE_DIR}/deploy/deb/prerm
    ${PROJECT_SOURCE_DIR}/deploy/deb/postrm)
# Maintainer scripts 0755, the rest 0644, whatever the checkout's modes.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# The unit and the conffile go to absolute paths (see above); that is meant.
set(CPACK_WARN_ON_ABSOLUTE_INSTALL_DESTINATION OFF)
set(CPACK_OUTPUT_FILE_PREFIX ${CMAKE_BINARY_DIR})
include(CPack)
