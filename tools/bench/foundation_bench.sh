#!/usr/bin/env bash
# Foundation benchmark (one node): warm `import numpy` directly from local disk and through
# Copper (shim + audit), runs interleaved so both see the same machine noise; and the cost
# of a stat answered by the agent versus one answered by the process's own cache and by the
# kernel. Prints medians and ratios; writes bench/results/foundation-<UTC date>.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=$here/out/bin
runs=${BENCH_RUNS:-21}
py=/usr/bin/python3
pkgs=/usr/lib/python3/dist-packages
prefix=/tmp/${USER:-$(id -un)}/copper-bench
work=$(mktemp -d /tmp/copper-bench.XXXXXX)
trap '"$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
eval "$("$bin/launch_copper.sh" -v "$prefix" -d "$work/logs" 2>/dev/null)"

import_once() { # mode -> elapsed microseconds
  local s e
  s=$(date +%s%N)
  if [ "$1" = direct ]; then "$py" -c 'import numpy'
  else LD_PRELOAD=$COPPER_PRELOAD LD_AUDIT=$COPPER_AUDIT PYTHONPATH=$COPPER_PREFIX$pkgs "$py" -c 'import numpy'; fi
  e=$(date +%s%N)
  echo $(( (e - s) / 1000 ))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

import_once copper >/dev/null   # cold: fills the node cache
import_once direct >/dev/null
: >"$work/direct"; : >"$work/copper"
for _ in $(seq "$runs"); do
  import_once direct >>"$work/direct"
  import_once copper >>"$work/copper"
done
d=$(median <"$work/direct"); c=$(median <"$work/copper")

cat >"$work/stat.py" <<'PY'
import os, sys, time
pre = sys.argv[1]
files = []
for d, dn, fn in os.walk("/usr/lib/python3/dist-packages/numpy"):
    files += [os.path.join(d, f) for f in fn]
paths = [pre + f for f in files[:1000]]
t0 = time.perf_counter()
for p in paths: os.stat(p)
t1 = time.perf_counter()
for p in paths: os.stat(p)
t2 = time.perf_counter()
print(f"{(t1 - t0) / len(paths) * 1e6:.2f} {(t2 - t1) / len(paths) * 1e6:.2f}")
PY
LD_PRELOAD=$COPPER_PRELOAD "$py" "$work/stat.py" "$COPPER_PREFIX" >/dev/null  # warm the agent
: >"$work/agent_stat"; : >"$work/cache_stat"; : >"$work/native_stat"
for _ in $(seq 7); do
  read -r a b < <(LD_PRELOAD=$COPPER_PRELOAD "$py" "$work/stat.py" "$COPPER_PREFIX")
  echo "$a" >>"$work/agent_stat"; echo "$b" >>"$work/cache_stat"
  read -r a _ < <("$py" "$work/stat.py" "")
  echo "$a" >>"$work/native_stat"
done

report=$(cat <<TXT
Copper foundation benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uname -r)
command: ./build.sh --target=Bench   (tools/bench/foundation_bench.sh, BENCH_RUNS=$runs)
warm import numpy, median of $runs interleaved runs:
  direct (local disk)      $((d / 1000)).$(( (d % 1000) / 100 )) ms
  through Copper (warm)    $((c / 1000)).$(( (c % 1000) / 100 )) ms
  ratio Copper/direct      $(awk -v c="$c" -v d="$d" 'BEGIN {printf "%.3f", c / d}')
stat of a Copper path, median of 7 runs x 1000 distinct files (microseconds per call):
  answered by the agent (round trip)   $(median <"$work/agent_stat")
  answered by the process cache        $(median <"$work/cache_stat")
  native stat on the real path         $(median <"$work/native_stat")
TXT
)
echo "$report"
mkdir -p "$here/bench/results"
echo "$report" >"$here/bench/results/foundation-$(date -u +%Y-%m-%d).txt"
