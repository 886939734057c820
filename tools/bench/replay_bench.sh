#!/usr/bin/env bash
# Re-running a job: Copper through the shim, cold, with and without a replayed manifest, on
# the PFS model (copper-pfs-model, with --metadata-servers servers serving metadata at once,
# --service-us each). At each simulated node count:
#   shim:   a fresh job records its manifest (-m FILE, FILE new): cold run, warm run one
#           second later, PFS operations of the job; stop writes FILE;
#   replay: the next job replays FILE (-m FILE --wait-replay): the replay's time (the root's
#           own and until every node has every entry), its PFS operations, then the cold run
#           (every rank at once, as soon as the launch returns), the warm run, the requests
#           the cold run sent up the tree from the nodes that are not the root.
# The ratio that matters: replayed cold / warm at the same node count.
# Workloads: numpy (`import numpy`), pynamic, dataset, and torch (`import torch`, Debian's
# python3-torch: run only where /usr/lib/python3/dist-packages/torch exists, skipped with a
# line otherwise).
#
#   replay_bench.sh [--nodes "1 2 4 8 16"] [--ranks R] [--workloads "numpy pynamic dataset torch"]
#                   [--service-us US] [--metadata-servers S] [--cache-dir DIR] [--out DIR]
#
# --cache-dir puts the simulated nodes' mirrors under DIR (launch_copper.sh -c; default: the
# agent's, under $TMPDIR or /tmp). Writes DIR/replay-<UTC date>T<HHMM>-<workloads>.json
# (default DIR: bench/results); tools/bench/report.py puts its tables into REPORT.md (for each
# workload, the newest file that has it).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
command="tools/bench/replay_bench.sh$(printf " %q" "$@")"
bin=$here/out/bin
py=/usr/bin/python3
nodes_list="1 2 4 8 16"
ranks=2
workloads="numpy"
service_us=200
servers=8
cache_dir=
out_dir=$here/bench/results
while (($#)); do
    case $1 in
        --nodes) nodes_list=$2; shift 2 ;;
        --ranks) ranks=$2; shift 2 ;;
        --workloads) workloads=$2; shift 2 ;;
        --service-us) service_us=$2; shift 2 ;;
        --metadata-servers) servers=$2; shift 2 ;;
        --cache-dir) cache_dir=$2; shift 2 ;;
        --out) out_dir=$2; shift 2 ;;
        *) echo "replay_bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

work=$(mktemp -d /tmp/copper-replay.XXXXXX)
src=$work/pfs
mnt=$work/pfsmnt
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

# shellcheck source=torch-env.sh
source "$here/tools/bench/torch-env.sh"
workloads=$(without_torch_unless_installed replay_bench.sh "$workloads")
[[ -n ${workloads// /} ]] || { echo "replay_bench.sh: no workload to run" >&2; exit 0; }

mkdir -p "$src/pkgs" "$src/data"
cp -a /usr/lib/python3/dist-packages/numpy "$src/pkgs/"
[[ " $workloads " != *" torch "* ]] || copy_torch "$src/pkgs"
[[ " $workloads " != *" dataset "* ]] || "$py" - "$src/data" 1000 <<'PY'
import os, sys
root, per = sys.argv[1], max(1, int(sys.argv[2]) // 20)
for c in range(20):
    d = os.path.join(root, "class%02d" % c)
    os.makedirs(d)
    for i in range(per):
        with open(os.path.join(d, "img%03d.bin" % i), "wb") as f:
            f.write(os.urandom(1024 + (i * 37) % 3072))
PY
[[ " $workloads " != *" pynamic "* ]] || "$py" "$here/tools/bench/pynamic_gen.py" "$src/pynamic" --modules 300 --extensions 50 --libraries 10 >/dev/null
printf 'import pynamic_pkg.everything as e\nprint(e.TOTAL)\n' >"$work/do_pynamic.py"
printf 'import numpy\nprint(float(numpy.arange(1000.0).sum()))\n' >"$work/do_import.py"
printf 'import torch\nprint(float(torch.arange(1000.0).sum()))\n' >"$work/do_torch.py"
cat >"$work/do_walk.py" <<'PY'
import os, sys
root, total = sys.argv[1], 0
for d in sorted(os.scandir(root), key=lambda e: e.name):
    for e in sorted(os.scandir(d.path), key=lambda e: e.name):
        with open(e.path, "rb") as f:
            total += len(f.read())
print(total)
PY

"$bin/copper-pfs-model" "$src" --mount "$mnt" --service-us "$service_us" --metadata-servers "$servers" --model-stats "$work/model.json" >"$work/model.out" 2>&1 &
model_pid=$!
for _ in $(seq 100); do [[ -e $work/model.json ]] && grep -q " $mnt " /proc/mounts && break; sleep 0.05; done
grep -q " $mnt " /proc/mounts || { echo "replay_bench.sh: the PFS model did not mount" >&2; cat "$work/model.out" >&2; exit 1; }

# shellcheck source=model-count.sh
source "$here/tools/bench/model-count.sh"
model_ops() { model_ops_of "$work/model.json"; }
now() { date +%s.%N; }
since() { printf '%.4f\n' "$(echo "$(now) - $1" | bc -l)"; }

# run_ranks NODES WORKLOAD -> seconds until the slowest rank is done (all start at once)
run_ranks() {
    local n=$1 wl=$2 k r s fail=0 pids=() path=$prefix$mnt arg
    s=$(now)
    for ((k = 0; k < n; k++)); do
        for ((r = 0; r < ranks; r++)); do
            case $wl in
                numpy) arg=(env PYTHONPATH="$path/pkgs" "$py" "$work/do_import.py") ;;
                torch) arg=(env PYTHONPATH="$path/pkgs" "$py" "$work/do_torch.py") ;;
                pynamic) arg=(env PYTHONPATH="$path/pynamic" "$py" "$work/do_pynamic.py") ;;
                *) arg=("$py" "$work/do_walk.py" "$path/data") ;;
            esac
            COPPER_NODE=$k LD_PRELOAD=$COPPER_PRELOAD LD_AUDIT=$COPPER_AUDIT COPPER_PREFIX=$prefix "${arg[@]}" >"$work/out.$k.$r" 2>&1 &
            pids+=($!)
        done
    done
    for p in "${pids[@]}"; do wait "$p" || fail=1; done
    ((fail == 0)) || { echo "replay_bench.sh: a rank failed ($wl, $n nodes):" >&2; cat "$work"/out.* >&2; exit 1; }
    since "$s"
}

agents_cpu() { # -> seconds of CPU (user + system) the running agents have used so far
    local f ticks=0
    for f in $(find "$COPPER_RUNTIME_DIR" -name agent.pid 2>/dev/null); do
        ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$(cat "$f")/stat" 2>/dev/null || echo 0)))
    done
    printf '%.2f\n' "$(echo "$ticks / $(getconf CLK_TCK)" | bc -l)"
}

stat_sum() { # counter -> its sum over the nodes that are not node 0
    "$bin/copper" stats -v "$prefix" --json | "$py" -c 'import json,sys; print(sum(e.get(sys.argv[1], 0) for e in json.load(sys.stdin)["nodes"] if e["node"] != 0))' "$1"
}

results=$work/results.jsonl
: >"$results"
load_start=$(cut -d' ' -f1 /proc/loadavg)
for wl in $workloads; do
    for n in $nodes_list; do
        manifest=$work/$wl.$n.cpmf
        launch=("$bin/launch_copper.sh" -v "$prefix" -n "$n" -d "$work/logs" -s 60 -b none --no-fuse -m "$manifest")
        [[ -z $cache_dir ]] || launch+=(-c "$cache_dir")
        # The job that records.
        before=$(model_ops)
        s=$(now); eval "$("${launch[@]}" 2>/dev/null)"; l=$(since "$s")
        c=$(run_ranks "$n" "$wl"); mid=$(model_ops); sleep 1; w=$(run_ranks "$n" "$wl")
        # The whole job's count too: the manifest holds what the job asked, warm run included.
        job=$(model_ops)
        "$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1
        entries=$("$py" -c 'import struct,sys; print(struct.unpack_from("<I", open(sys.argv[1],"rb").read(), 12)[0])' "$manifest")
        printf '{"scenario":"shim","workload":"%s","nodes":%s,"ranks_per_node":%s,"launch_s":%s,"cold_s":%s,"warm_s":%s,"pfs_ops":%s,"pfs_ops_job":%s,"manifest_entries":%s,"manifest_bytes":%s}\n' \
            "$wl" "$n" "$ranks" "$l" "$c" "$w" $((mid - before)) $((job - before)) "$entries" "$(stat -c %s "$manifest")" >>"$results"
        printf '  shim    %-8s %2s nodes x %s: launch %6.3f s  cold %6.3f s  warm %6.3f s  PFS ops %6s  (%s entries)\n' "$wl" "$n" "$ranks" "$l" "$c" "$w" $((mid - before)) "$entries" >&2
        # The job that replays.
        out=$work/logs/copper-mpiexec.$(hostname -s 2>/dev/null || uname -n).out
        offset=$(stat -c %s "$out" 2>/dev/null || echo 0)
        before=$(model_ops)
        s=$(now); eval "$("${launch[@]}" --wait-replay 2>/dev/null)"; l=$(since "$s")
        # The agents' CPU until every node has every entry (their start included): load on a
        # shared machine stretches the times, not this.
        cpu=$(agents_cpu)
        replayed=$(model_ops)
        text=$(tail -c "+$((offset + 1))" "$out")
        root_s=$(grep -a -o 'replay at the root done: .*, \([0-9.]*\) s' <<<"$text" | sed 's/.*, \([0-9.]*\) s$/\1/' | tail -n 1)
        all_ms=$("$bin/copper" stats -v "$prefix" --json | "$py" -c 'import json,sys; print(max(e.get("replay_ms", 0) for e in json.load(sys.stdin)["nodes"]))')
        read -r bytes files < <("$bin/copper" stats -v "$prefix" --json | "$py" -c 'import json,sys; e = next(e for e in json.load(sys.stdin)["nodes"] if e["node"] == 0); print(e.get("replay_bytes", 0), e.get("replay_files", 0))')
        up0=$(stat_sum forwarded_up)
        c=$(run_ranks "$n" "$wl"); mid=$(model_ops)
        up1=$(stat_sum forwarded_up)
        sleep 1; w=$(run_ranks "$n" "$wl")
        "$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1
        printf '{"scenario":"replay","workload":"%s","nodes":%s,"ranks_per_node":%s,"launch_s":%s,"replay_root_s":%s,"replay_all_s":%s,"cold_s":%s,"warm_s":%s,"pfs_ops":%s,"pfs_ops_replay":%s,"forwarded_up_cold":%s,"replay_bytes":%s,"replay_files":%s,"replay_agents_cpu_s":%s}\n' \
            "$wl" "$n" "$ranks" "$l" "${root_s:-0}" "$(printf '%.4f' "$(echo "$all_ms / 1000" | bc -l)")" "$c" "$w" $((mid - before)) $((replayed - before)) $((up1 - up0)) "$bytes" "$files" "$cpu" >>"$results"
        printf '  replay  %-8s %2s nodes x %s: launch %6.3f s  cold %6.3f s  warm %6.3f s  PFS ops %6s  (replay: root %s s, every node %s ms, %s ops, agents CPU %s s; forwarded up in the cold run %s)\n' \
            "$wl" "$n" "$ranks" "$l" "$c" "$w" $((mid - before)) "${root_s:-?}" "$all_ms" $((replayed - before)) "$cpu" $((up1 - up0)) >&2
    done
done

mkdir -p "$out_dir"
out=$out_dir/replay-$(date -u +%FT%H%M)-$(tr ' ' '-' <<<"$(echo $workloads)").json
"$py" - "$results" "$out" "$service_us" "$servers" "$nodes_list" "$ranks" "$cache_dir" "$load_start" "$(cut -d' ' -f1 /proc/loadavg)" \
    "$command" <<'PY'
import datetime, json, os, platform, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
doc = {
    "finished_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
    "machine": {"cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
                "loadavg_start": float(sys.argv[8]), "loadavg_end": float(sys.argv[9])},
    "parameters": {"pfs_service_us": float(sys.argv[3]), "metadata_servers": int(sys.argv[4]),
                   "nodes": [int(x) for x in sys.argv[5].split()], "ranks_per_node": int(sys.argv[6]), "replay_concurrency": 32,
                   "cache_dir": sys.argv[7] or "the agent's default: $TMPDIR or /tmp"},
    "command": sys.argv[10],
    "results": rows,
}
json.dump(doc, open(sys.argv[2], "w"), indent=1)
print(sys.argv[2])
PY
