#!/usr/bin/env bash
# Tree benchmark (simulated nodes on this machine):
#  1. a large file reaching N nodes through Copper's tree (every node's rank reads it
#     through the shim at once, cold) versus MPI_Bcast of the same bytes to N ranks, each
#     writing its copy to local disk as an agent does; medians of several rounds, ratio
#     of throughputs (goal >= 0.8);
#  2. time from launch_copper.sh to "tree ready" for 16 simulated nodes (goal < 2 s).
# Writes bench/results/tree-<UTC date>.txt. Sizes: BENCH_NODES (8), BENCH_MB (256),
# BENCH_ROUNDS (3).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=$here/out/bin
nodes=${BENCH_NODES:-8}
mb=${BENCH_MB:-256}
rounds=${BENCH_ROUNDS:-3}
mpiexec=${MPIEXEC:-$(command -v mpiexec.mpich || command -v mpiexec)}
mpicc=${MPICC:-$(command -v mpicc.mpich || command -v mpicc)}
prefix=/tmp/${USER:-$(id -un)}/copper-tree-bench
work=$(mktemp -d /tmp/copper-tree-bench.XXXXXX)
export COPPER_RUNTIME_DIR=$work/run
trap '"$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

"$mpicc" -O2 -Wall -Werror -o "$work/bcast" "$here/tools/bench/bcast.c"
# Half random, half text: LZ4 has something to do, but not everything compresses.
data=$work/data/big.bin
mkdir -p "$work/data" "$work/out"
python3 - "$data" "$mb" <<'PY'
import os, sys
path, mb = sys.argv[1], int(sys.argv[2])
text = (b"import numpy as np  # the same lines again and again\n" * 20000)[:1 << 20]
with open(path, "wb") as f:
    for i in range(mb):
        f.write(os.urandom(1 << 20) if i % 2 == 0 else text)
PY
bytes=$(stat -c %s "$data")

: >"$work/bcast.times"; : >"$work/tree.times"
for r in $(seq "$rounds"); do
    sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    "$mpiexec" -n "$nodes" "$work/bcast" "$data" "$work/out" >>"$work/bcast.times"
    eval "$("$bin/launch_copper.sh" -v "$prefix" -n "$nodes" -M $((mb + 16))M -d "$work/logs" -s 30 2>/dev/null)"
    sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    s=$(now)
    for k in $(seq 0 $((nodes - 1))); do
        COPPER_NODE=$k LD_PRELOAD=$COPPER_PRELOAD cat "$COPPER_PREFIX$data" >/dev/null &
    done
    wait
    e=$(now)
    echo "$e - $s" | bc -l >>"$work/tree.times"
    "$bin/copper" stats -v "$prefix" >"$work/stats.txt" || true
    "$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1
done
b=$(median <"$work/bcast.times"); t=$(median <"$work/tree.times")

: >"$work/launch.times"
for r in $(seq "$rounds"); do
    s=$(now)
    eval "$("$bin/launch_copper.sh" -v "$prefix" -n 16 -d "$work/logs" -s 30 2>/dev/null)"
    e=$(now)
    echo "$e - $s" | bc -l >>"$work/launch.times"
    "$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1
done
l=$(median <"$work/launch.times")

out=$here/bench/results/tree-$(date -u +%F).txt
mkdir -p "$(dirname "$out")"
{
    echo "# Copper tree benchmark, $(date -u '+%F %T') UTC, $(nproc) cores, $(uname -r)"
    echo "# command: ./build.sh --target=Bench (tools/bench/tree_bench.sh), BENCH_NODES=$nodes BENCH_MB=$mb BENCH_ROUNDS=$rounds"
    printf 'file: %d bytes (half random, half text) to %d simulated nodes, cold, median of %d rounds\n' "$bytes" "$nodes" "$rounds"
    printf 'MPI_Bcast (1 MiB chunks, each rank writes its copy):  %8.3f s  %8.1f MB/s per node\n' "$b" "$(echo "$bytes / $b / 1000000" | bc -l)"
    printf 'Copper tree (every node cat through the shim):         %8.3f s  %8.1f MB/s per node\n' "$t" "$(echo "$bytes / $t / 1000000" | bc -l)"
    printf 'tree / bcast throughput ratio: %.2f (goal >= 0.8)\n' "$(echo "$b / $t" | bc -l)"
    printf 'launch_copper.sh -n 16 until tree ready: median %.3f s of %d (goal < 2 s)\n' "$l" "$rounds"
    echo "counters of the last round:"
    sed 's/^/  /' "$work/stats.txt"
} | tee "$out"
