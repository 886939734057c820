#!/usr/bin/env bash
# stop_copper.sh - stop the Copper agent(s) of a prefix and remove what they left.
#
#   stop_copper.sh -v /tmp/$USER/copper          # every agent of the prefix on this machine
#   stop_copper.sh -v /tmp/$USER/copper -n 4     # simulated nodes 0..3 only
#
# Idempotent: exits 0 when nothing was running. For each agent directory
# (<runtime dir>/<hash>[.n<node>]) it unmounts a FUSE mount at the prefix, sends SIGTERM
# to the pid in agent.pid, waits up to 5 s, then SIGKILL; then removes the socket, the
# ready and pid files, the directory and the cache directory named in `cache-dir`; last,
# the launch's lock and recorded options once no agent directory of the prefix is left.
# Before it stops anything, it prints the job's summary on stderr and writes it as JSON to
# <log dir>/copper-summary.<host>.json (`copper summary`; COPPER_NO_SUMMARY=1 skips it).
# Exit status: 0 done; 1 something could not be stopped or removed; 2 bad options.
#
# The agent binary is `copper-agent` next to this script (COPPER_AGENT=/path overrides
# it): its --print-socket names the socket directories, so no name is computed here.
set -euo pipefail

readonly PROG=${0##*/}

usage() {
    cat <<EOF
usage: $PROG [-v prefix] [-n NODES] [-h]
  -v prefix   the Copper prefix                        [/tmp/\$USER/copper]
  -n NODES    stop simulated nodes 0..NODES-1 only      [every agent of the prefix]
  -h          this help
EOF
}
die_usage() { printf '%s: %s\n' "$PROG" "$1" >&2; usage >&2; exit 2; }
note() { printf '%s: %s\n' "$PROG" "$*" >&2; }

is_posint() { [[ $1 =~ ^[0-9]{1,18}$ ]] && ((10#$1 > 0)); }

# abs_path: the one bash normalization of a path; gone, descendants: processes
# (copper-paths.sh, next to this script).
# shellcheck source=copper-paths.sh
source "$(dirname "${BASH_SOURCE[0]}")/copper-paths.sh"

user=${USER:-}
[[ -n $user ]] || user=$(id -un)
prefix=/tmp/$user/copper
nodes=

for a in "$@"; do
    case $a in
        --help) usage; exit 0 ;;
        --) break ;;
        --*) die_usage "unknown option '$a'" ;;
    esac
done
OPTIND=1
while getopts ':v:n:h' opt; do
    case $opt in
        v) [[ -n $OPTARG ]] || die_usage "-v: prefix must not be empty"
           prefix=$(abs_path "$OPTARG")
           [[ $prefix != / ]] || die_usage "-v: prefix must not be /" ;;
        n) is_posint "$OPTARG" || die_usage "-n: node count must be a positive integer, got '$OPTARG'"
           nodes=$((10#$OPTARG)) ;;
        h) usage; exit 0 ;;
        :) die_usage "option -$OPTARG needs a value" ;;
        *) die_usage "unknown option -$OPTARG" ;;
    esac
done
shift $((OPTIND - 1))
(($# == 0)) || die_usage "unexpected argument '$1'"

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
agent=${COPPER_AGENT:-$script_dir/copper-agent}

# Socket directory of node $1 ("-" = started without --node).
sock_dir_of() {
    local k=$1 sock nopt=()
    [[ $k == - ]] || nopt=(--node "$k")
    # The agent computes every derived name (one source: managed/Copper.Interop/Places.cs).
    sock=$("$agent" --print-socket --prefix "$prefix" "${nopt[@]}" 2>/dev/null) &&
        [[ $sock == /*/agent.sock ]] ||
        { printf '%s: error: cannot ask %s where the agents of %s live\n' "$PROG" "$agent" "$prefix" >&2; exit 1; }
    printf '%s\n' "${sock%/agent.sock}"
}

# --------------------------------------------------------------- which directories

d0=$(sock_dir_of -)
runtime_dir=${d0%/*}
base=${d0##*/}
base=${base%.n[0-9]*}

# Every directory of the prefix: <hash> and <hash>.n<k>.
all_dirs() {
    local d
    for d in "$runtime_dir/$base" "$runtime_dir/$base".n*; do
        [[ -d $d ]] || continue
        [[ $d == "$runtime_dir/$base" || ${d##*.n} =~ ^[0-9]+$ ]] && printf '%s\n' "$d"
    done
}

dirs=()
if [[ -n $nodes ]]; then
    for ((k = 0; k < nodes; k++)); do dirs+=("$(sock_dir_of "$k")"); done
else
    mapfile -t dirs < <(all_dirs)
fi

status=0

# --------------------------------------------------------------- FUSE mount

mount_escaped() { # /proc/mounts escapes space, tab, newline and backslash as octal
    local p=${1//\\/\\134}
    p=${p// /\\040}
    p=${p//$'\t'/\\011}
    printf '%s\n' "${p//$'\n'/\\012}"
}
mounted() { grep -qF " $(mount_escaped "$1") " /proc/mounts 2>/dev/null; }

# The prefix and the mount points of simulated nodes (PREFIX.n<k>) that are mounted now.
mount_points() {
    local esc dev mp rest
    esc=$(mount_escaped "$prefix")
    while read -r dev mp rest; do
        if [[ $mp == "$esc" || ($mp == "$esc".n* && ${mp##*.n} =~ ^[0-9]+$) ]]; then
            printf '%s\n' "$mp"
        fi
    done </proc/mounts 2>/dev/null | sort -u
}

unmount_one() {
    local mp=$1 i
    for ((i = 0; i < 4; i++)); do # stacked mounts: unmount each
        mounted "$mp" || return 0
        note "unmounting $mp"
        fusermount3 -u "$mp" 2>/dev/null ||
            fusermount3 -uz "$mp" 2>/dev/null || # busy: lazy, as the user
            umount -l "$mp" 2>/dev/null ||
            { note "error: cannot unmount $mp"; status=1; return 0; }
    done
    if mounted "$mp"; then note "error: $mp is still mounted"; status=1; fi
}

unmount_prefix() {
    local mp
    for mp in $(mount_points); do
        # /proc/mounts escapes; only plain paths are unescaped here (octal escapes are rare)
        unmount_one "$(printf '%b' "${mp//\\/\\0}")"
    done
}

# --------------------------------------------------------------- agents

# Pid of a live agent from a pid file, or status 1 (pid reused by another program: the
# process has no --prefix on its command line).
live_pid() {
    local pidfile=$1 pid='' cmd
    [[ -r $pidfile ]] || return 1
    read -r pid 2>/dev/null <"$pidfile" || [[ -n $pid ]] || return 1
    [[ $pid =~ ^[0-9]+$ ]] && ((pid > 1)) || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
        [[ $cmd == *--prefix* ]] || return 1
    fi
    printf '%s\n' "$pid"
}

now_ms() { # milliseconds since the epoch, without forking
    local t=${EPOCHREALTIME/[^0-9]/}
    printf '%s\n' "$((10#${t:0:${#t}-3}))"
}

# SIGKILL to each "pid comm" given that still runs the same program (not a reused pid).
kill_left() {
    local e pid comm now
    for e in "$@"; do
        pid=${e%% *} comm=${e#* }
        read -r now 2>/dev/null <"/proc/$pid/comm" || continue
        [[ $now == "$comm" ]] && ! gone "$pid" || continue
        note "stopping $comm (pid $pid), left by the agent job"
        kill -KILL "$pid" 2>/dev/null || true
    done
}

# Stop the agents of the directories given: SIGTERM to all, one shared 5 s wait,
# SIGKILL to the survivors; then remove their files and cache directories.
stop_dirs() {
    local d pid n deadline sig caches=() pids=() alive
    for d in "$@"; do
        local cache=''
        if [[ -r $d/cache-dir ]]; then read -r cache 2>/dev/null <"$d/cache-dir" || true; fi
        caches+=("$cache")
        if pid=$(live_pid "$d/agent.pid"); then
            note "stopping agent pid $pid (${d##*/})"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    for sig in KILL ''; do
        deadline=$(($(now_ms) + 5000)) # 5 s after SIGTERM, then 5 s after SIGKILL
        while :; do
            alive=()
            for pid in ${pids[@]+"${pids[@]}"}; do gone "$pid" || alive+=("$pid"); done
            if ((${#alive[@]} == 0)) || (($(now_ms) >= deadline)); then break; fi
            sleep 0.02
        done
        pids=(${alive[@]+"${alive[@]}"})
        ((${#pids[@]})) || break
        if [[ -n $sig ]]; then
            note "agent pid(s) ${pids[*]} did not exit within 5 s: SIGKILL"
            kill -KILL "${pids[@]}" 2>/dev/null || true
        else
            note "error: agent pid(s) ${pids[*]} survive SIGKILL"
            status=1
        fi
    done
    n=0
    for d in "$@"; do
        rm -f -- "$d/agent.sock" "$d/agent.ready" "$d/agent.pid" "$d/cache-dir"
        rm -rf -- "$d" || { note "error: cannot remove $d"; status=1; }
        remove_cache "${caches[n]}"
        n=$((n + 1))
    done
}

remove_cache() {
    local c=$1
    [[ -n $c ]] || return 0
    c=$(abs_path "$c")
    # Never a short or foreign path: at least two components, not $HOME, ours.
    if [[ $c != /?*/?* || $c == "${HOME:-/nonexistent}" ]]; then
        note "warning: not removing suspicious cache dir '$c'"
        return 0
    fi
    [[ -e $c ]] || return 0
    if [[ ! -O $c ]]; then
        note "warning: cache dir $c is not owned by $(id -un); left in place"
        return 0
    fi
    rm -rf -- "$c" || { note "error: cannot remove cache dir $c"; status=1; }
}

# --------------------------------------------------------------- job summary

# The job's numbers (`copper summary`: the root's job-wide stats), taken while the agents
# still run: printed on stderr and written to <log dir>/copper-summary.<host>.json (the log
# dir the launch recorded, -d). Bounded (10 s) and never a reason for stop to fail.
job_summary() {
    local cli=${COPPER_CLI:-$script_dir/copper} logs='' line host
    [[ -x $cli ]] || { note "no job summary: $cli not found"; return 0; }
    if [[ -r $runtime_dir/.$base.options ]]; then
        while IFS= read -r line; do
            if [[ $line == '-d '/* ]]; then logs=${line#-d }; fi
        done 2>/dev/null <"$runtime_dir/.$base.options" || true
    fi
    [[ -n $logs ]] || logs=/tmp/copper-logs-$(id -u)
    host=$(hostname -s 2>/dev/null) || host=${HOSTNAME:-localhost}
    if [[ ! -d $logs || ! -O $logs ]]; then
        note "no job summary file: log dir $logs is missing or not $(id -un)'s"
        timeout -k 1 10 "$cli" summary -v "$prefix" >&2 </dev/null || true
        return 0
    fi
    timeout -k 1 10 "$cli" summary -v "$prefix" --json "$logs/copper-summary.$host.json" >&2 </dev/null ||
        note "the job summary is incomplete or missing (copper summary exit $?)"
}

present=()
for d in "${dirs[@]}"; do
    if [[ -e $d ]]; then present+=("$d"); fi
done
found=${#present[@]}
((found == 0)) || [[ ${COPPER_NO_SUMMARY:-} == 1 ]] || job_summary || true

unmount_prefix
((found == 0)) || stop_dirs "${present[@]}"

# The MPI job's launcher (mpiexec) started by launch_copper.sh on this machine: it ends
# when its agents have; if it lingers (a rank that never started), stop it and its group.
job_pidfile=$runtime_dir/.$base.mpiexec.pid
if [[ -z $nodes && -r $job_pidfile ]]; then
    read -r job_pid 2>/dev/null <"$job_pidfile" || job_pid=
    if [[ $job_pid =~ ^[0-9]+$ ]] && ((job_pid > 1)) && ! gone "$job_pid" &&
        tr '\0' ' ' 2>/dev/null <"/proc/$job_pid/cmdline" | grep -q -- '--prefix'; then
        found=$((found + 1))
        # Hydra starts each launcher (ssh to a node) in a session of its own: the process
        # group below does not reach them, and one to a dead node never ends by itself.
        mapfile -t launchers < <(descendants "$job_pid")
        deadline=$(($(now_ms) + 5000))
        while ! gone "$job_pid" && (($(now_ms) < deadline)); do sleep 0.05; done
        if ! gone "$job_pid"; then
            note "stopping the agent job (mpiexec pid $job_pid)"
            kill -TERM "$job_pid" 2>/dev/null || true
            deadline=$(($(now_ms) + 3000))
            while ! gone "$job_pid" && (($(now_ms) < deadline)); do sleep 0.05; done
            kill -KILL -- "-$job_pid" 2>/dev/null || kill -KILL "$job_pid" 2>/dev/null || true
        fi
        kill_left ${launchers[@]+"${launchers[@]}"}
    fi
    rm -f -- "$job_pidfile"
fi

# Default cache dirs of agents that died before writing `cache-dir`.
default_cache_root=${TMPDIR:-/tmp}
default_cache_root=${default_cache_root%/}/copper-cache-$(id -u)
for d in "${dirs[@]}"; do
    name=${d##*/}
    if [[ -e $default_cache_root/$name ]]; then remove_cache "$default_cache_root/$name"; fi
done
rmdir "$default_cache_root" 2>/dev/null || true

# The launch lock of launch_copper.sh and the options it recorded, once no agent
# directory of the prefix is left.
if [[ -z $(all_dirs) ]]; then rm -f -- "$runtime_dir/.$base.lock" "$runtime_dir/.$base.options"; fi
rmdir "$runtime_dir" 2>/dev/null || true

unmount_prefix
((found)) || note "no agent for $prefix"
exit "$status"
