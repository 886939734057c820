#!/usr/bin/env bash
# Metadata memory benchmark (one node): a tree of DIRS x FILES entries (400 x 500 = 200,400
# with the directories) walked through the shim (os.walk + lstat of every entry) by an agent
# without a bound on metadata entries and by one with --max-meta-entries BOUND (20,000), and
# directly: the agent's resident memory after the walk (VmRSS, VmHWM), its metadata counters,
# and the walk's time (first walk, and a second one with the node warm or evicting). Writes
# bench/results/meta-<UTC date>.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=$here/out/bin
py=/usr/bin/python3
dirs=${BENCH_META_DIRS:-400}
files=${BENCH_META_FILES:-500}
bound=${BENCH_META_BOUND:-20000}
prefix=/tmp/${USER:-$(id -un)}/copper-meta-bench
work=$(mktemp -d /var/tmp/copper-meta-bench.XXXXXX)
export COPPER_RUNTIME_DIR=$work/run
trap '"$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

cat >"$work/make.py" <<'PY'
import os, sys
root, dirs, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(root)
for i in range(dirs):
    d = os.path.join(root, "d%03d" % i)
    os.mkdir(d)
    for j in range(files):
        fd = os.open(os.path.join(d, "f%03d.py" % j), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"x" * (j % 7))
        os.close(fd)
PY
cat >"$work/walk.py" <<'PY'
import hashlib, os, sys
root = sys.argv[1]
h, n = hashlib.sha256(), 0
for d, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(dirs + files):
        p = os.path.join(d, name)
        st = os.lstat(p)
        h.update(("%s %d %o\n" % (p[len(root):], st.st_size, st.st_mode)).encode())
        n += 1
print(n, h.hexdigest())
PY
tree=$work/tree
"$py" "$work/make.py" "$tree" "$dirs" "$files"

ms() { # output-file command... -> elapsed milliseconds; the command's stdout goes to output-file
    local out=$1 s e
    shift
    s=$(date +%s%N); "$@" >"$out"; e=$(date +%s%N)
    echo $(((e - s) / 1000000))
}
direct_walk() { env -u LD_PRELOAD -u LD_AUDIT "$py" -S "$work/walk.py" "$tree"; }
shim_walk() { env LD_PRELOAD="$COPPER_PRELOAD" "$py" -S "$work/walk.py" "$COPPER_PREFIX$tree"; }
agent_pid() { cat "$(find "$COPPER_RUNTIME_DIR" -name agent.pid | head -1)"; }
kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$2/status"; }
meta() { "$bin/copper" stats -v "$prefix" --json | "$py" -c '
import json, sys
n = json.load(sys.stdin)["nodes"][0]
print(n["meta_entries"], n["meta_high_water"], n["meta_evicted"])'; }

direct_walk >/dev/null # the tree in the page cache, as for the runs below
t_direct=$(ms "$work/direct.out" direct_walk)
rows=()
for mode in unbounded bounded; do
    opt=(--max-meta-entries 0)
    [[ $mode == unbounded ]] || opt=(--max-meta-entries "$bound")
    eval "$("$bin/launch_copper.sh" -v "$prefix" -d "$work/logs" -s 30 --no-fuse -b "" "${opt[@]}")"
    pid=$(agent_pid)
    rss0=$(kib VmRSS "$pid")
    t1=$(ms "$work/$mode.1" shim_walk)
    t2=$(ms "$work/$mode.2" shim_walk)
    read -r entries high evicted < <(meta)
    rss=$(kib VmRSS "$pid"); hwm=$(kib VmHWM "$pid")
    for k in 1 2; do
        cmp -s "$work/direct.out" "$work/$mode.$k" || { echo "walk $k through Copper ($mode) differs from the direct walk" >&2; exit 1; }
    done
    label=$mode
    [[ $mode == unbounded ]] || label="bounded ($bound)"
    rows+=("$(printf '%-22s %8s %8s %9s %9s %9s %12s %10s %9s' "$label" "$t1" "$t2" "$rss0" "$rss" "$hwm" "$entries" "$high" "$evicted")")
    eval "${mode}_rss=$rss ${mode}_entries=$entries"
    "$bin/stop_copper.sh" -v "$prefix" >/dev/null
done

out=$here/bench/results/meta-$(date -u +%F).txt
mkdir -p "$(dirname "$out")"
{
    echo "# Copper metadata memory benchmark, $(date -u '+%F %T') UTC, $(nproc) cores, $(uname -r)"
    echo "# command: ./build.sh --target=Bench (tools/bench/meta_bench.sh); tree $dirs x $files files ($(head -c 6 "$work/direct.out" | cut -d' ' -f1) entries), walk = os.walk + lstat of every entry"
    echo "direct walk: $t_direct ms"
    echo "agent                  walk1 ms walk2 ms  RSS0 KiB   RSS KiB   HWM KiB meta_entries high_water  evicted"
    printf '%s\n' "${rows[@]}"
    # Both agents hold the same manifest record (full at --replay-max-entries) and start alike:
    # the difference is the metadata (and the garbage the collector has not taken yet).
    echo "about $(((unbounded_rss - bounded_rss) * 1024 / (unbounded_entries - bounded_entries))) bytes of the agent's resident memory per metadata entry"
} | tee "$out"
