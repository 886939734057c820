#!/usr/bin/env bash
# Idle reporting cost (simulated nodes on this machine): what the root of tree 0 receives
# for the job's counters (TreeStats: full reports and liveness frames) while no application
# runs. For each node count, launch, let the start settle, read the root's received-stats
# counters twice WINDOW seconds apart, and stop. Writes bench/results/stats-idle-<UTC date>.txt.
# Sizes: BENCH_NODES_LIST ("4 8 16"), BENCH_WINDOW (30 s), BENCH_SETTLE (8 s).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=$here/out/bin
list=${BENCH_NODES_LIST:-4 8 16}
window=${BENCH_WINDOW:-30}
settle=${BENCH_SETTLE:-8}
prefix=/tmp/${USER:-$(id -un)}/copper-stats-bench
work=$(mktemp -d /tmp/copper-stats-bench.XXXXXX)
export COPPER_RUNTIME_DIR=$work/run
trap '"$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# The root's counters: "report_frames report_bytes live_frames live_bytes entry_bytes", where
# entry_bytes is the size of one node's counters as a full report carries them. Asked of the
# root agent alone (HELLO, then STATS on its socket; interop/copper_protocol.h): `copper stats`
# would ask every agent on this machine, and the old reporting sent counters that changed.
root_counters() {
    /usr/bin/python3 - "$COPPER_RUNTIME_DIR" <<'PY'
import glob, json, os, socket, struct, sys
root_dir = next(d for d in glob.glob(os.path.join(sys.argv[1], "*")) if os.path.isdir(d) and ".n" not in os.path.basename(d))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(os.path.join(root_dir, "agent.sock"))
def ask(op, payload):
    s.sendall(struct.pack("<IBBHI", len(payload), op, 0, 0, 1) + payload)
    def exactly(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                raise SystemExit("the root agent closed the connection")
            b += c
        return b
    length = struct.unpack("<I", exactly(12)[:4])[0]
    return exactly(length)
ask(1, struct.pack("<IHHII", 0x52505043, 1, 1, os.getpid(), 0))  # HELLO
root = json.loads(ask(9, b"")[8:])                                # STATS: reply head, then JSON
other = next(e for e in root["job"]["entries"] if e["node"] != root["node"] and "requests" in e)
entry = {k: v for k, v in other.items() if k not in ("age_s", "silent")}
print(root["stats_report_frames_received"], root["stats_report_bytes_received"],
      root.get("stats_live_frames_received", 0), root.get("stats_live_bytes_received", 0),
      12 + len(json.dumps(entry, separators=(",", ":"))))
PY
}

: >"$work/rows"
for n in $list; do
    eval "$("$bin/launch_copper.sh" -v "$prefix" -n "$n" -d "$work/logs" -s 30 2>/dev/null)"
    sleep "$settle"
    read -r rf0 rb0 lf0 lb0 _ < <(root_counters)
    s=$(date +%s.%N)
    sleep "$window"
    read -r rf1 rb1 lf1 lb1 entry < <(root_counters)
    e=$(date +%s.%N)
    "$bin/stop_copper.sh" -v "$prefix" >/dev/null 2>&1
    echo "$n $(echo "$e - $s" | bc -l) $((rf1 - rf0)) $((rb1 - rb0)) $((lf1 - lf0)) $((lb1 - lb0)) $entry" >>"$work/rows"
done

out=$here/bench/results/stats-idle-$(date -u +%F).txt
mkdir -p "$(dirname "$out")"
{
    echo "# Copper idle stats benchmark, $(date -u '+%F %T') UTC, $(nproc) cores, $(uname -r), $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "# command: tools/bench/stats_idle_bench.sh, BENCH_NODES_LIST=\"$list\" BENCH_WINDOW=$window BENCH_SETTLE=$settle"
    echo "# received by the root of tree 0 while idle (whole tree messages); entry = one node's full report entry"
    printf '%6s %8s %14s %14s %12s %12s %12s %7s\n' nodes window_s report_frames report_bytes live_frames live_bytes root_B_per_s entry_B
    while read -r n w rf rb lf lb entry; do
        printf '%6d %8.1f %14d %14d %12d %12d %12.1f %7d\n' "$n" "$w" "$rf" "$rb" "$lf" "$lb" "$(echo "($rb + $lb) / $w" | bc -l)" "$entry"
    done <"$work/rows"
} | tee "$out"
