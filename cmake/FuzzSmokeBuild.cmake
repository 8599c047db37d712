# FuzzSmokeBuild.cmake — build the libFuzzer harnesses with Clang in a
# separate build folder, for the fuzz smoke tests (ctest label `fuzz`).
# Prints MNAS_FUZZ_SKIPPED (the test counts as skipped) when Clang cannot
# link -fsanitize=fuzzer.
#   cmake -DCLANG=<clang> -DSOURCE=<source dir> -DBINARY=<build dir> -P FuzzSmokeBuild.cmake

file(MAKE_DIRECTORY "${BINARY}")
file(WRITE "${BINARY}/probe.c" "#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
execute_process(COMMAND "${CLANG}" -fsanitize=fuzzer,address "${BINARY}/probe.c" -o "${BINARY}/probe"
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message("MNAS_FUZZ_SKIPPED: ${CLANG} cannot link -fsanitize=fuzzer "
          "(Debian: apt-get install libclang-rt-14-dev): ${err}")
  return()
endif()
execute_process(
  COMMAND "${CMAKE_COMMAND}" -S "${SOURCE}" -B "${BINARY}" -DCMAKE_C_COMPILER=${CLANG}
          -DMNAS_FUZZ=ON -DMNAS_BUILD_TESTS=OFF -DMNAS_BUILD_BENCH=OFF -DMNAS_BUILD_EXAMPLES=OFF
          -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS_DEBUG=-O1 -g"
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the fuzz build failed")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --build "${BINARY}" --target mnas_fuzzers -j 2 RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the fuzz harnesses failed")
endif()
