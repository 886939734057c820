#!/usr/bin/env python3
"""Generates a Pynamic-style package (in the spirit of LLNL's Pynamic): N pure-Python
modules, M C-extension modules compiled with gcc now, and L shared utility libraries the
extensions link against (found through $ORIGIN), plus `pynamic_pkg.everything`, which
imports them all and calls into every extension.

    pynamic_gen.py DIR [--modules N] [--extensions M] [--libraries L]   (300, 50, 10)
"""
import os
import subprocess
import sys
import sysconfig


def main():
    args = sys.argv[1:]
    root = args[0]

    def opt(name, default):
        return int(args[args.index(name) + 1]) if name in args else default

    n, m, libs = opt("--modules", 300), opt("--extensions", 50), opt("--libraries", 10)
    pkg = os.path.join(root, "pynamic_pkg")
    libdir = os.path.join(pkg, "lib")
    os.makedirs(libdir, exist_ok=True)
    build = os.path.join(root, ".build")
    os.makedirs(build, exist_ok=True)
    for k in range(libs):
        src = os.path.join(build, f"util{k}.c")
        with open(src, "w") as f:
            f.write(f"int util{k}_value(int x) {{ return x * {k + 3} + {k}; }}\n")
        subprocess.check_call(["gcc", "-O1", "-shared", "-fPIC", "-o", os.path.join(libdir, f"libutil{k}.so"), src])
    include = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for j in range(m):
        k = j % max(libs, 1)
        src = os.path.join(build, f"ext{j}.c")
        with open(src, "w") as f:
            f.write(f"""#define PY_SSIZE_T_CLEAN
#include <Python.h>
{f"int util{k}_value(int);" if libs else ""}
static PyObject *value(PyObject *self, PyObject *args) {{
    (void)self; (void)args;
    return PyLong_FromLong({f"util{k}_value({j})" if libs else str(j)});
}}
static PyMethodDef methods[] = {{{{"value", value, METH_NOARGS, NULL}}, {{NULL, NULL, 0, NULL}}}};
static struct PyModuleDef def = {{PyModuleDef_HEAD_INIT, "ext{j}", NULL, -1, methods}};
PyMODINIT_FUNC PyInit_ext{j}(void) {{ return PyModule_Create(&def); }}
""")
        cmd = ["gcc", "-O1", "-shared", "-fPIC", "-I", include, "-o", os.path.join(pkg, f"ext{j}{suffix}"), src]
        if libs:
            cmd += ["-L", libdir, f"-lutil{k}", "-Wl,-rpath,$ORIGIN/lib"]
        subprocess.check_call(cmd)
    for i in range(n):
        with open(os.path.join(pkg, f"mod{i}.py"), "w") as f:
            f.write(f'"""Generated module {i}."""\nVALUE = {i}\n\n\ndef value():\n    return VALUE * 2\n')
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write('"""A generated Pynamic-style package."""\n')
    with open(os.path.join(pkg, "everything.py"), "w") as f:
        f.write("import importlib\nTOTAL = 0\n")
        f.write(f"for i in range({n}):\n    TOTAL += importlib.import_module(f'pynamic_pkg.mod{{i}}').value()\n")
        f.write(f"for j in range({m}):\n    TOTAL += importlib.import_module(f'pynamic_pkg.ext{{j}}').value()\n")
    subprocess.check_call(["rm", "-rf", build])


if __name__ == "__main__":
    main()
