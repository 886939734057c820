#!/usr/bin/env bash
# launch_copper.sh - start the Copper agent(s) for a prefix and print the environment
# an application needs.
#
#   eval "$(launch_copper.sh -v /tmp/$USER/copper -l 4 -t file)"
#   LD_PRELOAD=$COPPER_PRELOAD LD_AUDIT=$COPPER_AUDIT python3 ...   # or wrapper.sh
#   stop_copper.sh -v /tmp/$USER/copper
#
# Options are upstream Copper's, with the same meaning (see usage below). Standard
# output carries only `export NAME=value` lines (values quoted for the shell);
# every diagnostic goes to standard error.
#
# Where the agents run:
#   - in a batch job (PBS_NODEFILE, or SLURM_JOB_NODELIST, or a hostfile given with -H):
#     one MPI job, `mpiexec -n NODES -ppn 1 -f hosts copper-agent --mpi ...`, one agent
#     per node, forming the tree; inside a Slurm allocation (salloc, sbatch) Hydra starts
#     it as one job step through srun, sharing the nodes' CPUs with the application's
#     steps (--overlap; see start_mpi_job), and Slurm ends it with the job;
#   - with -n/--simulate-nodes N: the same MPI job with N agent ranks on this machine,
#     each a node of its own (own socket, own cache); an application picks its node with
#     COPPER_NODE=k;
#   - otherwise: one agent on this machine, reading the file system itself.
# The MPI job is ready when every agent has joined the tree (the root says so on the
# job's output); on timeout the nodes that did not start or join are named.
#
# Launching again on a prefix that agents already serve: each launch records its options
# in <runtime dir>/.<hash>.options (next to the launch lock); the same options (compared
# by value: -M 10M is -M 10485760; -s is not compared) say so and print the exports again;
# other options are named and refused (exit 3): stop the running agents first.
#
# The mount point must be a new or empty directory: a prefix directory that holds files
# (or another file system's mount) is not mounted over, since that would hide what is
# there; the launch fails (exit 1) and names it. --no-fuse launches without a mount.
#
# Re-running a job (-m FILE): the agents record every question the job asks the file
# system; at stop they merge that record into FILE (a manifest: paths and identities, no
# data; docs/manifest.md). When FILE exists at launch, the root replays it once the tree is
# up: it asks every entry again with many operations in flight (--replay-concurrency) and
# the answers and files flow down to every node before the ranks ask. Nothing stale is
# served (every answer is this job's). The launch returns when the tree is up and the replay
# goes on (copper stats shows it); --wait-replay returns when every node has every entry.
# A manifest that cannot be used (another prefix's, damaged, empty) is named and skipped.
#
# Exit status: 0 the agent(s) are running and ready; 1 could not start or not ready in
# time (whatever this run started is stopped again), or the mount point is not empty;
# 2 bad options; 3 agents already serve the prefix with other options; 130 interrupted.
#
# The agent binary is `copper-agent` next to this script (both live in out/bin/);
# COPPER_AGENT=/path/to/agent overrides it (tests use a fake agent). MPIEXEC=... picks
# the launcher (default mpiexec.mpich, else mpiexec); COPPER_AGENT_ARGS adds agent
# options (diagnostics, e.g. --pfs-trace-dir D).
set -euo pipefail

readonly PROG=${0##*/}

die_usage() { # message -> stderr, usage, exit 2
    printf '%s: %s\n' "$PROG" "$1" >&2
    usage >&2
    exit 2
}
die() { printf '%s: error: %s\n' "$PROG" "$1" >&2; exit "${2:-1}"; }
note() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# mkdir -p, each missing level private: `mkdir -p -m 700` gives the mode only to the last
# level, and the ones above would take the umask's (group-writable under umask 002, which the
# agents' and the shim's trust check then refuses above a runtime or log directory).
mkdir_private() {
    local d=$1 missing=()
    while [[ $d == /?* && ! -d $d ]]; do
        missing=("$d" ${missing[@]+"${missing[@]}"})
        d=${d%/*}
    done
    for d in ${missing[@]+"${missing[@]}"}; do
        mkdir -m 700 -- "$d" 2>/dev/null || [[ -d $d ]] || return 1
    done
}

usage() {
    cat <<EOF
usage: $PROG [options]
  -l log_level      1 (most verbose) .. 6 (none)                      [6]
  -t log_type       file | file_and_stdout (stdout_and_file)          [file]
  -T trees          number of trees, positive integer                  [1]
  -M max_bytes      largest file Copper caches; suffix K, M, G = 1024^n [10485760]
  -C budget         most bytes the node's mirror holds; K, M, G, or N% of the cache
                    directory's file system size; least recently used files go first
                    [25% of that file system's free space at start]
  --max-meta-entries N  most metadata entries (answers, names of listings) an agent
                    keeps, a few hundred bytes each; least recently used go first; 0 = no bound
                    [1000000]
  -s sleeptime      longest wait for readiness, seconds               [20]
  -b physcpubind    cores to pin the agent to (taskset list); "" = none [48-51]
  -v prefix         the Copper prefix (mount point)                   [/tmp/\$USER/copper]
  -d log_dir        log directory                                     [/tmp/copper-logs-<uid>]
  -c cache_dir      node-local cache directory                        [agent's default]
  -n NODES, --simulate-nodes NODES
                    start an MPI job of NODES agent ranks on this machine, each a
                    node of its own (socket, cache); apps choose with COPPER_NODE=k
  -H hostfile       the job's nodes, one host per line  [\$PBS_NODEFILE, Slurm's list]
  -F fanout         children per tree node (2..1024)   [about the cube root of NODES]
  -P seconds        patience with a silent parent before reading the file system [5]
  --no-fuse         do not mount the prefix with FUSE (shim only)
  --fuse-only       mount, and print no LD_PRELOAD/LD_AUDIT exports (mount only)
  -m FILE           the job's manifest: replay FILE when it exists; at stop, merge what
                    this job asked of the file system into FILE (re-runs get faster)
  --wait-replay[=SECONDS]  with -m: return once every node has every entry (at most
                    SECONDS, default 300; else the replay goes on after the launch)
  --replay-concurrency N   file-system operations the replay keeps in flight  [32]
  -h, --help        this help
The prefix is mounted read-only with FUSE when /dev/fuse is usable (simulated node k > 0
mounts at PREFIX.n<k>); the shim still serves preloaded processes first.
The mount point must be a new or empty directory (exit 1 otherwise).
Prints export lines for eval: COPPER_PREFIX, COPPER_PRELOAD, COPPER_AUDIT
(and COPPER_RUNTIME_DIR when set; COPPER_MOUNT when mounted). Agent override:
COPPER_AGENT=/path.
Launching again on a running prefix: the same options print the exports again (exit 0);
other options are named and refused (exit 3; stop_copper.sh -v PREFIX first).
EOF
}

# ---------------------------------------------------------------- helpers

is_posint() { [[ $1 =~ ^[0-9]{1,18}$ ]] && ((10#$1 > 0)); }

# Absolute, normalized path (no trailing slash, no //, no . components; .. is kept
# textual only when it cannot be resolved lexically). Does not touch the file system.
# abs_path: the one bash normalization of a path; gone, descendants: processes
# (copper-paths.sh, next to this script).
# shellcheck source=copper-paths.sh
source "$(dirname "${BASH_SOURCE[0]}")/copper-paths.sh"

# Expand a taskset-style cpu list ("48-51", "0,2,4-6") into one number per line.
# Fails on syntax it does not understand.
expand_cpulist() {
    local item a b
    local IFS=,
    for item in $1; do
        if [[ $item =~ ^([0-9]+)$ ]]; then
            printf '%d\n' "$((10#$item))"
        elif [[ $item =~ ^([0-9]+)-([0-9]+)$ ]]; then
            a=$((10#${BASH_REMATCH[1]})) b=$((10#${BASH_REMATCH[2]}))
            ((a <= b)) || return 1
            seq "$a" "$b"
        else
            return 1
        fi
    done
}

# True when every core in the list exists on this machine and we may run on it.
cpus_available() {
    local list=$1 cpus c total
    cpus=$(expand_cpulist "$list") || return 1
    [[ -n $cpus ]] || return 1
    total=$(nproc --all 2>/dev/null || echo 0)
    for c in $cpus; do
        if [[ -d /sys/devices/system/cpu ]]; then
            [[ -d /sys/devices/system/cpu/cpu$c ]] || return 1
        else
            ((c < total)) || return 1
        fi
    done
    # Existing is not enough: the core may be offline or outside our cpuset.
    taskset -c "$list" true 2>/dev/null
}

human_bytes() { # 10485760 -> 10M (exact K/M/G multiples only)
    local b=$1
    if ((b % (1 << 30) == 0)); then
        printf '%sG\n' "$((b >> 30))"
    elif ((b % (1 << 20) == 0)); then
        printf '%sM\n' "$((b >> 20))"
    elif ((b % 1024 == 0)); then
        printf '%sK\n' "$((b >> 10))"
    else
        printf '%s\n' "$b"
    fi
}

now_ms() { # milliseconds since the epoch, without forking
    local t=${EPOCHREALTIME/[^0-9]/}
    printf '%s\n' "$((10#${t:0:${#t}-3}))"
}

# pid file -> pid of a live agent process, or nothing (status 1). A pid whose process
# does not look like an agent (no --prefix on its command line) is a reused pid.
live_pid() {
    local pidfile=$1 pid cmd
    [[ -r $pidfile ]] || return 1
    read -r pid 2>/dev/null <"$pidfile" || [[ -n ${pid:-} ]] || return 1
    [[ $pid =~ ^[0-9]+$ ]] && ((pid > 1)) || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
        [[ $cmd == *--prefix* ]] || return 1
    fi
    printf '%s\n' "$pid"
}

# ---------------------------------------------------------------- options

log_level=6
log_type="file"
trees=1
max_bytes=10485760
cache_budget=  # empty: the agent's default
sleeptime=20
physcpubind=48-51
user=${USER:-}
[[ -n $user ]] || user=$(id -un)
prefix=/tmp/$user/copper
log_dir=/tmp/copper-logs-$(id -u)
cache_dir=
nodes=    # empty: one agent, started without --node
hostfile=
fanout=
patience=
fuse=auto  # auto | no | only
manifest=
wait_replay=        # seconds to wait for the replay, empty: do not wait
replay_concurrency=
max_meta=  # empty: the agent's default

# Long options first (getopts knows only short ones).
args=()
while (($#)); do
    case $1 in
        --simulate-nodes) (($# >= 2)) || die_usage "option --simulate-nodes needs a value"
            args+=(-n "$2"); shift 2 ;;
        --simulate-nodes=*) args+=(-n "${1#*=}"); shift ;;
        --no-fuse) fuse=no; shift ;;
        --fuse-only) fuse=only; shift ;;
        --wait-replay) wait_replay=300; shift ;;
        --wait-replay=*) [[ ${1#*=} =~ ^[0-9]{1,6}$ ]] && ((10#${1#*=} > 0)) ||
                die_usage "--wait-replay: seconds must be a positive integer, got '${1#*=}'"
            wait_replay=$((10#${1#*=})); shift ;;
        --replay-concurrency) (($# >= 2)) || die_usage "option --replay-concurrency needs a value"
            [[ $2 =~ ^[0-9]{1,4}$ ]] && ((10#$2 >= 1 && 10#$2 <= 1024)) ||
                die_usage "--replay-concurrency: must be 1..1024, got '$2'"
            replay_concurrency=$((10#$2)); shift 2 ;;
        --max-meta-entries) (($# >= 2)) || die_usage "option --max-meta-entries needs a value"
            [[ $2 =~ ^[0-9]{1,15}$ ]] && ((10#$2 == 0 || 10#$2 >= 16)) ||
                die_usage "--max-meta-entries: must be 0 (no bound) or at least 16, got '$2'"
            max_meta=$((10#$2)); shift 2 ;;
        --help) args+=(-h); shift ;;
        --) args+=("$@"); break ;;
        --*) die_usage "unknown option '$1'" ;;
        *) args+=("$1"); shift ;;
    esac
done
set -- ${args[@]+"${args[@]}"}

OPTIND=1
while getopts ':l:t:T:M:C:s:b:v:d:c:n:H:F:P:m:h' opt; do
    case $opt in
        l) [[ $OPTARG =~ ^[1-6]$ ]] || die_usage "-l: log level must be 1..6, got '$OPTARG'"
           log_level=$OPTARG ;;
        t) case $OPTARG in
               file) log_type="file" ;;
               file_and_stdout | stdout_and_file) log_type=file_and_stdout ;;
               *) die_usage "-t: log type must be 'file' or 'file_and_stdout', got '$OPTARG'" ;;
           esac ;;
        T) is_posint "$OPTARG" || die_usage "-T: trees must be a positive integer, got '$OPTARG'"
           trees=$((10#$OPTARG)) ;;
        M) if [[ $OPTARG =~ ^([0-9]{1,15})([KkMmGg]?)$ ]]; then
               max_bytes=$((10#${BASH_REMATCH[1]}))
               case ${BASH_REMATCH[2]} in
                   K | k) max_bytes=$((max_bytes * 1024)) ;;
                   M | m) max_bytes=$((max_bytes * 1024 * 1024)) ;;
                   G | g) max_bytes=$((max_bytes * 1024 * 1024 * 1024)) ;;
               esac
               ((max_bytes > 0)) || die_usage "-M: size must be positive, got '$OPTARG'"
           else
               die_usage "-M: size must be a positive integer with optional K/M/G, got '$OPTARG'"
           fi ;;
        C) if [[ $OPTARG =~ ^([0-9]{1,15})([KkMmGg]?)$ ]]; then
               cache_budget=$((10#${BASH_REMATCH[1]}))
               case ${BASH_REMATCH[2]} in
                   K | k) cache_budget=$((cache_budget * 1024)) ;;
                   M | m) cache_budget=$((cache_budget * 1024 * 1024)) ;;
                   G | g) cache_budget=$((cache_budget * 1024 * 1024 * 1024)) ;;
               esac
               ((cache_budget > 0)) || die_usage "-C: budget must be positive, got '$OPTARG'"
           elif [[ $OPTARG =~ ^([0-9]{1,3})%$ ]] && ((10#${BASH_REMATCH[1]} >= 1 && 10#${BASH_REMATCH[1]} <= 100)); then
               # Each agent takes the percentage of its own node's cache file system.
               cache_budget="$((10#${BASH_REMATCH[1]}))%"
           else
               die_usage "-C: budget must be a positive size with optional K/M/G, or 1%..100%, got '$OPTARG'"
           fi ;;
        s) [[ $OPTARG =~ ^[0-9]{1,9}(\.[0-9]{1,3})?$ ]] ||
               die_usage "-s: sleeptime must be a number of seconds, got '$OPTARG'"
           sleeptime=$OPTARG ;;
        b) physcpubind=$OPTARG
           if [[ -n $physcpubind && $physcpubind != none ]]; then
               expand_cpulist "$physcpubind" >/dev/null ||
                   die_usage "-b: not a cpu list (like 48-51 or 0,2,4-6): '$OPTARG'"
           fi ;;
        v) [[ -n $OPTARG ]] || die_usage "-v: prefix must not be empty"
           prefix=$(abs_path "$OPTARG")
           [[ $prefix != / ]] || die_usage "-v: prefix must not be /" ;;
        d) [[ -n $OPTARG ]] || die_usage "-d: log dir must not be empty"
           log_dir=$(abs_path "$OPTARG") ;;
        c) [[ -n $OPTARG ]] || die_usage "-c: cache dir must not be empty"
           cache_dir=$(abs_path "$OPTARG")
           [[ $cache_dir != / ]] || die_usage "-c: cache dir must not be /" ;;
        n) is_posint "$OPTARG" || die_usage "-n: node count must be a positive integer, got '$OPTARG'"
           nodes=$((10#$OPTARG)) ;;
        H) [[ -r $OPTARG ]] || die_usage "-H: cannot read hostfile '$OPTARG'"
           hostfile=$(abs_path "$OPTARG") ;;
        F) [[ $OPTARG =~ ^[0-9]{1,4}$ ]] && ((10#$OPTARG >= 2 && 10#$OPTARG <= 1024)) ||
               die_usage "-F: fanout must be 2..1024, got '$OPTARG'"
           fanout=$((10#$OPTARG)) ;;
        P) [[ $OPTARG =~ ^[0-9]{1,6}(\.[0-9]{1,3})?$ ]] && [[ $OPTARG =~ [1-9] ]] ||
               die_usage "-P: patience must be a positive number of seconds, got '$OPTARG'"
           patience=$OPTARG ;;
        m) [[ -n $OPTARG ]] || die_usage "-m: manifest file must not be empty"
           manifest=$(abs_path "$OPTARG")
           [[ -d ${manifest%/*}/ ]] || die_usage "-m: the manifest's directory does not exist: ${manifest%/*}"
           [[ ! -d $manifest ]] || die_usage "-m: $manifest is a directory" ;;
        h) usage; exit 0 ;;
        :) die_usage "option -$OPTARG needs a value" ;;
        *) die_usage "unknown option -$OPTARG" ;;
    esac
done
shift $((OPTIND - 1))
(($# == 0)) || die_usage "unexpected argument '$1'"
[[ -z $wait_replay || -n $manifest ]] || die_usage "--wait-replay needs -m FILE"
# The agents' replay options.
replay_opts=()
[[ -z $manifest ]] || replay_opts+=(--manifest "$manifest")
[[ -z $replay_concurrency ]] || replay_opts+=(--replay-concurrency "$replay_concurrency")

# Readiness timeout in ms.
if [[ $sleeptime == *.* ]]; then
    frac=${sleeptime#*.}000
    timeout_ms=$((10#${sleeptime%%.*} * 1000 + 10#${frac:0:3}))
else
    timeout_ms=$((10#$sleeptime * 1000))
fi

# ---------------------------------------------------------------- locations

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
agent=${COPPER_AGENT:-$script_dir/copper-agent}
[[ -x $agent ]] || die "agent not found or not executable: $agent (set COPPER_AGENT to override)"
lib_dir=$(abs_path "$script_dir/../lib")
preload_lib=$lib_dir/libcopper-preload.so
audit_lib=$lib_dir/libcopper-audit.so
for lib in "$preload_lib" "$audit_lib"; do
    [[ -e $lib ]] || note "warning: $lib does not exist (is the native part built?)"
done

mkdir_private "$(abs_path "$log_dir")" || die "cannot create log dir $log_dir"
[[ -w $log_dir ]] || die "log dir $log_dir is not writable"
# The launch and the agents write here: a directory another user owns or may write could
# hold a symlink to one of your files (the agents check the directories above it too).
[[ ! -L $log_dir && -O $log_dir ]] || die "log dir $log_dir is not owned by $(id -un); remove it or choose another (-d)"
(( (8#$(stat -c %a "$log_dir") & 8#022) == 0 )) ||
    die "log dir $log_dir is writable by group or others; remove it or choose another (-d)"

host=$(hostname -s 2>/dev/null || uname -n)

# Where the agents run (see the header). node_ids are the nodes whose directories live
# on this machine: 0..N-1 when simulating, else "-" (one agent, no --node).
mode=single
job_hosts=()
if [[ -n $nodes ]]; then
    mode=simulate
elif [[ -n $hostfile || -n ${PBS_NODEFILE:-} || -n ${SLURM_JOB_NODELIST:-} ]]; then
    mode=cluster
    if [[ -n $hostfile ]]; then
        mapfile -t job_hosts < <(awk 'NF && $1 !~ /^#/ { sub(/:.*/, "", $1); if (!seen[$1]++) print $1 }' "$hostfile")
    elif [[ -n ${PBS_NODEFILE:-} ]]; then
        [[ -r $PBS_NODEFILE ]] || die "PBS_NODEFILE=$PBS_NODEFILE is not readable"
        mapfile -t job_hosts < <(awk 'NF { if (!seen[$1]++) print $1 }' "$PBS_NODEFILE")
    else
        command -v scontrol >/dev/null || die "SLURM_JOB_NODELIST is set but scontrol is missing"
        mapfile -t job_hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
    fi
    ((${#job_hosts[@]})) || die "no hosts found for the job"
    nodes=${#job_hosts[@]}
fi
if [[ $mode == simulate ]]; then
    mapfile -t node_ids < <(seq 0 $((nodes - 1)))
else
    node_ids=(-) # "-": this machine's agent, started without --node
fi
node_opts() { [[ $1 == - ]] || printf '%s\n' --node "$1"; }
node_name() { if [[ $1 == - ]]; then printf '%s\n' "$host"; else printf 'node %s\n' "$1"; fi; }
mount_point_of() { # node -> its mount point: the prefix, or PREFIX.n<k> for simulated node k > 0
    if [[ $1 == - || $1 == 0 ]]; then printf '%s\n' "$prefix"; else printf '%s.n%s\n' "$prefix" "$1"; fi
}
node_tag() { if [[ $1 == - ]]; then printf '%s\n' "$host"; else printf '%s.n%s\n' "$host" "$1"; fi; }

declare -A sock_dir=()
for k in "${node_ids[@]}"; do
    mapfile -t nopt < <(node_opts "$k")
    sock=$("$agent" --print-socket --prefix "$prefix" ${nopt[@]+"${nopt[@]}"}) ||
        die "'$agent --print-socket' failed"
    [[ $sock == /*/agent.sock ]] || die "unexpected socket path from the agent: '$sock'"
    sock_dir[$k]=${sock%/agent.sock}
done

# Serialize launches for one prefix (two launches must not start two agents).
first=${node_ids[0]}
runtime_dir=${sock_dir[$first]%/*}
mkdir_private "$runtime_dir" || die "cannot create runtime dir $runtime_dir"
[[ -O $runtime_dir ]] || die "runtime dir $runtime_dir is not owned by $(id -un)"
base=${sock_dir[$first]##*/}
base=${base%.n[0-9]*}
lock=$runtime_dir/.$base.lock
exec 9>>"$lock" || die "cannot open lock $lock"
flock -w "$(((timeout_ms + 999) / 1000 + 5))" 9 || die "another launch for $prefix holds $lock"

# ---------------------------------------------------------------- launching again

# The options of the running agents, as the launch that started them recorded them.
options_file=$runtime_dir/.$base.options

# This launch's options, one per line, in the order of the usage, each as a user would
# write it; values are normalized so that equal settings compare equal.
launch_options() {
    local p=${patience:-5}
    if [[ $p == *.* ]]; then
        while [[ $p == *0 ]]; do p=${p%0}; done
        p=${p%.}
    fi
    printf -- '-l %s\n-t %s\n-T %s\n-M %s\n' "$log_level" "$log_type" "$trees" "$(human_bytes "$max_bytes")"
    if [[ -z $cache_budget ]]; then printf -- '-C (default)\n'
    elif [[ $cache_budget == *% ]]; then printf -- '-C %s\n' "$cache_budget"
    else printf -- '-C %s\n' "$(human_bytes "$cache_budget")"; fi
    printf -- '--max-meta-entries %s\n' "${max_meta:-1000000}"
    printf -- '-b %s\n-d %s\n-c %s\n' "${physcpubind:-none}" "$log_dir" "${cache_dir:-(default)}"
    case $mode in
        single) printf 'one agent (no -n)\n' ;;
        simulate) printf -- '-n %s\n' "$nodes" ;;
        cluster) printf '%s hosts %s..%s (list checksum %s)\n' "$nodes" "${job_hosts[0]}" "${job_hosts[nodes - 1]}" \
            "$(printf '%s\n' "${job_hosts[@]}" | cksum | cut -d' ' -f1)" ;;
    esac
    printf -- '-F %s\n-P %s\n' "${fanout:-(default)}" "$p"
    case $fuse in
        auto) printf 'the FUSE mount (default)\n' ;;
        no) printf -- '--no-fuse\n' ;;
        only) printf -- '--fuse-only\n' ;;
    esac
}

recorded=
record_options() {
    recorded=1
    { printf '# launch_copper.sh options for %s (compared when launched again)\n' "$prefix"; launch_options; } \
        >"$options_file.$$" && mv -f "$options_file.$$" "$options_file" ||
        note "warning: cannot record the options in $options_file"
}

# When an agent already serves the prefix: the same options go on (same_options says so);
# other options are named, and the launch exits 3.
same_options=
check_running_options() {
    local k running= have=() want=() was=() asked=() i
    for k in "${node_ids[@]}"; do
        if live_pid "${sock_dir[$k]}/agent.pid" >/dev/null; then running=1; break; fi
    done
    [[ -n $running ]] || return 0
    if [[ ! -r $options_file ]]; then
        same_options=" (its options were not recorded: not compared)"
        return 0
    fi
    mapfile -t have < <(grep -v '^#' "$options_file")
    mapfile -t want < <(launch_options)
    for i in "${!want[@]}"; do
        if [[ ${have[i]:-} != "${want[i]}" ]]; then
            was+=("${have[i]:-(not recorded)}")
            asked+=("${want[i]}")
        fi
    done
    if ((${#asked[@]})); then
        die "copper is already running for $prefix with $(printf '%s, ' "${was[@]}" | sed 's/, $//'); this launch asked for $(printf '%s, ' "${asked[@]}" | sed 's/, $//'); stop it first with stop_copper.sh -v $prefix" 3
    fi
    same_options=" with the same options"
}
check_running_options

# ---------------------------------------------------------------- start

pin=
if [[ -n $physcpubind && $physcpubind != none ]]; then
    if cpus_available "$physcpubind"; then
        pin=$physcpubind
    else
        pin_msg="cores '$physcpubind' are not all available on $host ($(nproc --all 2>/dev/null || echo '?') cpus, online $(cat /sys/devices/system/cpu/online 2>/dev/null || echo '?')): starting the agent unpinned"
    fi
fi

# FUSE: mount the prefix when /dev/fuse is usable (root mounts directly; others need
# fusermount3). A mount left by an agent that was killed is removed first.
mount_opt=()
budget_opt=()
[[ -z $cache_budget ]] || budget_opt=(--cache-budget "$cache_budget")
[[ -z $max_meta ]] || budget_opt+=(--max-meta-entries "$max_meta")
mount_escaped() { # /proc/mounts escapes space, tab, newline and backslash as octal
    local p=${1//\\/\\134}
    p=${p// /\\040}
    p=${p//$'\t'/\\011}
    printf '%s\n' "${p//$'\n'/\\012}"
}
is_mounted() { grep -qF " $(mount_escaped "$1") " /proc/mounts 2>/dev/null; }
mount_type() { # file system type of the mount at $1 (the last one stacked there)
    MP=$(mount_escaped "$1") awk '$2 == ENVIRON["MP"] { t = $3 } END { print t }' /proc/mounts 2>/dev/null
}
# A mount point must be missing, an empty directory, or a Copper mount (one left by a killed
# agent is removed below): mounting over files would hide them from everyone on the node.
check_mount_point() {
    local mp=$1 t entries n
    if is_mounted "$mp"; then
        t=$(mount_type "$mp")
        [[ $t == fuse.copper ]] ||
            die "$mp is the mount point of another file system ($t): mounting Copper there would hide it; use a new or empty directory as the prefix (-v), or launch with --no-fuse"
        return 0
    fi
    [[ -e $mp || -L $mp ]] || return 0
    [[ -d $mp && ! -L $mp ]] ||
        die "$mp exists and is not a directory: Copper cannot mount there; use a new or empty directory as the prefix (-v), or launch with --no-fuse"
    entries=$(ls -A -- "$mp" 2>/dev/null) || die "cannot list $mp, the mount point: it may hold files a mount would hide"
    [[ -n $entries ]] || return 0
    n=$(printf '%s\n' "$entries" | wc -l)
    die "$mp is not empty ($n $( ((n == 1)) && echo entry || echo entries), e.g. '$(head -n 1 <<<"$entries")'): mounting Copper there would hide them; use a new or empty directory as the prefix (-v), or launch with --no-fuse"
}
clear_stale_mount() {
    local mp=$1
    is_mounted "$mp" || return 0
    note "removing a stale mount at $mp"
    fusermount3 -u "$mp" 2>/dev/null || fusermount3 -uz "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
}
if [[ $fuse != no ]]; then
    if [[ -c /dev/fuse && -r /dev/fuse && -w /dev/fuse ]] && { ((EUID == 0)) || command -v fusermount3 >/dev/null; }; then
        mount_opt=(--mount "$prefix")
    elif [[ $fuse == only ]]; then
        die "--fuse-only: /dev/fuse is not usable on $host"
    else
        note "FUSE is not usable on $host (/dev/fuse): serving through LD_PRELOAD only"
    fi
fi

# Reset SIGINT/SIGQUIT to default: a background job of a non-interactive shell
# inherits them ignored, and the agent must stop on SIGINT too.
reset_sig=()
if env --default-signal=INT true 2>/dev/null; then
    reset_sig=(env '--default-signal=INT,QUIT' --)
fi

declare -A started=()  # node -> pid of an agent this run started
declare -A waiting=()  # node -> 1 while we wait for its readiness
declare -A out_offset=()  # node -> size of its .out file before this run started it

agent_out() { printf '%s/copper-agent.%s.out\n' "$log_dir" "$(node_tag "$1")"; }

# Start one agent for node $1, detached, output appended to its .out file.
start_local_agent() {
    local k=$1 out cmd=() nopt=()
    mapfile -t nopt < <(node_opts "$k")
    out=$(agent_out "$k")
    cmd=("$agent" --prefix "$prefix" --log-level "$log_level" --log-type "$log_type"
        --log-dir "$log_dir" --max-cacheable-bytes "$max_bytes" --trees "$trees"
        ${budget_opt[@]+"${budget_opt[@]}"}
        ${mount_opt[@]+"${mount_opt[@]}"} ${replay_opts[@]+"${replay_opts[@]}"})
    if ((${#mount_opt[@]})); then clear_stale_mount "$(mount_point_of "$k")"; fi
    cmd+=(${nopt[@]+"${nopt[@]}"})
    if [[ -n $cache_dir ]]; then
        if [[ -n $nodes ]] && ((nodes > 1)); then
            cmd+=(--cache-dir "$cache_dir.n$k") # each simulated node its own cache
        else
            cmd+=(--cache-dir "$cache_dir")
        fi
    fi
    [[ -z $pin ]] || cmd=(taskset -c "$pin" "${cmd[@]}")
    if [[ -n ${pin_msg:-} && -z ${pin_msg_shown:-} ]]; then
        note "$pin_msg" # once on stderr; in every node's log below
        pin_msg_shown=1
    fi
    out_offset[$k]=$(stat -c %s "$out" 2>/dev/null || echo 0)
    {
        printf '==== %s %s: starting %s\n' "$(date '+%F %T')" "$PROG" "${cmd[*]}"
        [[ -z ${pin_msg:-} ]] || printf '%s: %s\n' "$PROG" "$pin_msg"
    } >>"$out"
    setsid ${reset_sig[@]+"${reset_sig[@]}"} "${cmd[@]}" </dev/null >>"$out" 2>&1 9>&- &
    started[$k]=$!
    waiting[$k]=1
}

start_local_agents() {
    local k d pid
    for k in "${node_ids[@]}"; do
        d=${sock_dir[$k]}
        if pid=$(live_pid "$d/agent.pid"); then
            if [[ -e $d/agent.ready ]]; then
                note "$(node_name "$k"): agent already running for $prefix$same_options (pid $pid)"
            else
                note "$(node_name "$k"): agent for $prefix is starting (pid $pid); waiting"
                waiting[$k]=1
            fi
            continue
        fi
        # Stale files of an agent that died without cleaning up.
        if [[ -d $d ]]; then
            rm -f "$d/agent.sock" "$d/agent.ready" "$d/agent.pid"
        fi
        if ((${#mount_opt[@]})); then check_mount_point "$(mount_point_of "$k")"; fi
        ((${#started[@]})) || record_options
        start_local_agent "$k"
    done
}

# Stop the agents this run started (SIGTERM, then SIGKILL), and their files.
stop_started() {
    local k pid d cache deadline
    for k in "${!started[@]}"; do
        kill -TERM "${started[$k]}" 2>/dev/null || true
    done
    deadline=$(($(now_ms) + 2000))
    for k in "${!started[@]}"; do
        pid=${started[$k]} d=${sock_dir[$k]}
        while kill -0 "$pid" 2>/dev/null && (($(now_ms) < deadline)); do
            # a child that exited is a zombie until waited for: reap it
            [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]] || break
            sleep 0.02
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        cache=
        if [[ -r $d/cache-dir ]]; then read -r cache 2>/dev/null <"$d/cache-dir" || true; fi
        rm -f "$d/agent.sock" "$d/agent.ready" "$d/agent.pid" "$d/cache-dir"
        rmdir "$d" 2>/dev/null || true
        if [[ $cache == /?*/?* && -O $cache ]]; then rm -rf -- "$cache"; fi
    done
    started=()
    [[ -z $recorded ]] || rm -f "$options_file"
}

on_signal() {
    note "interrupted; stopping the agents started"
    stop_started
    exit 130
}
trap on_signal INT TERM HUP

# Poll every 20 ms until every waited-for node has agent.ready, an agent we started
# died, or the timeout passed.
wait_ready() {
    local deadline k d pid rc
    deadline=$(($(now_ms) + timeout_ms))
    while :; do
        for k in "${!waiting[@]}"; do
            d=${sock_dir[$k]}
            if [[ -e $d/agent.ready ]]; then
                unset 'waiting[$k]'
                continue
            fi
            pid=${started[$k]:-}
            if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
                rc=0
                wait "$pid" 2>/dev/null || rc=$?
                note "error: the agent for $(node_name "$k") exited (status $rc) before it was ready; see $(agent_out "$k")"
                # the agent's own last lines (after this run's "====" marker)
                awk '/^==== /{n=0; delete l; next} {l[++n]=$0} END{for(i=(n>8?n-7:1);i<=n;i++) print "    " l[i]}' \
                    "$(agent_out "$k")" >&2 2>/dev/null || true
                unset 'started[$k]'
                stop_started
                exit 1
            fi
        done
        ((${#waiting[@]})) || return 0
        if (($(now_ms) >= deadline)); then
            local names=() k2 list
            for k2 in "${!waiting[@]}"; do names+=("$(node_name "$k2")"); done
            list=$(printf '%s\n' "${names[@]}" | sort -V | paste -sd, - | sed 's/,/, /g')
            note "error: not ready after ${sleeptime}s: $list (prefix $prefix; logs in $log_dir)"
            stop_started
            exit 1
        fi
        sleep 0.02
    done
}

# ---------------------------------------------------------------- the MPI job

job_pid=
job_out=$log_dir/copper-mpiexec.$host.out
job_pidfile=$runtime_dir/.$base.mpiexec.pid

node_label() { # rank -> "node r" or "node r (host)"
    if [[ $mode == cluster ]]; then
        printf 'node %s (%s)\n' "$1" "${job_hosts[$1]}"
    else
        printf 'node %s\n' "$1"
    fi
}

# shellcheck disable=SC2016 # expanded by the guard's own shell
agent_guard='"$@" & a=$!
trap "kill -TERM $a 2>/dev/null" TERM INT
trap "" USR1
while :; do wait "$a"; rc=$?; kill -0 "$a" 2>/dev/null || break; done
if ((rc > 128)); then
    echo "copper-agent: the agent of node ${PMI_RANK:-?} died (status $rc); its ranks use the real paths" >&2
    trap "exit 0" TERM INT
    while :; do sleep 3600 & wait $!; done
fi
exit "$rc"'

start_mpi_job() {
    local k d pid running=0 ready=0 mpiexec_bin cmd=() mpi=() extra=()
    for k in "${node_ids[@]}"; do
        d=${sock_dir[$k]}
        if pid=$(live_pid "$d/agent.pid"); then
            running=$((running + 1))
            [[ ! -e $d/agent.ready ]] || ready=$((ready + 1))
        elif [[ -d $d ]]; then
            rm -f "$d/agent.sock" "$d/agent.ready" "$d/agent.pid"
        fi
    done
    if ((running > 0)); then
        if ((ready == ${#node_ids[@]})); then
            note "agents already running for $prefix$same_options"
            return 1
        fi
        die "agents for $prefix are partly running or starting; run stop_copper.sh -v $prefix first"
    fi
    mpiexec_bin=${MPIEXEC:-}
    if [[ -z $mpiexec_bin ]]; then
        mpiexec_bin=$(command -v mpiexec.mpich || command -v mpiexec) ||
            die "no mpiexec found (install MPICH, or set MPIEXEC)"
    fi
    cmd=("$agent" --mpi --prefix "$prefix" --log-level "$log_level" --log-type "$log_type"
        --log-dir "$log_dir" --max-cacheable-bytes "$max_bytes" --trees "$trees"
        ${budget_opt[@]+"${budget_opt[@]}"}
        ${mount_opt[@]+"${mount_opt[@]}"})
    if ((${#mount_opt[@]})); then
        for k in "${node_ids[@]}"; do check_mount_point "$(mount_point_of "$k")"; done
        for k in "${node_ids[@]}"; do clear_stale_mount "$(mount_point_of "$k")"; done
    fi
    record_options
    [[ $mode != simulate ]] || cmd+=(--node rank)
    [[ -z $fanout ]] || cmd+=(--fanout "$fanout")
    [[ -z $patience ]] || cmd+=(--parent-timeout "$patience")
    [[ -z $cache_dir ]] || cmd+=(--cache-dir "$cache_dir")
    cmd+=(${replay_opts[@]+"${replay_opts[@]}"})
    read -r -a extra <<<"${COPPER_AGENT_ARGS:-}"
    cmd+=(${extra[@]+"${extra[@]}"})
    [[ -z $pin ]] || cmd=(taskset -c "$pin" "${cmd[@]}")
    [[ -z ${pin_msg:-} ]] || note "$pin_msg"
    # Hydra kills the whole job when one rank's PMI connection closes. An agent that dies
    # (OOM killer, SIGKILL) must not take the other nodes' agents with it: a small guard
    # holds the rank's PMI connection until the job is stopped. A clean agent exit ends
    # the guard too.
    cmd=(bash -c "$agent_guard" copper-agent-guard "${cmd[@]}")
    # A dead agent must not take the others down (its ranks fall back to the real paths).
    mpi=("$mpiexec_bin" -disable-auto-cleanup -n "$nodes")
    # Inside a Slurm allocation Hydra starts its proxies itself with its slurm bootstrap
    # (`srun --nodelist ... hydra_pmi_proxy`, one job step): Slurm then tracks and signals the
    # agents as part of the job (and ends them with it), and the launch is the same command
    # as over ssh or PBS, with the same guard and the same readiness report. `srun --mpi=pmi2`
    # would need Slurm's PMI plugin to match the MPI library's, and a second code path.
    # SLURM_OVERLAP=1 is srun's --overlap for that step: the agents share the nodes' CPUs
    # with the application's steps instead of holding one per node (an `srun -n <all cores>`
    # of the application would otherwise wait for the agents' step to end).
    if [[ -n ${SLURM_JOB_ID:-} ]]; then
        mpi=(env SLURM_OVERLAP=1 "${mpi[@]}")
    fi
    if [[ $mode == cluster ]]; then
        local hosts=$log_dir/copper-hosts.$host.txt
        printf '%s\n' "${job_hosts[@]}" >"$hosts"
        mpi+=(-ppn 1 -f "$hosts")
    fi
    printf '==== %s %s: starting %s\n' "$(date '+%F %T')" "$PROG" "${mpi[*]} ${cmd[*]}" >>"$job_out"
    job_offset=$(stat -c %s "$job_out")
    setsid ${reset_sig[@]+"${reset_sig[@]}"} "${mpi[@]}" "${cmd[@]}" </dev/null >>"$job_out" 2>&1 9>&- &
    job_pid=$!
    printf '%s\n' "$job_pid" >"$job_pidfile"
}

# Stop the job this run started: SIGTERM to the local agents and to mpiexec, then
# SIGKILL to what is left of its process group; remove the local nodes' files.
stop_job() {
    local k d pid cache deadline
    [[ -n $job_pid ]] || return 0
    for k in "${node_ids[@]}"; do
        if pid=$(live_pid "${sock_dir[$k]}/agent.pid"); then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    # Hydra starts each launcher (ssh to a node) in a session of its own, out of the process
    # group's reach; one to a node that never answered does not end by itself.
    local launchers=() e
    mapfile -t launchers < <(descendants "$job_pid")
    kill -TERM "$job_pid" 2>/dev/null || true
    deadline=$(($(now_ms) + 3000))
    while ! gone "$job_pid" && (($(now_ms) < deadline)); do sleep 0.05; done
    kill -KILL -- "-$job_pid" 2>/dev/null || kill -KILL "$job_pid" 2>/dev/null || true
    wait "$job_pid" 2>/dev/null || true
    for e in ${launchers[@]+"${launchers[@]}"}; do
        pid=${e%% *}
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "${e#* }" ]] && kill -KILL "$pid" 2>/dev/null || true
    done
    for k in "${node_ids[@]}"; do
        d=${sock_dir[$k]} cache=
        if [[ -r $d/cache-dir ]]; then read -r cache 2>/dev/null <"$d/cache-dir" || true; fi
        rm -f "$d/agent.sock" "$d/agent.ready" "$d/agent.pid" "$d/cache-dir"
        rmdir "$d" 2>/dev/null || true
        if [[ $cache == /?*/?* && -O $cache ]]; then rm -rf -- "$cache"; fi
    done
    rm -f "$job_pidfile"
    [[ -z $recorded ]] || rm -f "$options_file"
    job_pid=
}

# Wait until the root reports the whole tree; name who did not start or join on timeout.
wait_tree_ready() {
    local deadline text rc r started=() joined=() missing=()
    deadline=$(($(now_ms) + timeout_ms))
    while :; do
        text=$(tail -c "+$((job_offset + 1))" "$job_out" 2>/dev/null || true)
        [[ $text != *"copper-agent: tree ready: "* ]] || return 0
        # Hydra's ssh launcher could not reach a node (no sshd, refused, no key): that node's
        # agent can never start, and Hydra waits for it regardless.
        if [[ $mode == cluster && ($text == *$'\n'"ssh: "* || $text == "ssh: "*) ]]; then
            note "error: mpiexec could not start the agent on every node: $(printf '%s\n' "$text" | grep -m 3 '^ssh: ' | paste -sd ';' | sed 's/;/; /g'); see $job_out"
            stop_job
            exit 1
        fi
        if gone "$job_pid"; then
            rc=0
            wait "$job_pid" 2>/dev/null || rc=$?
            note "error: the agent job exited (status $rc) before the tree was ready; see $job_out"
            printf '%s\n' "$text" | tail -n 8 | sed 's/^/    /' >&2
            job_pid=
            stop_job
            exit 1
        fi
        if (($(now_ms) >= deadline)); then
            for ((r = 0; r < nodes; r++)); do
                if [[ $text != *"copper-agent: node $r starting "* && $text != *"copper-agent: node $r of "* ]]; then
                    started+=("$(node_label "$r")")
                elif [[ $text != *"copper-agent: node $r joined"* ]]; then
                    joined+=("$(node_label "$r")")
                fi
            done
            ((${#started[@]} == 0)) || missing+=("did not start: $(printf '%s, ' "${started[@]}" | sed 's/, $//')")
            ((${#joined[@]} == 0)) || missing+=("did not join: $(printf '%s, ' "${joined[@]}" | sed 's/, $//')")
            ((${#missing[@]})) || missing+=("every node joined but the root did not report")
            note "error: not ready after ${sleeptime}s (prefix $prefix): $(printf '%s; ' "${missing[@]}" | sed 's/; $//'); see $job_out"
            stop_job
            exit 1
        fi
        sleep 0.05
    done
}

on_job_signal() {
    note "interrupted; stopping the agent job"
    stop_job
    exit 130
}

# --wait-replay: until the root says every node has every entry (the agent's output from
# $2 on, in $1), at most $wait_replay s; after that the launch returns and the replay goes on.
wait_replay_done() {
    local file=$1 offset=$2 deadline text
    deadline=$(($(now_ms) + wait_replay * 1000))
    while :; do
        text=$(tail -c "+$((offset + 1))" "$file" 2>/dev/null || true)
        if [[ $text == *"copper-agent: replay done on all "* ]]; then
            note "replay done: $(grep -a -o 'replay at the root done: .*' <<<"$text" | tail -n 1 | sed 's/^replay at the root done: //')"
            return 0
        fi
        if (($(now_ms) >= deadline)); then
            note "warning: the replay did not finish on every node within ${wait_replay}s; the agents serve meanwhile (copper stats -v $prefix shows its progress)"
            return 0
        fi
        sleep 0.05
    done
}
if [[ $mode == single ]]; then
    start_local_agents
    wait_ready
    if [[ -n $wait_replay && -n ${started[-]:-} ]]; then
        wait_replay_done "$(agent_out -)" "${out_offset[-]:-0}"
    fi
elif start_mpi_job; then
    trap on_job_signal INT TERM HUP
    wait_tree_ready
    [[ -z $wait_replay ]] || wait_replay_done "$job_out" "$job_offset"
fi
trap - INT TERM HUP
exec 9>&-

# ---------------------------------------------------------------- output (stdout only)

printf 'export COPPER_PREFIX=%q\n' "$prefix"
if [[ $fuse != only ]]; then
    printf 'export COPPER_PRELOAD=%q\n' "$preload_lib"
    printf 'export COPPER_AUDIT=%q\n' "$audit_lib"
fi
if ((${#mount_opt[@]})); then
    if is_mounted "$prefix"; then
        printf 'export COPPER_MOUNT=%q\n' "$prefix"
    else
        note "warning: $prefix is not mounted (see the agent's output in $log_dir); the shim still serves it"
    fi
fi
if [[ -n ${COPPER_RUNTIME_DIR:-} ]]; then
    printf 'export COPPER_RUNTIME_DIR=%q\n' "$COPPER_RUNTIME_DIR"
fi
