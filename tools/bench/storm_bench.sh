#!/usr/bin/env bash
# Import-storm benchmark on one machine. The packages sit on a PFS model (copper-pfs-model:
# a FUSE passthrough where every metadata operation waits in one queue,
# 200 us each by default, and nothing is cached by the client kernel), so "direct" means
# every rank asks the PFS, as on a parallel file system under load.
#
# Scenarios, same run: local disk (the floor), direct on the PFS model, Copper through the
# shim, Copper through the FUSE mount; at several simulated node counts with several ranks
# per node; each job runs the workload twice (cold: first run of the job; warm: a second
# run, one second later, once the agents have finished writing their copies).
# Workloads: `import numpy`; a Pynamic-style generated package (tools/bench/pynamic_gen.py:
# pure-Python modules, C extensions built with gcc now, shared libraries they link through
# $ORIGIN), all imported; and a dataset walk (an ImageFolder-like tree every rank lists
# with os.scandir and reads); on request (--workloads "... torch"), `import torch` (Debian's
# python3-torch, run only where it is installed, skipped with a line otherwise).
#
#   storm_bench.sh [--quick] [--nodes "1 2 4 8 16"] [--ranks R] [--service-us US]
#                  [--workloads "numpy pynamic dataset"] [--out DIR] [--report DIR]
#
# Writes DIR/storm-<UTC date>.json (default DIR: bench/results; with other workloads than the
# default three, storm-<UTC date>-<workloads>.json), prints a summary, and writes REPORT.md
# with SVG plots (tools/bench/report.py) into --report (default bench/) when numpy was run.
# --quick (CI): nodes "1 2", 1 rank per node, 100 files; it checks nothing about time.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=$here/out/bin
py=/usr/bin/python3
nodes_list="1 2 4 8 16"
ranks=2
service_us=200
out_dir=$here/bench/results
quick=0
workloads="numpy pynamic dataset"
files=1000   # dataset files (20 classes)
pyn=(--modules 300 --extensions 50 --libraries 10)
report_dir=  # where REPORT.md and plots/ go (default: bench/, or --out with --quick)
while (($#)); do
    case $1 in
        --quick) quick=1; nodes_list="1 2"; ranks=1; files=100; pyn=(--modules 30 --extensions 5 --libraries 2); shift ;;
        --nodes) nodes_list=$2; shift 2 ;;
        --ranks) ranks=$2; shift 2 ;;
        --service-us) service_us=$2; shift 2 ;;
        --workloads) workloads=$2; shift 2 ;;
        --out) out_dir=$2; shift 2 ;;
        --report) report_dir=$2; shift 2 ;;
        *) echo "storm_bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

work=$(mktemp -d /tmp/copper-storm.XXXXXX)
src=$work/pfs           # the "parallel file system" content
mnt=$work/pfsmnt        # the PFS model's mount: what applications name
prefix=$work/copper
export COPPER_RUNTIME_DIR=$work/run
model_pid=
cleanup() {
    "$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1 || true
    if [[ -n $model_pid ]]; then kill -TERM "$model_pid" 2>/dev/null || true; wait "$model_pid" 2>/dev/null || true; fi
    fusermount3 -u "$mnt" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The workloads' files on the PFS: numpy (Debian's), and a dataset of 2,000 small files.
mkdir -p "$src/pkgs" "$src/data"
cp -a /usr/lib/python3/dist-packages/numpy "$src/pkgs/"
# shellcheck source=torch-env.sh
source "$here/tools/bench/torch-env.sh"
workloads=$(without_torch_unless_installed storm_bench.sh "$workloads")
[[ -n ${workloads// /} ]] || { echo "storm_bench.sh: no workload to run" >&2; exit 0; }
[[ " $workloads " != *" torch "* ]] || copy_torch "$src/pkgs"
"$py" - "$src/data" "$files" <<'PY'
import os, sys
root, per = sys.argv[1], max(1, int(sys.argv[2]) // 20)
for c in range(20):
    d = os.path.join(root, "class%02d" % c)
    os.makedirs(d)
    for i in range(per):
        with open(os.path.join(d, "img%03d.bin" % i), "wb") as f:
            f.write(os.urandom(1024 + (i * 37) % 3072))
PY
"$py" "$here/tools/bench/pynamic_gen.py" "$src/pynamic" "${pyn[@]}"
cat >"$work/do_pynamic.py" <<'PY'
import pynamic_pkg.everything as e
print(e.TOTAL)
PY
cat >"$work/do_import.py" <<'PY'
import numpy
print(float(numpy.arange(1000.0).sum()))
PY
cat >"$work/do_torch.py" <<'PY'
import torch
print(float(torch.arange(1000.0).sum()))
PY
cat >"$work/do_walk.py" <<'PY'
import os, sys
root, total = sys.argv[1], 0
for d in sorted(os.scandir(root), key=lambda e: e.name):
    for e in sorted(os.scandir(d.path), key=lambda e: e.name):
        with open(e.path, "rb") as f:
            total += len(f.read())
print(total)
PY

"$bin/copper-pfs-model" "$src" --mount "$mnt" --service-us "$service_us" --model-stats "$work/model.json" >"$work/model.out" 2>&1 &
model_pid=$!
for _ in $(seq 100); do [[ -e $work/model.json ]] && grep -q " $mnt " /proc/mounts && break; sleep 0.05; done
grep -q " $mnt " /proc/mounts || { echo "storm_bench.sh: the PFS model did not mount" >&2; cat "$work/model.out" >&2; exit 1; }

# shellcheck source=model-count.sh
source "$here/tools/bench/model-count.sh"
model_ops() { model_ops_of "$work/model.json"; }
now() { date +%s.%N; }

# run_ranks NODES MODE WORKLOAD -> seconds until the slowest rank is done (all start at once)
run_ranks() {
    local n=$1 mode=$2 wl=$3 k r s e fail=0 pids=() path arg
    s=$(now)
    for ((k = 0; k < n; k++)); do
        for ((r = 0; r < ranks; r++)); do
            case $mode in
                local) path=$src ;;
                direct) path=$mnt ;;
                shim) path=$prefix$mnt ;;
                fuse) if ((k == 0)); then path=$prefix$mnt; else path=$prefix.n$k$mnt; fi ;;
            esac
            case $wl in
                numpy) arg=(env PYTHONPATH="$path/pkgs" "$py" "$work/do_import.py") ;;
                torch) arg=(env PYTHONPATH="$path/pkgs" "$py" "$work/do_torch.py") ;;
                pynamic) arg=(env PYTHONPATH="$path/pynamic" "$py" "$work/do_pynamic.py") ;;
                *) arg=("$py" "$work/do_walk.py" "$path/data") ;;
            esac
            if [[ $mode == shim ]]; then
                COPPER_NODE=$k LD_PRELOAD=$COPPER_PRELOAD LD_AUDIT=$COPPER_AUDIT COPPER_PREFIX=$prefix "${arg[@]}" >"$work/out.$k.$r" 2>&1 &
            else
                env -u LD_PRELOAD -u LD_AUDIT "${arg[@]}" >"$work/out.$k.$r" 2>&1 &
            fi
            pids+=($!)
        done
    done
    for p in "${pids[@]}"; do wait "$p" || fail=1; done
    e=$(now)
    ((fail == 0)) || { echo "storm_bench.sh: a rank failed ($mode, $wl, $n nodes):" >&2; cat "$work"/out.* >&2; exit 1; }
    printf '%.4f\n' "$(echo "$e - $s" | bc -l)"
}

agent_rss_kb() { # mean VmRSS of the prefix's agents
    local total=0 count=0 pid d
    for d in "$COPPER_RUNTIME_DIR"/*/; do
        [[ -r $d/agent.pid ]] || continue
        read -r pid <"$d/agent.pid" || continue
        total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
        count=$((count + 1))
    done
    ((count)) && echo $((total / count)) || echo 0
}

results=$work/results.jsonl
: >"$results"
record() { # scenario workload nodes cold_s warm_s pfs_ops tree_bytes rss_kb
    printf '{"scenario":"%s","workload":"%s","nodes":%s,"ranks_per_node":%s,"cold_s":%s,"warm_s":%s,"pfs_ops":%s,"tree_bytes":%s,"agent_rss_kb":%s}\n' \
        "$1" "$2" "$3" "$ranks" "$4" "$5" "$6" "$7" "$8" >>"$results"
    printf '  %-7s %-8s %2s nodes x %s: cold %6.3f s  warm %6.3f s  PFS ops %7s\n' "$1" "$2" "$3" "$ranks" "$4" "$5" "$6" >&2
}

for n in $nodes_list; do
    for wl in $workloads; do
        # the floor and the direct case (no agents)
        c=$(run_ranks "$n" local "$wl"); sleep 1; w=$(run_ranks "$n" local "$wl")
        record local "$wl" "$n" "$c" "$w" 0 0 0
        before=$(model_ops); c=$(run_ranks "$n" direct "$wl"); mid=$(model_ops); sleep 1; w=$(run_ranks "$n" direct "$wl")
        record direct "$wl" "$n" "$c" "$w" $((mid - before)) 0 0
        for mode in shim fuse; do
            opt=--no-fuse; [[ $mode == shim ]] || opt=--fuse-only
            eval "$("$bin/launch_copper.sh" -v "$prefix" -n "$n" -d "$work/logs" -s 60 -b none $opt 2>/dev/null)"
            before=$(model_ops); c=$(run_ranks "$n" "$mode" "$wl"); mid=$(model_ops); sleep 1; w=$(run_ranks "$n" "$mode" "$wl")
            tree=$("$bin/copper" stats -v "$prefix" --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["total"].get("bytes_from_parent", 0))')
            rss=$(agent_rss_kb)
            "$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1
            record "$mode" "$wl" "$n" "$c" "$w" $((mid - before)) "$tree" "$rss"
        done
    done
done

mkdir -p "$out_dir"
out=$out_dir/storm-$(date -u +%F).json
[[ $workloads == "numpy pynamic dataset" ]] || out=$out_dir/storm-$(date -u +%F)-$(tr ' ' '-' <<<"$workloads").json
"$py" - "$results" "$out" "$service_us" "$quick" "$nodes_list" "$ranks" "$files" "${pyn[*]}" <<'PY'
import json, os, platform, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
doc = {
    "machine": {"cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
    "parameters": {"pfs_service_us": float(sys.argv[3]), "quick": sys.argv[4] == "1", "dataset_files": int(sys.argv[7]),
                   "pynamic": sys.argv[8],
                   "nodes": [int(x) for x in sys.argv[5].split()], "ranks_per_node": int(sys.argv[6])},
    "command": "./build.sh --target=Bench (tools/bench/storm_bench.sh)",
    "results": rows,
}
json.dump(doc, open(sys.argv[2], "w"), indent=1)
print(sys.argv[2])
PY
if [[ -z $report_dir ]]; then
    if ((quick)); then report_dir=$out_dir; else report_dir=$here/bench; fi
fi
if [[ " $workloads " == *" numpy "* ]]; then
    "$py" "$here/tools/bench/report.py" "$out" --results "$out_dir" --out "$report_dir"
else
    echo "storm_bench.sh: no REPORT.md from this run (its goals and projection are numpy's)" >&2
fi
