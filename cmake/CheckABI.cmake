# CheckABI.cmake — compare the shared library's ABI with the committed
# baseline (abi/libmnas.abi, written by abidw) and fail on anything but
# additions (run as a ctest with cmake -P; see docs/abi.md).
#   cmake -DABIDIFF=<abidiff> -DBASELINE=abi/libmnas.abi -DLIBRARY=libmnas.so
#         -DHEADERS="include/mnas;build/include/mnas" -DSUPPRESSIONS=abi/libmnas.abignore
#         -P CheckABI.cmake
#
# abidiff's exit status is a bit field: 1 error, 2 usage error, 4 ABI change,
# 8 incompatible ABI change (ABIDIFF_ABI_INCOMPATIBLE_CHANGE). Bit 8 fails.
# abidiff sets only bit 4 for changed parameter or return types and changed
# type layouts, so its summary is read too: any removed or changed function
# or variable fails; added ones pass (the ABI grows within a major version).

if(NOT ABIDIFF OR NOT BASELINE OR NOT LIBRARY)
  message(FATAL_ERROR "usage: cmake -DABIDIFF=<abidiff> -DBASELINE=<abi xml> -DLIBRARY=<so> "
                      "[-DHEADERS=<dir;dir>] [-DSUPPRESSIONS=<file>] -P CheckABI.cmake")
endif()

set(args "")
foreach(dir IN LISTS HEADERS)
  list(APPEND args --hd2 "${dir}")
endforeach()
if(SUPPRESSIONS)
  list(APPEND args --suppressions "${SUPPRESSIONS}")
endif()

execute_process(
  COMMAND "${ABIDIFF}" ${args} "${BASELINE}" "${LIBRARY}"
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err
  RESULT_VARIABLE rc)
message("${out}${err}")
if(NOT rc MATCHES "^[0-9]+$")
  message(FATAL_ERROR "abidiff did not run: ${rc}")
endif()
math(EXPR error_bits "${rc} & 3")
math(EXPR incompatible "${rc} & 8")
if(error_bits)
  message(FATAL_ERROR "abidiff failed (exit status ${rc})")
endif()
if(incompatible)
  message(FATAL_ERROR "ABI check: incompatible change (abidiff exit status ${rc}, ABIDIFF_ABI_INCOMPATIBLE_CHANGE)")
endif()

set(bad "")
foreach(kind Functions Variables)
  if(out MATCHES "${kind} changes summary: ([0-9]+) Removed[^,]*, ([0-9]+) Changed[^,]*, ([0-9]+) Added")
    if(NOT CMAKE_MATCH_1 EQUAL 0)
      list(APPEND bad "${CMAKE_MATCH_1} ${kind} removed")
    endif()
    if(NOT CMAKE_MATCH_2 EQUAL 0)
      list(APPEND bad "${CMAKE_MATCH_2} ${kind} changed")
    endif()
  endif()
endforeach()
if(out MATCHES "([0-9]+) Removed function symbols? not referenced" AND NOT CMAKE_MATCH_1 EQUAL 0)
  list(APPEND bad "${CMAKE_MATCH_1} function symbols removed")
endif()
if(bad)
  string(REPLACE ";" ", " bad "${bad}")
  message(FATAL_ERROR "ABI check: incompatible change against ${BASELINE}: ${bad} "
                      "(abidiff exit status ${rc}). Only additions are allowed within a major version; "
                      "see docs/abi.md.")
endif()
message(STATUS "ABI check: compatible with ${BASELINE} (abidiff exit status ${rc})")
