# CAF 0.17.6 as packaged by Debian ships neither a CMake config nor a
# pkg-config file, so the three libraries are located by hand.
find_path(CAF_INCLUDE_DIR caf/all.hpp)
foreach(comp core io openssl)
  find_library(CAF_${comp}_LIBRARY NAMES caf_${comp})
  if(CAF_${comp}_LIBRARY AND NOT TARGET CAF::${comp})
    add_library(CAF::${comp} UNKNOWN IMPORTED)
    set_target_properties(CAF::${comp} PROPERTIES
      IMPORTED_LOCATION "${CAF_${comp}_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}")
  endif()
endforeach()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CAF REQUIRED_VARS CAF_INCLUDE_DIR CAF_core_LIBRARY
                                  CAF_io_LIBRARY CAF_openssl_LIBRARY)
