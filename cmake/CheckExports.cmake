# CheckExports.cmake — fail unless every symbol that LIBRARY defines in its
# dynamic symbol table starts with mnas_ and not with the library-internal
# mnas__ (run as a ctest with cmake -P).
#   cmake -DNM=/usr/bin/nm -DLIBRARY=libmnas.so -P CheckExports.cmake

if(NOT NM OR NOT LIBRARY)
  message(FATAL_ERROR "usage: cmake -DNM=<nm> -DLIBRARY=<shared library> -P CheckExports.cmake")
endif()

execute_process(
  COMMAND "${NM}" -D --defined-only "${LIBRARY}"
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} failed on ${LIBRARY}: ${err}")
endif()

string(REPLACE "\n" ";" lines "${out}")
set(count 0)
set(bad "")
foreach(line IN LISTS lines)
  # "<address> <type> <name>[@version]"
  if(NOT line MATCHES "^[0-9a-fA-F]+ +[A-Za-z] +([^ @]+)")
    continue()
  endif()
  set(symbol "${CMAKE_MATCH_1}")
  if(symbol MATCHES "^mnas__")
    list(APPEND bad "${symbol}")  # library-internal prefix
  elseif(symbol MATCHES "^mnas_")
    math(EXPR count "${count} + 1")
  elseif(NOT symbol MATCHES "^(_init|_fini)$")
    list(APPEND bad "${symbol}")
  endif()
endforeach()

if(bad)
  list(JOIN bad "\n  " bad_text)
  message(FATAL_ERROR "${LIBRARY} exports symbols outside the mnas_ namespace "
                      "(mark internal functions static or build with hidden visibility):\n  ${bad_text}")
endif()
if(count EQUAL 0)
  message(FATAL_ERROR "${LIBRARY} exports no mnas_ symbol at all")
endif()
message(STATUS "${LIBRARY}: ${count} exported symbols, all mnas_*")
