#!/bin/sh
# libmnas_mpi exports mnas_mpi_* and nothing else.
bad=$(nm -D --defined-only "$1" | awk '{print $3}' | grep -v '^mnas_mpi_' | grep -v '^$')
if [ -n "$bad" ]; then echo "unexpected exports: $bad"; exit 1; fi
n=$(nm -D --defined-only "$1" | grep -c ' mnas_mpi_')
[ "$n" -ge 7 ] || { echo "only $n mnas_mpi_ exports"; exit 1; }
echo "$n mnas_mpi_ symbols exported, nothing else"
