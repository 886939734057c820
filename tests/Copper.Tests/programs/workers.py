# Reads every file under a directory (given with or without the Copper prefix) from 4 forked
# worker processes and 8 threads at once; prints a digest that must not depend on the prefix.
import hashlib
import multiprocessing as mp
import os
import sys
import threading

prefix, root = sys.argv[1], sys.argv[2]


def files():
    out = []
    for dirpath, dirnames, filenames in os.walk(prefix + root):
        dirnames.sort()
        for name in sorted(filenames):
            out.append(os.path.join(dirpath, name)[len(prefix):])
    return out


def digest(paths):
    h = hashlib.sha256()
    for p in paths:
        with open(prefix + p, "rb") as f:
            h.update(p.encode())
            h.update(f.read())
    return h.hexdigest()


if __name__ == "__main__":
    all_files = files()[:400]
    chunks = [all_files[i::4] for i in range(4)]
    with mp.get_context("fork").Pool(4) as pool:
        proc = pool.map(digest, chunks)
    results = [None] * 8
    def work(i):
        results[i] = digest(all_files[i::8])
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("files", len(all_files))
    print("processes", len(proc), "threads", len(results))
    print(hashlib.sha256("".join(proc + results).encode()).hexdigest())
