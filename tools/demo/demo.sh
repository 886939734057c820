#!/usr/bin/env bash
# Copper demo on this machine: launch Copper with simulated nodes, import numpy directly
# and through Copper, print the timings and how many file-system calls the application
# process made on the real numpy directory in each case, then stop Copper.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=$here/out/bin
py=/usr/bin/python3
pkgs=/usr/lib/python3/dist-packages
nodes=${DEMO_NODES:-2}
runs=${DEMO_RUNS:-5}
user=${USER:-$(id -un)}
prefix=${DEMO_PREFIX:-/tmp/$user/copper}
work=$(mktemp -d /tmp/copper-demo.XXXXXX)
script='import numpy; a = numpy.arange(1e6); print(numpy.__file__, float(a.sum()))'

cleanup() { "$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

echo "== launching Copper: $nodes simulated nodes, prefix $prefix"
t0=$(date +%s%N)
eval "$("$bin/launch_copper.sh" -v "$prefix" -n "$nodes" -d "$work/logs" -s 20)"
t1=$(date +%s%N)
echo "ready in $(( (t1 - t0) / 1000000 )) ms"

# Median wall time in ms of $runs runs of a command.
median_ms() {
  local -a times=()
  for _ in $(seq "$runs"); do
    local s e
    s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N)
    times+=($(( (e - s) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}

# File-system calls naming the real numpy directory, made by the application process.
real_calls() {
  local trace=$work/trace.$RANDOM
  strace -f -qq -o "$trace" -e trace=%file,%desc "$@" >/dev/null
  grep -c "\"$pkgs/numpy" "$trace" || true
}

direct() { "$py" -c "$script"; }
copper() {
  COPPER_NODE=$1 LD_PRELOAD=$COPPER_PRELOAD LD_AUDIT=$COPPER_AUDIT PYTHONPATH=$COPPER_PREFIX$pkgs "$py" -c "$script"
}

echo "== direct import"
direct
echo "== through Copper, node by node"
for k in $(seq 0 $((nodes - 1))); do
  s=$(date +%s%N); out=$(copper "$k"); e=$(date +%s%N)
  echo "node $k (cold): $out  [$(( (e - s) / 1000000 )) ms]"
done

direct_ms=$(median_ms direct)
copper_ms=$(median_ms copper 0)
direct_calls=$(real_calls "$py" -c "$script")
copper_calls=$(COPPER_NODE=0 LD_PRELOAD=$COPPER_PRELOAD LD_AUDIT=$COPPER_AUDIT PYTHONPATH=$COPPER_PREFIX$pkgs real_calls "$py" -c "$script")

echo
printf '%-28s %14s %36s\n' "import numpy" "median ms ($runs)" "calls on the real numpy directory"
printf '%-28s %14s %36s\n' "direct (local disk)" "$direct_ms" "$direct_calls"
printf '%-28s %14s %36s\n' "through Copper (warm)" "$copper_ms" "$copper_calls"
echo
echo "== each agent's counters (copper stats; pfs_ops = real file-system operations):"
"$bin/copper" stats -v "$prefix"
total_pfs=$("$bin/copper" stats -v "$prefix" --json | "$py" -c 'import json, sys; print(json.load(sys.stdin)["total"]["pfs_ops"])')
imports=$(( nodes + runs + 1 ))
echo
echo "real file-system operations for the $imports imports through Copper above:"
echo "  without Copper (every import reads it): about $(( imports * direct_calls )) ($direct_calls per import)"
echo "  with Copper: $total_pfs, all by the tree's root agent; the application processes: $copper_calls"
"$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1
