#%Module1.0
# Copper @VERSION@ for environment-modules (Lmod reads it too, but prefers @VERSION@.lua
# next to it): installed as <root>/share/modulefiles/copper/@VERSION@. A site adds
# <root>/share/modulefiles to MODULEPATH; `module load copper` then puts Copper's commands
# (launch_copper.sh, stop_copper.sh, copper, wrapper.sh) on PATH and sets COPPER_HOME.
# Loading preloads nothing: an application reads through Copper only once the job sets
# LD_PRELOAD/LD_AUDIT from launch_copper.sh's exports (or runs under wrapper.sh).
# The install tree is found from this file's own place, so it may be moved or copied whole.
set modfile [file normalize $ModulesCurrentModulefile]
set root [file dirname [file dirname [file dirname [file dirname $modfile]]]]
if {[file tail [file dirname [file dirname $modfile]]] ne "modulefiles"} {
    error "copper: this module file must stay at <install tree>/share/modulefiles/copper/; it is at $modfile"
}
set readme $root/share/doc/copper/README.md

proc ModulesHelp {} {
    global readme
    puts stderr "Copper @VERSION@: a read-only cooperative cache for the HPC \"import storm\".
One agent per node serves the files many ranks read at start-up (Python packages,
LD_LIBRARY_PATH libraries, input decks, dataset folders) from a node-local cache;
applications reach them through a path prefix: /tmp/\$USER/copper/<real path>.

This module puts launch_copper.sh, stop_copper.sh, copper and wrapper.sh on PATH and
sets COPPER_HOME (the install tree). It preloads nothing by itself.

In a job:
  eval \"\$(launch_copper.sh -v /tmp/\$USER/copper)\"
  mpiexec --genv LD_PRELOAD=\$COPPER_PRELOAD --genv LD_AUDIT=\$COPPER_AUDIT \\
          --genv PYTHONPATH=\$COPPER_PREFIX/<real site-packages> python3 app.py
  stop_copper.sh -v /tmp/\$USER/copper
  copper stats -v /tmp/\$USER/copper     # counters of the agents
  copper verify -- python3 app.py       # calls that missed Copper

Guide: $readme (section \"Using Copper\")."
}

module-whatis "Name: Copper"
module-whatis "Version: @VERSION@"
module-whatis "Description: read-only cooperative cache for the import storm: one agent per node serves shared Python packages, libraries and input files of a job from a node-local cache (usage: $readme, section 'Using Copper')"

setenv COPPER_HOME $root
prepend-path PATH $root/bin
