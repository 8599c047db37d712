# FuzzSmokeRun.cmake — run one libFuzzer harness for a few seconds from its
# committed seed corpus (new inputs go to a scratch folder, never into the
# repository); fails on any crash, leak or sanitizer report. Prints
# MNAS_FUZZ_SKIPPED when the harness was not built (no Clang/libFuzzer).
#   cmake -DHARNESS=<exe> -DCORPUS=<seed dir> -DWORK=<scratch dir> -DSECONDS=10 -P FuzzSmokeRun.cmake

if(NOT EXISTS "${HARNESS}")
  message("MNAS_FUZZ_SKIPPED: ${HARNESS} was not built")
  return()
endif()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/corpus" "${WORK}/artifacts")
execute_process(
  COMMAND "${HARNESS}" -max_total_time=${SECONDS} -seed=1 -print_final_stats=1
          -artifact_prefix=${WORK}/artifacts/ "${WORK}/corpus" "${CORPUS}"
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err)
string(REGEX MATCH "stat::number_of_executed_units: *[0-9]+" runs "${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${HARNESS} failed (exit ${rc}); artifacts in ${WORK}/artifacts\n${err}")
endif()
message(STATUS "${HARNESS}: ${runs}, no crashes")
