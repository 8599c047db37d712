/** @file
 * @brief libmnas — the export macro. Every public declaration carries MNAS_API; the
 * library is built with hidden visibility, so only mnas_* symbols leave it. */
#ifndef MNAS_EXPORT_H
#define MNAS_EXPORT_H

#if defined(_WIN32) || defined(__CYGWIN__)
#  if defined(MNAS_BUILDING_LIBRARY)
#    define MNAS_API __declspec(dllexport)
#  else
#    define MNAS_API
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define MNAS_API __attribute__((visibility("default")))
#else
#  define MNAS_API
#endif

#endif /* MNAS_EXPORT_H */
