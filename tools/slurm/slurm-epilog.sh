#!/usr/bin/env bash
# slurm-epilog.sh - Slurm epilog snippet: when a job ends, stop the Copper agents of the job's
# user on this node and remove what they leave (socket directories, caches, FUSE mounts).
#
#   slurm.conf:  Epilog=/path/to/share/copper/slurm-epilog.sh
#   or, from a site's own epilog:  /path/to/share/copper/slurm-epilog.sh || true
#
# slurmd runs it as root on every node of the job with SLURM_JOB_ID, SLURM_JOB_UID and
# SLURM_JOB_USER set. A job whose agents were stopped with stop_copper.sh leaves nothing and
# this finds nothing; it matters when a job ends (time limit, scancel, a failed script)
# without stopping them: an agent killed by Slurm keeps its cache and socket directory on the
# node, and one that escaped the job's processes would keep serving.
#
# What it touches, and how:
#   - agent processes: copper-agent processes of SLURM_JOB_UID, and the mpiexec that
#     launch_copper.sh started for them, except those of another job of that user still
#     running on the node (SLURM_JOB_ID in their environment); SIGTERM (an agent unmounts
#     and removes its own files), SIGKILL after 5 s;
#   - FUSE mounts of type fuse.copper mounted by that user at the prefix of an agent stopped
#     here, or whose agent is dead (ENOTCONN): unmounted by fusermount3 as the user;
#   - in the user's runtime directories (COPPER_RUNTIME_DIR of the agents stopped, and
#     /tmp/copper-run-<uid>): each agent directory no running agent owns, its cache
#     directory (named in its cache-dir file), the launch's lock and recorded options;
#     then, in the user's cache roots (${TMPDIR:-/tmp}/copper-cache-<uid>), the caches of
#     agent directories that are gone, and the root itself once empty.
# Every read of the user's files and every removal runs as the user (setpriv), so a
# symlink or a crafted cache-dir file planted by the user can only reach what the user
# could remove anyway; root never follows the user's paths. Each step is bounded by a
# timeout, and the whole snippet by 60 s. It never fails the job's epilog (exit 0);
# problems go to standard error.
set -euo pipefail

readonly PROG=${0##*/}
note() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# The whole snippet is bounded: a node's epilog must not hang (slurmd would drain the node
# after EpilogTimeout), and a failing snippet must not fail the job's epilog either.
if [[ -z ${COPPER_EPILOG_BOUNDED:-} ]]; then
    COPPER_EPILOG_BOUNDED=1 timeout -k 5 60 "${BASH_SOURCE[0]}" "$@" || note "ended with status $?"
    exit 0
fi

uid=${SLURM_JOB_UID:-}
job=${SLURM_JOB_ID:-}
if [[ ! $uid =~ ^[0-9]+$ ]]; then
    note "SLURM_JOB_UID is not set: nothing to do"
    exit 0
fi
uid=$((10#$uid))
gid=$(getent passwd "$uid" | cut -d: -f4) || gid=
[[ $gid =~ ^[0-9]+$ ]] || gid=$uid

# As the job's user, bounded: no privilege beyond the user's own.
as_user() { timeout -k 2 10 setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"; }

# --------------------------------------------------------------- the agents

# Variable $2 in process $1's environment, option $2's value on its command line; empty
# (not an error) when the process is gone meanwhile.
env_of() { { tr '\0' '\n' <"/proc/$1/environ" | awk -v v="$2=" 'index($0, v) == 1 { print substr($0, length(v) + 1); exit }'; } 2>/dev/null || true; }
arg_of() { { tr '\0' '\n' <"/proc/$1/cmdline" | awk -v o="$2" 'p { print; exit } $0 == o { p = 1 }'; } 2>/dev/null || true; }

# Only processes of this node's network namespace: on a real node that is every process;
# where nodes share one machine (the test bed: one pid namespace, a network namespace per
# node) it keeps the other nodes' agents out.
self_net=$(readlink /proc/self/ns/net 2>/dev/null) || self_net=
stop=()      # agents to stop
keep=()      # agents of the user's other jobs on this node
launchers=() # mpiexec of agents (launch_copper.sh's MPI job)
for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    # The real uid (a non-dumpable process's /proc directory belongs to root).
    [[ $(awk '$1 == "Uid:" { print $2; exit }' "$d/status" 2>/dev/null) == "$uid" ]] || continue
    [[ $(readlink "$d/ns/net" 2>/dev/null) == "$self_net" ]] || continue
    comm=$(cat "$d/comm" 2>/dev/null) || continue
    owner=$(env_of "$pid" SLURM_JOB_ID)
    if [[ $comm == mpiexec* ]]; then
        # launch_copper.sh's MPI job of agents (it runs them under copper-agent-guard), left
        # when the job ended without stop_copper.sh; its ranks are gone with the job's steps.
        grep -qx copper-agent-guard < <(tr '\0' '\n' 2>/dev/null <"$d/cmdline") || continue
        [[ -n $owner && -n $job && $owner != "$job" ]] || launchers+=("$pid")
        continue
    fi
    [[ $comm == copper-agent ]] || continue
    [[ -n $(arg_of "$pid" --prefix) ]] || continue
    if [[ -n $owner && -n $job && $owner != "$job" ]]; then
        keep+=("$pid")
    else
        stop+=("$pid")
    fi
done

prefixes_kept=()
kept_runtime_dirs=()
for pid in ${keep[@]+"${keep[@]}"}; do
    prefixes_kept+=("$(arg_of "$pid" --prefix)")
    r=$(env_of "$pid" COPPER_RUNTIME_DIR)
    kept_runtime_dirs+=("${r:-/tmp/copper-run-$uid}")
done
runtime_dirs=("/tmp/copper-run-$uid")
cache_roots=("/tmp/copper-cache-$uid")
prefixes_stopped=()
for pid in ${stop[@]+"${stop[@]}"}; do
    prefixes_stopped+=("$(arg_of "$pid" --prefix)")
    r=$(env_of "$pid" COPPER_RUNTIME_DIR)
    [[ $r != /* ]] || runtime_dirs+=("$r")
    t=$(env_of "$pid" TMPDIR)
    [[ $t != /* ]] || cache_roots+=("${t%/}/copper-cache-$uid")
done

all=(${stop[@]+"${stop[@]}"} ${launchers[@]+"${launchers[@]}"})
if ((${#all[@]})); then
    note "job ${job:-?}: stopping Copper agent(s) ${stop[*]:-} and launcher(s) ${launchers[*]:-} of uid $uid"
    kill -TERM "${all[@]}" 2>/dev/null || true
    for sig in KILL ''; do
        for _ in $(seq 1 50); do
            left=()
            for pid in "${all[@]}"; do
                s=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || continue
                [[ $s == Z ]] || left+=("$pid")
            done
            ((${#left[@]})) || break
            sleep 0.1
        done
        ((${#left[@]})) || break
        [[ -n $sig ]] || { note "agent(s) ${left[*]} survive SIGKILL"; break; }
        note "agent(s) ${left[*]} did not exit within 5 s: SIGKILL"
        kill -KILL "${left[@]}" 2>/dev/null || true
    done
fi

# --------------------------------------------------------------- FUSE mounts

unescape() { printf '%b' "${1//\\/\\0}"; } # /proc/mounts escapes as \ooo
contains() { local x=$1; shift; local y; for y in "$@"; do [[ $x == "$y" ]] && return 0; done; return 1; }

while read -r _ mp type opts _; do
    [[ $type == fuse.copper ]] || continue
    [[ ,$opts, == *,user_id=$uid,* ]] || continue
    mp=$(unescape "$mp")
    contains "$mp" ${prefixes_kept[@]+"${prefixes_kept[@]}"} && continue
    # A mount of an agent stopped here, or one whose agent is dead (the kernel answers
    # ENOTCONN); a live mount of an agent elsewhere is not this job's.
    if ! contains "$mp" ${prefixes_stopped[@]+"${prefixes_stopped[@]}"}; then
        as_user stat -- "$mp" >/dev/null 2>&1 && continue
    fi
    note "unmounting $mp"
    # fusermount3 checks, as the user, that the mount is the user's own.
    as_user fusermount3 -u -z -- "$mp" 2>/dev/null ||
        { ((uid == 0)) && timeout -k 2 10 umount -l -- "$mp" 2>/dev/null; } ||
        note "cannot unmount $mp"
done < <(cat /proc/self/mounts 2>/dev/null)

# --------------------------------------------------------------- directories

# Agent directories (<16 hex digits>[.n<k>]) no running agent of the user owns, with their
# caches; all as the user. The listing itself runs as the user, so a runtime directory that
# is a symlink to someone else's directory lists nothing the user could not list.
clean_runtime_dir() {
    local r=$1
    # shellcheck disable=SC2016 # expanded by the user's shell
    as_user /bin/bash -c '
        set -u
        r=$1; shift
        [[ -d $r && ! -L $r && -O $r ]] || exit 0
        kept=" $* "
        for d in "$r"/*; do
            n=${d##*/}
            [[ $n =~ ^[0-9a-f]{16}(\.n[0-9]+)?$ && -d $d && ! -L $d ]] || continue
            if [[ -r $d/agent.pid ]]; then
                read -r pid <"$d/agent.pid" 2>/dev/null || pid=
                [[ $kept == *" $pid "* ]] && continue
            fi
            cache=
            if [[ -f $d/cache-dir && ! -L $d/cache-dir ]]; then read -r cache <"$d/cache-dir" 2>/dev/null || cache=; fi
            rm -rf -- "$d"
            if [[ $cache == /?*/?* && $cache != *"/../"* && $cache != */.. && -d $cache && ! -L $cache && -O $cache ]]; then
                rm -rf -- "$cache"
            fi
            echo "removed $d${cache:+ and $cache}"
        done
        for f in "$r"/.*.lock "$r"/.*.options "$r"/.*.mpiexec.pid; do
            [[ -f $f && ! -L $f ]] || continue
            b=${f##*/.}; b=${b%%.*}
            compgen -G "$r/$b*" >/dev/null || rm -f -- "$f"
        done
        rmdir -- "$r" 2>/dev/null || true
    ' clean "$r" ${keep[@]+"${keep[@]}"} 2>&1 | sed "s/^/$PROG: /" >&2 || true
}

# The default cache of an agent that died before naming it in cache-dir: an entry of the
# user's cache root named like an agent directory that no runtime directory holds any more.
clean_cache_root() {
    local c=$1
    shift
    # shellcheck disable=SC2016 # expanded by the user's shell
    as_user /bin/bash -c '
        set -u
        c=$1; shift
        [[ -d $c && ! -L $c && -O $c ]] || exit 0
        for e in "$c"/*; do
            n=${e##*/}
            [[ $n =~ ^[0-9a-f]{16}(\.n[0-9]+)?$ && -d $e && ! -L $e ]] || continue
            for r in "$@"; do [[ -e $r/$n ]] && continue 2; done
            rm -rf -- "$e" && echo "removed $e"
        done
        rmdir -- "$c" 2>/dev/null || true
    ' clean "$c" "$@" 2>&1 | sed "s/^/$PROG: /" >&2 || true
}

declare -A seen=()
for r in "${runtime_dirs[@]}"; do
    [[ -z ${seen[$r]:-} ]] || continue
    seen[$r]=1
    clean_runtime_dir "$r"
done
for c in "${cache_roots[@]}"; do
    [[ -z ${seen[$c]:-} ]] || continue
    seen[$c]=1
    clean_cache_root "$c" "${runtime_dirs[@]}" ${kept_runtime_dirs[@]+"${kept_runtime_dirs[@]}"}
done
exit 0
