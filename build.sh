#!/usr/bin/env bash
# Thin entry point: installs missing system packages (as root on Debian/Ubuntu),
# restores the local Cake tool, and hands every argument to build.cake.
#   ./build.sh --target=Demo    run the demo (Copper on this machine, numpy through it)
#   ./build.sh --target=Test    build and run the tests
set -euo pipefail
cd "$(dirname "$0")"

packages=(gcc g++ make cmake mpich libmpich-dev fuse3 libfuse3-dev python3 python3-dev python3-numpy strace util-linux iproute2 procps bc openssh-server
  slurmctld slurmd slurm-client munge lmod tcl8.6 python3-pip python3-venv python3-setuptools)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "build.sh: installing ${missing[*]}" >&2
    # The test bed runs its own sshd, munged and Slurm daemons; the packages must not start
    # the system's (a policy-rc.d that denies every start, only for this install, and only
    # if the machine has none of its own).
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\n# build.sh: no daemon starts while it installs packages\nexit 101\n' >"$policy"
      chmod 0755 "$policy"
      made_policy=1
      trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    if [ "$made_policy" = 1 ]; then rm -f "$policy"; trap - EXIT; fi
  fi
fi

# Debian's environment-modules conflicts with lmod (each provides `module`). The tests run
# Copper's module files with both, so environment-modules is unpacked, not installed, into
# build/environment-modules; the tests call its modulecmd.tcl with tclsh directly.
em_dir=build/environment-modules
if ! compgen -G "$em_dir/usr/lib/*/modulecmd.tcl" >/dev/null && command -v apt-get >/dev/null 2>&1; then
  em_tmp=$(mktemp -d)
  # apt downloads as its own user (_apt) where it can write; nobody else may write here.
  if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$em_tmp"; fi
  if (cd "$em_tmp" && { apt-get download -qq environment-modules >&2 ||
        { [ "$(id -u)" = 0 ] && apt-get update -qq && apt-get download -qq environment-modules >&2; }; }); then
    mkdir -p "$em_dir"
    dpkg-deb -x "$em_tmp"/environment-modules_*.deb "$em_dir"
  else
    echo "build.sh: could not download environment-modules (its module-file test will fail)" >&2
  fi
  rm -rf "$em_tmp"
fi

dotnet tool restore >/dev/null
exec dotnet cake build.cake "$@"
