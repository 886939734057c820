#!/usr/bin/env bash
# The import storm and the tree on the test bed (out/bin/cluster): one node per namespace,
# each with its own hostname, address, /tmp, agent and cache; the PFS model (copper-pfs-model)
# on a mount point shared with every node (cluster up --pfs); the agents launched from node 1
# with a hostfile (launch_copper.sh -H, the cluster mode: mpiexec over ssh, one agent per
# node, the same prefix on every node); MPI over the veths (UCX_TLS=tcp,self
# UCX_NET_DEVICES=eth0). All nodes share this machine's cores.
#
#  1. storm: R ranks on each of N nodes at once, N in BENCH_CLUSTER_NODES ("1 2 4 8"),
#     R = BENCH_RANKS (2), the scenarios of storm_bench.sh: local disk, direct on the PFS
#     model, Copper through the shim, Copper through each node's FUSE mount; workloads in
#     BENCH_CLUSTER_WORKLOADS ("numpy"; also "pynamic" and "dataset", as storm_bench.sh makes
#     them); each job runs the workload twice (cold, then warm one second later); median of
#     BENCH_RUNS jobs (1).
#  2. tree: a BENCH_TREE_MB MiB file (64) to BENCH_TREE_NODES nodes (4): every node reads it
#     through the shim at once, cold (Copper's tree), versus MPI_Bcast (bcast.c) of the same
#     bytes, each rank writing its copy to its node's /tmp; median of BENCH_RUNS rounds each.
#
#   cluster_bench.sh [--quick] [--out DIR]
# writes DIR/cluster-<UTC date>.json (default bench/results), which report.py adds to REPORT.md
# as test-bed figures. --quick (tests): 1 and 2 nodes, 1 rank each, a 4 MiB file to 2 nodes,
# 20 µs per PFS operation; it checks nothing about time.
# BENCH_SERVICE_US: the PFS model's service time per metadata operation (200).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=$here/out/bin
py=/usr/bin/python3
nodes_list=${BENCH_CLUSTER_NODES:-1 2 4 8}
workloads=${BENCH_CLUSTER_WORKLOADS:-numpy}
ranks=${BENCH_RANKS:-2}
runs=${BENCH_RUNS:-1}
tree_nodes=${BENCH_TREE_NODES:-4}
tree_mb=${BENCH_TREE_MB:-64}
service_us=${BENCH_SERVICE_US:-200}
out_dir=$here/bench/results
while (($#)); do
    case $1 in
        --quick) nodes_list="1 2"; ranks=1; runs=1; tree_nodes=2; tree_mb=4; service_us=20; workloads=numpy; shift ;;
        --out) out_dir=$2; shift 2 ;;
        *) echo "cluster_bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $here != /tmp && $here != /tmp/* ]] || { echo "cluster_bench.sh: the checkout must be outside /tmp (each node has its own /tmp)" >&2; exit 1; }
max=$tree_nodes
for n in $nodes_list; do ((n > max)) && max=$n; done

name=cb$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
cl=("$bin/cluster" --name "$name")
lus=/var/tmp/copper-bench-$name      # the PFS mount point, shared with the nodes; up makes it
src=$lus/backing                     # what the PFS model serves
pfs=$lus/pfs                         # its mount: what applications name
job=/tmp/copper-bench-$name          # in each node's own /tmp: prefix, runtime, cache, logs
prefix=$job/copper
node_env="export UCX_TLS=tcp,self UCX_NET_DEVICES=eth0 COPPER_RUNTIME_DIR=$job/run"
model_pid=
cleanup() {
    if [[ -n $model_pid ]]; then kill -TERM "$model_pid" 2>/dev/null || true; wait "$model_pid" 2>/dev/null || true; fi
    "${cl[@]}" down >/dev/null 2>&1 || true
}
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
on() { local k=$1; shift; "${cl[@]}" exec "$k" /bin/bash -c "$node_env; $*"; }

load_start=$(cut -d' ' -f1 /proc/loadavg)   # other work on the machine shows in the figures
"${cl[@]}" up "$max" --ssh --pfs "$lus" 2>/dev/null
mkdir -p "$src/pkgs" "$lus/data"
cp -a /usr/lib/python3/dist-packages/numpy "$src/pkgs/"
# The workloads of storm_bench.sh at its default sizes. The imports fail unless the package
# came from the first PYTHONPATH entry (no silent fallback to the system's numpy).
cat >"$lus/do_numpy.py" <<'PY'
import os, numpy
assert numpy.__file__.startswith(os.environ["PYTHONPATH"] + "/"), numpy.__file__
print(float(numpy.arange(1000.0).sum()))
PY
cat >"$lus/do_pynamic.py" <<'PY'
import os, pynamic_pkg.everything as e
assert e.__file__.startswith(os.environ["PYTHONPATH"] + "/"), e.__file__
print(e.TOTAL)
PY
cat >"$lus/do_dataset.py" <<'PY'
import os, sys
root, total = sys.argv[1], 0
for d in sorted(os.scandir(root), key=lambda e: e.name):
    for e in sorted(os.scandir(d.path), key=lambda e: e.name):
        with open(e.path, "rb") as f:
            total += len(f.read())
print(total)
PY
if [[ " $workloads " == *" pynamic "* ]]; then
    "$py" "$here/tools/bench/pynamic_gen.py" "$src/pynamic" --modules 300 --extensions 50 --libraries 10 >/dev/null
fi
if [[ " $workloads " == *" dataset "* ]]; then
    "$py" - "$src/dataset" 1000 <<'PY'
import os, sys
root, per = sys.argv[1], max(1, int(sys.argv[2]) // 20)
for c in range(20):
    d = os.path.join(root, "class%02d" % c)
    os.makedirs(d)
    for i in range(per):
        with open(os.path.join(d, "img%03d.bin" % i), "wb") as f:
            f.write(os.urandom(1024 + (i * 37) % 3072))
PY
fi
for n in $(seq 1 "$max"); do printf 'node%s\n' $(seq 1 "$n") >"$lus/hosts.$n"; done
"$bin/copper-pfs-model" "$src" --mount "$pfs" --service-us "$service_us" --model-stats "$lus/model.json" >"$lus/model.out" 2>&1 &
model_pid=$!
for _ in $(seq 200); do [[ -e $lus/model.json ]] && grep -q " $pfs " /proc/mounts && break; sleep 0.05; done
grep -q " $pfs " /proc/mounts || { echo "cluster_bench.sh: the PFS model did not mount" >&2; cat "$lus/model.out" >&2; exit 1; }
# shellcheck source=model-count.sh
source "$here/tools/bench/model-count.sh"
model_ops() { model_ops_of "$lus/model.json"; }

launch() { # NODES OPTION...: agents on nodes 1..NODES, exports in $lus/exports
    local n=$1; shift
    on 1 "timeout 150 $bin/launch_copper.sh -H $lus/hosts.$n -v $prefix -c $job/cache -d $job/logs -b none -s 120 $* >$lus/exports 2>$lus/launch.err" ||
        { cat "$lus/launch.err" >&2; echo "cluster_bench.sh: launch on $n nodes failed" >&2; exit 1; }
}
stop() { # NODES: stop_copper.sh on node 1 stops the tree; then make sure on every node
    local n=$1 k
    on 1 "timeout 60 $bin/stop_copper.sh -v $prefix" >/dev/null 2>&1 || true
    for k in $(seq 1 "$n"); do on "$k" "timeout 60 $bin/stop_copper.sh -v $prefix" >/dev/null 2>&1 || true; done
}

# run_ranks NODES MODE WORKLOAD -> seconds until the slowest rank is done (all start at once)
run_ranks() {
    local n=$1 mode=$2 wl=$3 k r s e fail=0 pids=() path pre="" cmd
    case $mode in
        local) path=$src ;;
        direct) path=$pfs ;;
        *) path=$prefix$pfs ;;
    esac
    case $wl in
        numpy) cmd="PYTHONPATH=$path/pkgs $py $lus/do_numpy.py" ;;
        pynamic) cmd="PYTHONPATH=$path/pynamic $py $lus/do_pynamic.py" ;;
        *) cmd="$py $lus/do_dataset.py $path/dataset" ;;
    esac
    # shellcheck disable=SC1091 # written by launch
    [[ $mode != shim ]] || pre="$(. "$lus/exports"; printf 'COPPER_PREFIX=%q LD_PRELOAD=%q LD_AUDIT=%q' "$COPPER_PREFIX" "$COPPER_PRELOAD" "$COPPER_AUDIT")"
    s=$(now)
    for ((k = 1; k <= n; k++)); do
        for ((r = 0; r < ranks; r++)); do
            on "$k" "env $pre $cmd" >"$lus/out.$k.$r" 2>&1 &
            pids+=($!)
        done
    done
    for p in "${pids[@]}"; do wait "$p" || fail=1; done
    e=$(now)
    ((fail == 0)) || { echo "cluster_bench.sh: a rank failed ($mode, $wl, $n nodes):" >&2; cat "$lus"/out.* >&2; exit 1; }
    printf '%.4f\n' "$(echo "$e - $s" | bc -l)"
}

tree_bytes() { # NODES -> bytes that came down the tree, all nodes
    local n=$1 k total=0 b
    for k in $(seq 1 "$n"); do
        # Each node's own agent only (no age_s): on the root's node the others follow as last reported.
        b=$(on "$k" "$bin/copper stats -v $prefix --json" | "$py" -c 'import json,sys; print(sum(e.get("bytes_from_parent", 0) for e in json.load(sys.stdin)["nodes"] if "age_s" not in e))')
        total=$((total + b))
    done
    echo "$total"
}
agent_rss_kb() { # NODES -> mean VmRSS of the nodes' agents
    local n=$1 k total=0 count=0 v
    for k in $(seq 1 "$n"); do
        v=$(on "$k" "for f in $job/run/*/agent.pid; do awk '/VmRSS/ {print \$2}' /proc/\$(cat \$f)/status; done" 2>/dev/null | head -n 1)
        [[ -n $v ]] && { total=$((total + v)); count=$((count + 1)); }
    done
    ((count)) && echo $((total / count)) || echo 0
}

results=$lus/results.jsonl
: >"$results"
record() { # scenario workload nodes cold_s warm_s pfs_ops tree_bytes rss_kb
    printf '{"scenario":"%s","workload":"%s","nodes":%s,"ranks_per_node":%s,"cold_s":%s,"warm_s":%s,"pfs_ops":%s,"tree_bytes":%s,"agent_rss_kb":%s}\n' \
        "$1" "$2" "$3" "$ranks" "$4" "$5" "$6" "$7" "$8" >>"$results"
    printf '  test bed %-7s %-8s %2s nodes x %s: cold %6.3f s  warm %6.3f s  PFS ops %7s\n' "$1" "$2" "$3" "$ranks" "$4" "$5" "$6" >&2
}

for n in $nodes_list; do
  for wl in $workloads; do
    for mode in local direct shim fuse; do
        : >"$lus/cold"; : >"$lus/warm"
        ops=0 tree=0 rss=0
        for _ in $(seq "$runs"); do
            case $mode in
                shim) launch "$n" --no-fuse ;;
                fuse) launch "$n" --fuse-only ;;
            esac
            before=$(model_ops); run_ranks "$n" "$mode" "$wl" >>"$lus/cold"; mid=$(model_ops)
            sleep 1; run_ranks "$n" "$mode" "$wl" >>"$lus/warm"
            ops=$((mid - before))
            if [[ $mode == shim || $mode == fuse ]]; then
                tree=$(tree_bytes "$n"); rss=$(agent_rss_kb "$n")
                stop "$n"
            fi
        done
        [[ $mode != local ]] || ops=0
        record "$mode" "$wl" "$n" "$(median <"$lus/cold")" "$(median <"$lus/warm")" "$ops" "$tree" "$rss"
    done
  done
done

# The tree against MPI_Bcast over the veths.
mpicc=${MPICC:-$(command -v mpicc.mpich || command -v mpicc)}
"$mpicc" -O2 -Wall -Werror -o "$lus/bcast" "$here/tools/bench/bcast.c"
data=$lus/data/big.bin
"$py" - "$data" "$tree_mb" <<'PY'
import os, sys
path, mb = sys.argv[1], int(sys.argv[2])
text = (b"import numpy as np  # the same lines again and again\n" * 20000)[:1 << 20]
with open(path, "wb") as f:
    for i in range(mb):
        f.write(os.urandom(1 << 20) if i % 2 == 0 else text)
PY
bytes=$(stat -c %s "$data")
# MPICH 4.0.2 over UCX/TCP may hang in MPI_Finalize: bcast prints its time before it, and the
# run is stopped a few seconds after the time is out.
cat >"$lus/run_bcast.sh" <<EOF
set -u
: >$lus/bcast.out
mpiexec.mpich -launcher ssh -f $lus/hosts.$tree_nodes -n $tree_nodes -ppn 1 $lus/bcast $data /tmp >$lus/bcast.out 2>$lus/bcast.err &
m=\$!
for i in \$(seq 1200); do grep -q . $lus/bcast.out && break; kill -0 \$m 2>/dev/null || break; sleep 0.1; done
for i in \$(seq 50); do kill -0 \$m 2>/dev/null || break; sleep 0.1; done
kill -TERM \$m 2>/dev/null || true
wait \$m 2>/dev/null || true
head -n 1 $lus/bcast.out
EOF
: >"$lus/bcast.times"; : >"$lus/tree.times"
for _ in $(seq "$runs"); do
    t=$(on 1 "bash $lus/run_bcast.sh")
    [[ $t =~ ^[0-9.]+$ ]] || { echo "cluster_bench.sh: MPI_Bcast run failed" >&2; cat "$lus/bcast.err" >&2; exit 1; }
    echo "$t" >>"$lus/bcast.times"
    launch "$tree_nodes" --no-fuse -M $((tree_mb + 16))M
    pre="$(. "$lus/exports"; printf 'COPPER_PREFIX=%q LD_PRELOAD=%q' "$COPPER_PREFIX" "$COPPER_PRELOAD")"
    pids=()
    s=$(now)
    for k in $(seq 1 "$tree_nodes"); do
        on "$k" "env $pre cat $prefix$data >/dev/null" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    e=$(now)
    echo "$e - $s" | bc -l >>"$lus/tree.times"
    stop "$tree_nodes"
done
b=$(median <"$lus/bcast.times"); t=$(median <"$lus/tree.times")
printf '  test bed tree: %s MiB to %s nodes: MPI_Bcast %.3f s, Copper tree %.3f s, ratio %.2f\n' "$tree_mb" "$tree_nodes" "$b" "$t" "$(echo "$b / $t" | bc -l)" >&2

mkdir -p "$out_dir"
out=$out_dir/cluster-$(date -u +%F).json
"$py" - "$results" "$out" "$service_us" "$nodes_list" "$ranks" "$runs" "$tree_nodes" "$bytes" "$b" "$t" "$lus/bcast.times" "$lus/tree.times" "$load_start" "$workloads" "$name" <<'PY'
import json, os, platform, sys
a = sys.argv
rows = [json.loads(l) for l in open(a[1])]
doc = {
    "machine": {"cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
                "loadavg_start": float(a[13]), "loadavg_end": os.getloadavg()[0]},
    "cluster_name": a[15],
    "testbed": "out/bin/cluster: one node per network+UTS+mount namespace on this machine, ssh between nodes, "
               "the PFS model on a shared mount point, MPI over veths (UCX_TLS=tcp,self)",
    "parameters": {"pfs_service_us": float(a[3]), "nodes": [int(x) for x in a[4].split()], "ranks_per_node": int(a[5]),
                   "runs": int(a[6]), "workloads": a[14].split()},
    "command": "./build.sh --target=Bench (tools/bench/cluster_bench.sh)",
    "results": rows,
    "tree": {"nodes": int(a[7]), "bytes": int(a[8]), "bcast_s": float(a[9]), "tree_s": float(a[10]),
             "ratio": float(a[9]) / float(a[10]),
             "bcast_runs": [float(x) for x in open(a[11]).read().split()],
             "tree_runs": [float(x) for x in open(a[12]).read().split()]},
}
json.dump(doc, open(a[2], "w"), indent=1)
print(a[2])
PY
