# FindBLIS.cmake — locate the BLIS library (https://github.com/flame/blis).
#
# Debian ships BLIS in three flavours that differ only in threading:
# libblis-serial-dev, libblis-pthread-dev and libblis-openmp-dev. Each puts
#   /usr/include/<multiarch>/blis-<flavour>/blis.h
#   /usr/lib/<multiarch>/blis-<flavour>/libblis.so
# and the alternatives system adds /usr/include/<multiarch>/blis.h and
# /usr/lib/<multiarch>/libblis.so pointing at one of them. There is no
# pkg-config file. An upstream `make install` gives <prefix>/include/blis/blis.h
# and <prefix>/lib/libblis.so (and a blis.pc).
#
# libmnas runs BLIS single-threaded inside its own worker pool, so when several
# flavours are installed the serial one is preferred, then pthread, then openmp.
#
# Hints (cache or normal variables, or environment for BLIS_ROOT):
#   BLIS_ROOT         prefix to search first
#   BLIS_INCLUDE_DIR  directory holding blis.h (skips the header search)
#   BLIS_LIBRARY      full path of the library (skips the library search)
#
# Results:
#   BLIS_FOUND, BLIS_INCLUDE_DIRS, BLIS_LIBRARIES, BLIS_VERSION (if known)
#   BLIS_FLAVOUR      serial | pthread | openmp | unknown
#   imported target BLIS::BLIS

include(FindPackageHandleStandardArgs)

set(_blis_flavours serial pthread openmp)

# Work out the flavour from a path such as .../blis-serial/libblis.so; symlinks
# (Debian's alternatives) are resolved first.
function(_blis_flavour_from_path path out)
  set(flavour unknown)
  if(path AND EXISTS "${path}")
    file(REAL_PATH "${path}" real)
    foreach(candidate IN LISTS _blis_flavours)
      if(real MATCHES "/blis-${candidate}(/|$)")
        set(flavour ${candidate})
        break()
      endif()
    endforeach()
  endif()
  set(${out} ${flavour} PARENT_SCOPE)
endfunction()

# Fallback for layouts whose path says nothing: blis.h records how BLIS was
# configured ("#if 1 / #define BLIS_ENABLE_OPENMP" when it is on).
function(_blis_flavour_from_header include_dir out)
  set(flavour unknown)
  if(include_dir AND EXISTS "${include_dir}/blis.h")
    file(STRINGS "${include_dir}/blis.h" lines LIMIT_COUNT 400)
    set(previous "")
    set(has_openmp FALSE)
    set(has_pthreads FALSE)
    set(seen_switch FALSE)
    foreach(line IN LISTS lines)
      if(line MATCHES "^#define BLIS_ENABLE_OPENMP$")
        set(seen_switch TRUE)
        if(previous MATCHES "^#if 1")
          set(has_openmp TRUE)
        endif()
      elseif(line MATCHES "^#define BLIS_ENABLE_PTHREADS$")
        set(seen_switch TRUE)
        if(previous MATCHES "^#if 1")
          set(has_pthreads TRUE)
        endif()
      endif()
      set(previous "${line}")
    endforeach()
    if(has_openmp)
      set(flavour openmp)
    elseif(has_pthreads)
      set(flavour pthread)
    elseif(seen_switch)
      set(flavour serial)
    endif()
  endif()
  set(${out} ${flavour} PARENT_SCOPE)
endfunction()

# Opportunistic pkg-config (upstream installs ship blis.pc; Debian does not).
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_BLIS QUIET blis)
endif()

# Debian's per-flavour folders, in order of preference. Only pairs whose
# header and library are both present count, so that the header always
# matches the library it is linked with.
if(NOT BLIS_INCLUDE_DIR AND NOT BLIS_LIBRARY)
  set(_blis_arch_dirs "")
  if(CMAKE_LIBRARY_ARCHITECTURE)
    list(APPEND _blis_arch_dirs "${CMAKE_LIBRARY_ARCHITECTURE}")
  endif()
  file(GLOB _blis_include_globs LIST_DIRECTORIES true "/usr/include/*/blis-*")
  foreach(dir IN LISTS _blis_include_globs)
    get_filename_component(parent "${dir}" DIRECTORY)
    get_filename_component(arch "${parent}" NAME)
    list(APPEND _blis_arch_dirs "${arch}")
  endforeach()
  list(REMOVE_DUPLICATES _blis_arch_dirs)

  # An explicit BLIS_ROOT replaces /usr here; the generic search below also
  # looks there first (CMake's <PackageName>_ROOT handling).
  set(_blis_roots "")
  if(DEFINED BLIS_ROOT)
    list(APPEND _blis_roots "${BLIS_ROOT}")
  endif()
  if(DEFINED ENV{BLIS_ROOT})
    list(APPEND _blis_roots "$ENV{BLIS_ROOT}")
  endif()
  if(NOT _blis_roots)
    set(_blis_roots "/usr")
  endif()

  set(_blis_pair_found FALSE)
  foreach(root IN LISTS _blis_roots)
    foreach(flavour IN LISTS _blis_flavours)
      foreach(arch IN LISTS _blis_arch_dirs)
        set(inc "${root}/include/${arch}/blis-${flavour}")
        set(libdir "${root}/lib/${arch}/blis-${flavour}")
        if(NOT EXISTS "${inc}/blis.h")
          continue()
        endif()
        foreach(name libblis.so libblis.a)
          if(EXISTS "${libdir}/${name}")
            set(BLIS_INCLUDE_DIR "${inc}" CACHE PATH "Directory holding blis.h" FORCE)
            set(BLIS_LIBRARY "${libdir}/${name}" CACHE FILEPATH "The BLIS library" FORCE)
            set(_blis_pair_found TRUE)
            break()
          endif()
        endforeach()
        if(_blis_pair_found)
          break()
        endif()
      endforeach()
      if(_blis_pair_found)
        break()
      endif()
    endforeach()
    if(_blis_pair_found)
      break()
    endif()
  endforeach()
endif()

# Generic search: hints, pkg-config, the alternatives symlinks in the multiarch
# folders, upstream's include/blis/ layout, then the remaining Debian folders.
file(GLOB _blis_extra_include_dirs LIST_DIRECTORIES true "/usr/include/*/blis-*")
file(GLOB _blis_extra_lib_dirs LIST_DIRECTORIES true "/usr/lib/*/blis-*")

find_path(BLIS_INCLUDE_DIR
  NAMES blis.h
  HINTS ${PC_BLIS_INCLUDEDIR} ${PC_BLIS_INCLUDE_DIRS}
  PATH_SUFFIXES blis
  PATHS ${_blis_extra_include_dirs}
  DOC "Directory holding blis.h")

find_library(BLIS_LIBRARY
  NAMES blis
  HINTS ${PC_BLIS_LIBDIR} ${PC_BLIS_LIBRARY_DIRS}
  PATHS ${_blis_extra_lib_dirs}
  DOC "The BLIS library")

_blis_flavour_from_path("${BLIS_LIBRARY}" BLIS_FLAVOUR)
if(BLIS_FLAVOUR STREQUAL "unknown" AND BLIS_INCLUDE_DIR)
  _blis_flavour_from_path("${BLIS_INCLUDE_DIR}/blis.h" BLIS_FLAVOUR)
endif()
if(BLIS_FLAVOUR STREQUAL "unknown")
  _blis_flavour_from_header("${BLIS_INCLUDE_DIR}" BLIS_FLAVOUR)
endif()

if(PC_BLIS_VERSION)
  set(BLIS_VERSION "${PC_BLIS_VERSION}")
endif()

find_package_handle_standard_args(BLIS
  REQUIRED_VARS BLIS_LIBRARY BLIS_INCLUDE_DIR
  VERSION_VAR BLIS_VERSION)

if(BLIS_FOUND)
  set(BLIS_INCLUDE_DIRS "${BLIS_INCLUDE_DIR}")
  set(BLIS_LIBRARIES "${BLIS_LIBRARY}")
  if(NOT TARGET BLIS::BLIS)
    add_library(BLIS::BLIS UNKNOWN IMPORTED)
    set_target_properties(BLIS::BLIS PROPERTIES
      IMPORTED_LOCATION "${BLIS_LIBRARY}"
      IMPORTED_LINK_INTERFACE_LANGUAGES C
      INTERFACE_INCLUDE_DIRECTORIES "${BLIS_INCLUDE_DIR}")
    # A static libblis needs what the shared one records as DT_NEEDED.
    if(BLIS_LIBRARY MATCHES "\\.a$")
      find_package(Threads QUIET)
      set(_blis_deps "")
      if(TARGET Threads::Threads)
        list(APPEND _blis_deps Threads::Threads)
      endif()
      list(APPEND _blis_deps m)
      if(BLIS_FLAVOUR STREQUAL "openmp")
        find_package(OpenMP QUIET COMPONENTS C)
        if(TARGET OpenMP::OpenMP_C)
          list(APPEND _blis_deps OpenMP::OpenMP_C)
        endif()
      endif()
      set_property(TARGET BLIS::BLIS PROPERTY INTERFACE_LINK_LIBRARIES "${_blis_deps}")
    endif()
  endif()
  if(NOT BLIS_FIND_QUIETLY)
    message(STATUS "BLIS flavour: ${BLIS_FLAVOUR} (${BLIS_LIBRARY})")
  endif()
endif()

mark_as_advanced(BLIS_INCLUDE_DIR BLIS_LIBRARY)
