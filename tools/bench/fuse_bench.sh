#!/usr/bin/env bash
# FUSE benchmark (one node): `import numpy` cold (first import after launch) and warm
# (median of BENCH_RUNS fresh processes), through the FUSE mount with no LD_PRELOAD,
# through the shim, and directly; and how many FUSE requests a warm import makes (the
# kernel caches entries, attributes, negative lookups, pages and listings for the life of
# the mount). Writes bench/results/fuse-<UTC date>.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=$here/out/bin
runs=${BENCH_RUNS:-15}
py=/usr/bin/python3
pkgs=/usr/lib/python3/dist-packages
prefix=/tmp/${USER:-$(id -un)}/copper-fuse-bench
work=$(mktemp -d /tmp/copper-fuse-bench.XXXXXX)
export COPPER_RUNTIME_DIR=$work/run
trap '"$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { # command... -> elapsed milliseconds (3 decimals)
    local s e
    s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N)
    echo "scale=3; ($e - $s) / 1000000" | bc
}
direct() { env -u LD_PRELOAD -u LD_AUDIT "$py" -c 'import numpy'; }
mount_import() { env -u LD_PRELOAD -u LD_AUDIT PYTHONPATH="$prefix$pkgs" "$py" -c 'import numpy'; }
shim_import() { env LD_PRELOAD="$COPPER_PRELOAD" LD_AUDIT="$COPPER_AUDIT" PYTHONPATH="$COPPER_PREFIX$pkgs" "$py" -c 'import numpy'; }
fuse_total() { "$bin/copper" stats -v "$prefix" --json | "$py" -c 'import json,sys; d=json.load(sys.stdin); print(d["nodes"][0]["fuse_requests"]["total"], d["total"]["pfs_ops"])'; }
launch() { eval "$("$bin/launch_copper.sh" -v "$prefix" -d "$work/logs" -s 30 2>/dev/null)"; }
stop() { "$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1; }

direct >/dev/null
launch
cold_mount=$(ms mount_import)
read -r cold_requests cold_pfs < <(fuse_total)
warm_one=$(ms mount_import)
read -r after_one _ < <(fuse_total)
stop
launch
cold_shim=$(ms shim_import)
: >"$work/d"; : >"$work/m"; : >"$work/s"
for _ in $(seq "$runs"); do
    ms direct >>"$work/d"
    ms mount_import >>"$work/m"
    ms shim_import >>"$work/s"
done
read -r before _ < <(fuse_total)
mount_import
read -r after _ < <(fuse_total)
stop
d=$(median <"$work/d"); m=$(median <"$work/m"); s=$(median <"$work/s")

out=$here/bench/results/fuse-$(date -u +%F).txt
mkdir -p "$(dirname "$out")"
{
    echo "# Copper FUSE benchmark, $(date -u '+%F %T') UTC, $(nproc) cores, $(uname -r)"
    echo "# command: ./build.sh --target=Bench (tools/bench/fuse_bench.sh), BENCH_RUNS=$runs"
    echo "import numpy (ms)            cold      warm median of $runs"
    printf '  direct (local disk)    %8s  %8s\n' "-" "$d"
    printf '  through the FUSE mount %8s  %8s  (ratio to direct %.2f)\n' "$cold_mount" "$m" "$(echo "$m / $d" | bc -l)"
    printf '  through the shim       %8s  %8s  (ratio to direct %.2f)\n' "$cold_shim" "$s" "$(echo "$s / $d" | bc -l)"
    echo "FUSE requests: cold import $cold_requests (file-system operations $cold_pfs);"
    echo "  first warm import $((after_one - cold_requests)) (first warm took $warm_one ms); a warm import after $runs more: $((after - before))"
} | tee "$out"
