# Walks a tree with os.scandir / os.listdir / os.stat / os.readlink / os.path.realpath and
# prints everything relative to the root, so the direct and Copper runs can be compared.
import os
import sys

prefix, root = sys.argv[1], sys.argv[2]
top = prefix + root


def rel(p):
    return p[len(prefix):] if p.startswith(prefix) else "REAL:" + p


for dirpath, dirnames, filenames in os.walk(top):
    dirnames.sort()
    print("dir", rel(dirpath), sorted(os.listdir(dirpath)))
    with os.scandir(dirpath) as it:
        for e in sorted(it, key=lambda e: e.name):
            st = e.stat(follow_symlinks=False)
            print(" ", e.name, e.is_dir(), e.is_file(), e.is_symlink(), oct(st.st_mode), st.st_size if not e.is_dir() else "-", st.st_mtime_ns)
            if e.is_symlink():
                print("   ->", os.readlink(e.path), rel(os.path.realpath(e.path)))
fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
print("listdir(fd)", sorted(os.listdir(fd)))
os.close(fd)
