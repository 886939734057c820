# Sourced by launch_copper.sh and stop_copper.sh (installed next to them): bash's one
# definition of a path's normalization, the rule of Places.Normalize (C#) and
# copper_normalize (C): absolute (relative to $PWD), `//` and `.` collapsed, `..` clamped at
# `/`, no trailing `/`. NamesParityTests checks that the three agree. Also the two scripts'
# process helpers (gone, descendants).

# abs_path PATH: prints PATH normalized.
abs_path() {
    local p=$1 part out=() parts=()
    [[ $p == /* ]] || p=$PWD/$p
    # read -a splits without pathname expansion (a component may hold '*').
    IFS=/ read -r -d '' -a parts < <(printf '%s\0' "$p") || true
    for part in "${parts[@]}"; do
        case $part in
            '' | .) ;;
            ..) ((${#out[@]})) && unset 'out[${#out[@]}-1]' ;;
            *) out+=("$part") ;;
        esac
    done
    if ((${#out[@]} == 0)); then
        printf '/\n'
    else
        local IFS=/
        printf '/%s\n' "${out[*]}"
    fi
}

gone() { # pid has exited (or is a zombie not yet reaped by its parent)
    local stat
    kill -0 "$1" 2>/dev/null || return 0
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 0
    stat=${stat##*) }
    [[ ${stat:0:1} == Z ]]
}

# "pid comm" of every descendant of $1, children first.
descendants() {
    local c comm
    for c in $(pgrep -P "$1" 2>/dev/null); do
        read -r comm 2>/dev/null <"/proc/$c/comm" || continue
        printf '%s %s\n' "$c" "$comm"
        descendants "$c"
    done
}
