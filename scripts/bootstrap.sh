#!/bin/sh
# Set up a Debian 12 machine for libmnas, then build and run the demo or the
# whole test suite.
#   sh scripts/bootstrap.sh deps          install the missing Debian packages
#   sh scripts/bootstrap.sh demo [ARGS]   deps, build (default preset), run the M-NAS demo
#   sh scripts/bootstrap.sh test          deps, Open MPI (+ python3-torch if it installs), ci
#                                         preset (-Werror, valgrind, the MPI tests under
#                                         mpirun --oversubscribe -np 1, 2 and 3), asan preset
#   sh scripts/bootstrap.sh datasets [ARGS]  Fashion-MNIST + rendered glyphs into
#                                         $XDG_CACHE_HOME/mnas-datasets or build/datasets
set -eu

usage() {
    echo "usage: sh scripts/bootstrap.sh demo [demo arguments...] | test | deps | datasets [--out DIR]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
mode=$1
shift

# Work from the repository root whatever the caller's directory.
script_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$script_dir/.." && pwd)
cd "$root"

say() {
    printf '==> %s\n' "$*"
}

pkg_installed() {
    dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

# Any flavour of BLIS will do (libblis-dev, -serial-, -pthread-, -openmp-dev).
blis_installed() {
    dpkg-query -W -f='${db:Status-Status} ${Package}\n' 'libblis-*dev' 2>/dev/null |
        grep -q '^installed '
}

deps() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "bootstrap: dpkg-query not found; this script expects Debian 12" >&2
        exit 1
    fi
    missing=""
    for pkg in cmake gcc make pkg-config libpng-dev zlib1g-dev check valgrind python3 python3-numpy abigail-tools doxygen; do
        pkg_installed "$pkg" || missing="$missing $pkg"
    done
    blis_installed || missing="$missing libblis-serial-dev"

    if [ -z "$missing" ]; then
        say "all build dependencies are installed"
        return 0
    fi
    apt_install "$missing"
}

# Install the Debian packages named in $1 (as root, or through sudo).
apt_install() {
    missing=$1
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=sudo
        else
            echo "bootstrap: missing packages:$missing" >&2
            echo "bootstrap: not root and no sudo; install them and run again" >&2
            exit 1
        fi
    fi
    say "installing:$missing"
    $sudo apt-get update
    # shellcheck disable=SC2086  # one word per package
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
}

# The real datasets of the few-shot image experiments (docs/data.md), built
# outside git from Debian packages: Fashion-MNIST (IDX) and rendered glyphs.
datasets() {
    ds_missing=""
    for pkg in dataset-fashion-mnist python3-pil fonts-dejavu-core fonts-freefont-ttf \
               fonts-liberation2 fonts-noto-core; do
        pkg_installed "$pkg" || ds_missing="$ds_missing $pkg"
    done
    [ -z "$ds_missing" ] || apt_install "$ds_missing"
    /usr/bin/python3 scripts/build_datasets.py "$@"
}

configure_and_build() {
    say "configure ($1)"
    cmake --preset "$1"
    say "build ($1)"
    cmake --build --preset "$1"
}

# Runs ctest with a preset, streaming its output; leaves the summary line in
# the variable named by $2 and returns ctest's exit status.
run_ctest() {
    log="build/ctest-$1.log"
    rc_file="build/ctest-$1.rc"
    say "test ($1)"
    { ctest --preset "$1"; echo $? >"$rc_file"; } 2>&1 | tee "$log"
    rc=$(cat "$rc_file" 2>/dev/null || echo 1)
    line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
    [ -n "$line" ] || line="no ctest summary (ctest exited with $rc)"
    eval "$2=\$line"
    return "$rc"
}

# "N% tests passed, F tests failed out of T" -> "F T"
summary_counts() {
    printf '%s\n' "$1" | sed -n 's/^[0-9]*% tests passed, \([0-9]*\) tests\{0,1\} failed out of \([0-9]*\).*/\1 \2/p'
}

# Optional test dependencies: python3-torch (Debian 12's archive) for the
# ctest python_torch_oracle. Best effort: if it cannot be installed (no root,
# no network, not in the archive) the test is skipped, not failed.
optional_test_deps() {
    for pkg in python3-torch; do
        pkg_installed "$pkg" && continue
        ( apt_install " $pkg" ) ||
            say "$pkg not installed: the tests that need it (python_torch_oracle) will be skipped"
    done
}

# Open MPI for libmnas_mpi and its tests (label mpi: mpirun --oversubscribe
# -np 1, 2 and 3; docs/distributed.md).
mpi_test_deps() {
    mpi_missing=""
    for pkg in libopenmpi-dev openmpi-bin; do
        pkg_installed "$pkg" || mpi_missing="$mpi_missing $pkg"
    done
    [ -z "$mpi_missing" ] || apt_install "$mpi_missing"
}

test_all() {
    deps
    mpi_test_deps
    optional_test_deps
    mkdir -p build
    status=0
    ci_line="not run"
    asan_line="not run"

    configure_and_build ci
    run_ctest ci ci_line || status=1

    configure_and_build asan
    run_ctest asan asan_line || status=1

    echo
    say "summary"
    echo "ci   (-Werror, with valgrind): $ci_line"
    echo "asan (ASan + UBSan):          $asan_line"
    failed=0
    total=0
    for line in "$ci_line" "$asan_line"; do
        counts=$(summary_counts "$line")
        if [ -z "$counts" ]; then
            status=1
            continue
        fi
        # shellcheck disable=SC2086
        set -- $counts
        failed=$((failed + $1))
        total=$((total + $2))
    done
    if [ "$total" -gt 0 ]; then
        echo "$(((total - failed) * 100 / total))% tests passed, $failed tests failed out of $total"
    fi
    return "$status"
}

demo() {
    deps
    configure_and_build default
    exe=build/default/examples/mnas_demo
    if [ -x "$exe" ]; then
        say "running $exe $*"
        exec "$exe" "$@"
    fi
    echo "bootstrap: $exe was not built; example programs in build/default/examples:"
    found=0
    for f in build/default/examples/*; do
        if [ -f "$f" ] && [ -x "$f" ]; then
            echo "  $f"
            found=1
        fi
    done
    [ "$found" -eq 1 ] || echo "  (none)"
    return 1
}

case "$mode" in
    deps) deps ;;
    test) test_all ;;
    demo) demo "$@" ;;
    datasets) datasets "$@" ;;
    *) usage ;;
esac
