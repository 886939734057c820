#!/usr/bin/env bash
# finalize_cycles.sh - how often a Copper job over ssh stops cleanly: N launch/stop cycles of
# a 3-node job on the one-machine test bed (out/bin/cluster, --ssh), launched and stopped
# from node 1. A cycle is clean when no agent hit its MPI_Finalize bound, the job's output
# has no Hydra complaint, and mpiexec exited 0. Needs root and a built out/.
#
#   tools/bench/finalize_cycles.sh [N]      # default 10; one line per cycle, then "clean C of N"
set -euo pipefail

cycles=${1:-10}
[[ $cycles =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [N]" >&2; exit 2; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
bin=$repo/out/bin
[[ $repo != /tmp && $repo != /tmp/* ]] || { echo "$0: the checkout must be outside /tmp (each node has its own)" >&2; exit 2; }
name=fin$RANDOM$RANDOM
cluster=("$bin/cluster" --name "$name")
shared=$(mktemp -d /var/tmp/copper-finalize-XXXXXX)
trap '"${cluster[@]}" down >/dev/null 2>&1 || true; rm -rf "$shared"' EXIT

# mpiexec's exit status, recorded by a wrapper (launch_copper.sh leaves mpiexec running).
cat >"$shared/mpiexec" <<EOF
#!/bin/sh
mpiexec.mpich "\$@"
echo \$? >"$shared/mpiexec.rc"
EOF
chmod 0755 "$shared/mpiexec"
env="export UCX_TLS=tcp,self UCX_NET_DEVICES=eth0 COPPER_RUNTIME_DIR=/tmp/copper-finalize-run MPIEXEC=$shared/mpiexec"
prefix=/tmp/copper-finalize/copper

"${cluster[@]}" up 3 --ssh 2>/dev/null
printf 'node1\nnode2\nnode3\n' >"$shared/hosts"
clean=0
for ((i = 1; i <= cycles; i++)); do
    rm -rf "$shared/logs" "$shared/mpiexec.rc"
    if ! "${cluster[@]}" exec 1 bash -c "$env; timeout 120 $bin/launch_copper.sh -H $shared/hosts -v $prefix -c /tmp/copper-finalize-cache -b none --no-fuse -s 60 -d $shared/logs >/dev/null"; then
        echo "cycle $i: launch failed"
        continue
    fi
    t0=${EPOCHREALTIME/./}
    "${cluster[@]}" exec 1 bash -c "$env; timeout 60 $bin/stop_copper.sh -v $prefix" 2>/dev/null
    t1=${EPOCHREALTIME/./}
    for _ in $(seq 1 100); do [[ -e $shared/mpiexec.rc ]] && break; sleep 0.1; done
    rc=$(cat "$shared/mpiexec.rc" 2>/dev/null || echo none)
    out=$shared/logs/copper-mpiexec.node1.out
    bound=$(grep -c "MPI_Finalize did not finish" "$out" || true)
    hydra=$(grep -c '^\[mpiexec@\|^\[proxy:\|BAD TERMINATION' "$out" || true)
    if [[ $bound == 0 && $hydra == 0 && $rc == 0 ]]; then clean=$((clean + 1)); fi
    printf 'cycle %d: stop %d ms, finalize bound hit %s, Hydra lines %s, mpiexec exit %s\n' \
        "$i" $(((t1 - t0) / 1000)) "$bound" "$hydra" "$rc"
done
echo "clean $clean of $cycles"
