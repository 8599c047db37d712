/* Run-time version queries, to compare with the compile-time macros. */
#include <mnas/version.h>
#include <mnas/core.h>

int mnas_version_number(void) { return MNAS_VERSION_NUMBER; }
const char *mnas_version_string(void) { return MNAS_VERSION_STRING; }
