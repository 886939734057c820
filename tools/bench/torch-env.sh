# Sourced by the benches: the torch workload (Debian's python3-torch), run only where it is
# installed.
#   without_torch_unless_installed BENCH WORKLOADS -> WORKLOADS, without torch (and a line
#       saying so on stderr) when torch is not installed
#   copy_torch DEST -> torch, and what `import torch` loads beyond the standard library and
#       numpy (found with python3 -X importtime and the imported modules' files:
#       typing_extensions, six, astunparse), copied into DEST as an environment on a PFS holds
#       them. Debian's torch/lib entries are relative symlinks to /usr/lib/x86_64-linux-gnu,
#       which would dangle in the copy, so the copy gets the libraries themselves (a wheel's
#       torch/lib does too); links that dangle in Debian's tree stay as they are.
torch_site=/usr/lib/python3/dist-packages

without_torch_unless_installed() {
    if [[ " $2 " == *" torch "* && ! -d $torch_site/torch ]]; then
        echo "$1: torch skipped: $torch_site/torch does not exist (Debian: apt-get install python3-torch)" >&2
        tr ' ' '\n' <<<"$2" | { grep -vx -e torch -e '' || true; } | paste -sd ' '
    else
        printf '%s\n' "$2"
    fi
}

copy_torch() {
    local dest=$1 p l
    for p in torch typing_extensions.py six.py astunparse; do
        [[ ! -e $torch_site/$p ]] || cp -a "$torch_site/$p" "$dest/"
    done
    for l in "$torch_site"/torch/lib/*; do
        if [[ -L $l && -e $l ]]; then cp --remove-destination "$(readlink -f "$l")" "$dest/torch/lib/${l##*/}"; fi
    done
}
