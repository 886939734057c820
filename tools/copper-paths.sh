# Sourced by launch_copper.sh and stop_copper.sh (installed next to them): bash's one
# definition of a path's normalization, the rule of Places.Normalize (C#) and
# copper_normalize (C): absolute (relative to $PWD), `//` and `.` collapsed, `..` clamped at
# `/`, no trailing `/`. NamesParityTests checks that the three agree.

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
