#!/usr/bin/env bash
# wrapper.sh - run a (non-Python) program with Copper's interposers loaded.
#
# Copper serves files under its prefix through two libraries that must be in the
# application process: libcopper-preload.so (LD_PRELOAD: open, stat, readlink, opendir,
# ... of Copper paths) and libcopper-audit.so (LD_AUDIT: the libraries ld.so loads
# itself, DT_NEEDED, dlopen, $ORIGIN). mpiexec does not set them for you, so put this
# wrapper between the launcher and the program:
#
#   eval "$(launch_copper.sh -v /tmp/$USER/copper)"
#   mpiexec -n 128 -ppn 12 wrapper.sh ./app /tmp/$USER/copper/lus/proj/input.dat
#
# The libraries come from COPPER_PRELOAD / COPPER_AUDIT (printed by launch_copper.sh);
# when those are unset, from ../lib next to this script. They are appended to any
# LD_PRELOAD / LD_AUDIT already set (a profiler, darshan, ...). A library that does not
# exist is skipped with a warning: the program then runs without Copper, reading the
# real paths, and never fails because of it. The program replaces this shell (exec),
# so its pid, exit status and signals are the program's own.
set -euo pipefail

readonly PROG=${0##*/}

if (($# == 0)) || [[ $1 == -h || $1 == --help ]]; then
    printf 'usage: %s program [args...]\n' "$PROG" >&2
    (($# == 0)) && exit 2
    exit 0
fi
[[ $1 != -- ]] || shift
(($#)) || { printf 'usage: %s program [args...]\n' "$PROG" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
lib_dir=$(cd "$here/.." && pwd -P)/lib
preload=${COPPER_PRELOAD:-$lib_dir/libcopper-preload.so}
audit=${COPPER_AUDIT:-$lib_dir/libcopper-audit.so}

# append VAR LIB: add LIB to the colon-separated list in VAR unless already there.
append() {
    local var=$1 lib=$2 cur
    if [[ ! -f $lib ]]; then
        printf '%s: warning: %s not found; %s unchanged (running without it)\n' \
            "$PROG" "$lib" "$var" >&2
        return 0
    fi
    cur=${!var:-}
    case ":${cur//[[:space:]]/:}:" in
        *":$lib:"*) ;; # already loaded (nested wrappers)
        *) export "$var=${cur:+$cur:}$lib" ;;
    esac
}

append LD_PRELOAD "$preload"
append LD_AUDIT "$audit"

exec "$@"
