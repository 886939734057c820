#!/usr/bin/env python3
"""Writes bench/REPORT.md and its SVG plots from a storm benchmark's JSON (and, when
present, the foundation, tree, FUSE and replay benchmark results next to it), with a small
model projecting import times to Aurora's scale.

    report.py STORM_JSON [--results DIR] [--out DIR]
"""
import glob
import json
import math
import os
import re
import sys

SCENARIOS = [("local", "local disk", "#888888"), ("direct", "direct on the PFS model", "#d62728"),
             ("shim", "Copper, shim", "#1f77b4"), ("fuse", "Copper, FUSE mount", "#2ca02c")]


def svg_lines(title, xlabel, ylabel, series, path, log_y=False):
    """series: [(label, color, [(x, y)])] -> a small standalone SVG line chart."""
    w, h, l, r, t, b = 640, 400, 70, 190, 40, 50
    xs = sorted({x for _, _, pts in series for x, _ in pts})
    ys = [y for _, _, pts in series for _, y in pts if y > 0 or not log_y]
    if not xs or not ys:
        return
    ymin, ymax = (min(ys), max(ys)) if log_y else (0.0, max(ys))
    if log_y:
        ymin, ymax = 10 ** math.floor(math.log10(ymin)), 10 ** math.ceil(math.log10(ymax))
    ymax = ymax if ymax > ymin else ymin + 1

    def px(x):
        i = xs.index(x)
        return l + (w - l - r) * (i / max(1, len(xs) - 1))

    def py(y):
        if log_y:
            y = max(y, ymin)
            f = (math.log10(y) - math.log10(ymin)) / (math.log10(ymax) - math.log10(ymin))
        else:
            f = (y - ymin) / (ymax - ymin)
        return h - b - (h - t - b) * f

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w / 2 - 60}" y="22" font-size="14">{title}</text>',
         f'<line x1="{l}" y1="{h - b}" x2="{w - r}" y2="{h - b}" stroke="black"/>',
         f'<line x1="{l}" y1="{t}" x2="{l}" y2="{h - b}" stroke="black"/>',
         f'<text x="{(l + w - r) / 2 - 20}" y="{h - 12}">{xlabel}</text>',
         f'<text x="14" y="{t - 10}">{ylabel}</text>']
    for x in xs:
        o.append(f'<text x="{px(x) - 4}" y="{h - b + 16}">{x}</text>')
    ticks = [ymin * 10 ** i for i in range(int(round(math.log10(ymax / ymin))) + 1)] if log_y else [ymin + (ymax - ymin) * i / 4 for i in range(5)]
    for v in ticks:
        o.append(f'<line x1="{l - 4}" y1="{py(v):.1f}" x2="{w - r}" y2="{py(v):.1f}" stroke="#eeeeee"/>')
        o.append(f'<text x="4" y="{py(v) + 4:.1f}">{v:.3g}</text>')
    for i, (label, color, pts) in enumerate(series):
        pts = sorted(pts)
        if pts:
            o.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (
                color, " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)))
            for x, y in pts:
                o.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        o.append(f'<line x1="{w - r + 10}" y1="{t + 18 * i}" x2="{w - r + 30}" y2="{t + 18 * i}" stroke="{color}" stroke-width="2"/>')
        o.append(f'<text x="{w - r + 34}" y="{t + 18 * i + 4}">{label}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def svg_bars(title, bars, path):
    w, h, l, t, b = 640, 60 + 30 * len(bars), 240, 40, 20
    vmax = max(v for _, v in bars) or 1
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
         f'<rect width="{w}" height="{h}" fill="white"/>', f'<text x="20" y="22" font-size="14">{title}</text>']
    for i, (label, v) in enumerate(bars):
        y = t + 30 * i
        o.append(f'<text x="10" y="{y + 15}">{label}</text>')
        o.append(f'<rect x="{l}" y="{y}" width="{(w - l - 60) * v / vmax:.1f}" height="20" fill="#1f77b4"/>')
        o.append(f'<text x="{l + (w - l - 60) * v / vmax + 4:.1f}" y="{y + 15}">{v:.2f}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def newest(results, pattern):
    files = sorted(glob.glob(os.path.join(results, pattern)))
    return open(files[-1]).read() if files else None


def number(text, regex):
    m = re.search(regex, text or "")
    return float(m.group(1)) if m else None


def idle_rows(path):
    """nodes -> (root bytes/s, entry bytes) from a stats_idle_bench.sh result."""
    rows = {}
    for line in open(path):
        f = line.split()
        if len(f) == 8 and f[0].isdigit():
            rows[int(f[0])] = (float(f[6]), int(f[7]))
    return rows


def idle_root_frames(n, beat=3):
    """Liveness frames the root receives per wave when n nodes idle (TreeStats: leaves beat on
    whole seconds every `beat`, a parent sends in the second after fresher news from below)."""
    k = max(2, min(32, math.ceil(n ** (1 / 3) - 1e-9)))
    children = [[c for c in range(k * p + 1, k * p + k + 1) if c < n] for p in range(n)]
    last, fresh, frames, waves = [-100] * n, [False] * n, 0, 20
    for t in range(beat * (waves + 10)):
        news = []
        for p in range(1, n):
            if fresh[p] or t - last[p] > beat or (not children[p] and t % beat == 0 and t != last[p]):
                fresh[p], last[p] = False, t
                if (p - 1) // k == 0:
                    frames += t >= beat * 10
                else:
                    news.append((p - 1) // k)
        for q in news:
            fresh[q] = True
    return k, frames / waves


def idle_stats_section(results, out):
    files = sorted(glob.glob(os.path.join(results, "stats-idle-*.txt")))
    after = [f for f in files if "before" not in os.path.basename(f)]
    before = [f for f in files if "before" in os.path.basename(f)]
    if not after:
        return []
    a = idle_rows(after[-1])
    b = idle_rows(before[-1]) if before else {}
    rel = [os.path.relpath(f, out) if out else f for f in (before[-1:] + after[-1:])]
    md = ["## An idle job: what the counters cost the root", "",
          "`tools/bench/stats_idle_bench.sh` (raw data: " + ", ".join(f"`{r}`" for r in rel) + "): simulated nodes, "
          "no application; bytes per second of reporting messages (whole tree messages) received by the root of tree 0 "
          "while the job idles. Before: every node's full counters every 3 s. After: counters only when they change, "
          "liveness in one small frame per subtree.", "",
          "| nodes | before (B/s) | after (B/s) |", "| --- | --- | --- |"]
    for n in sorted(a):
        md.append(f"| {n} | {b[n][0]:.1f} |" if n in b else f"| {n} | - |")
        md[-1] += f" {a[n][0]:.1f} |"
    n, big = max(a), 10624
    k, frames = idle_root_frames(big)
    per_node = b[n][0] / (n - 1) if n in b else a[n][1] / 3
    md += ["", f"- At {big:,} idle nodes (fan-out {k}): about {frames:.0f} liveness frames of 28 bytes per 3 s, "
           f"{frames * 28 / 3:.0f} B/s at the root; full reports every 3 s would cost about "
           f"{per_node * (big - 1) / 1e6:.1f} MB/s ({per_node:.0f} B/s per node, measured at {n} nodes).", ""]
    return md


def meta_section(text):
    return ["## Metadata memory", "",
            "`tools/bench/meta_bench.sh`: a tree of 400 directories × 500 files walked through the shim (`os.walk` and "
            "`lstat` of every entry, `python3 -S`) by one agent without a bound on metadata entries (`--max-meta-entries 0`) "
            "and by one with `--max-meta-entries 20000`, twice each, and directly; every walk's digest of (path, size, mode) "
            "equals the direct one. RSS and HWM are the agent's resident size and its peak after the walks (KiB). Both agents "
            "also hold the manifest's record, full at 200,000 paths (`--replay-max-entries`, about 80 MB of the resident size; "
            "`tests/Copper.Tests/MetadataBoundTests.cs` runs the walk with a record of 5,000 paths: peak 65-90 MB with the bound of 20,000, 150-185 MB without). "
            "The walk times come from a machine shared with other work: compare them only within one run.", "",
            "```"] + text.strip().splitlines() + ["```", ""]


def replay_docs(results):
    """For each workload, the newest replay results that have it with the mirrors in the agent's
    default place: {workload: (doc, path)} (a run of some workloads leaves the others' rows as
    they were); and, apart, the newest of each other mirror place (--cache-dir):
    {workload: {place: (doc, path)}}."""
    def when(f):
        doc = json.load(open(f))
        m = re.search(r"replay-(\d{4}-\d{2}-\d{2})", os.path.basename(f))
        return doc.get("finished_utc") or (m.group(1) + "T00:00:00" if m else "")
    chosen, elsewhere = {}, {}
    for f in sorted(sorted(glob.glob(os.path.join(results, "replay-*.json"))), key=when):
        doc = json.load(open(f))
        place = doc["parameters"].get("cache_dir", "")
        for wl in {r["workload"] for r in doc["results"]}:
            if place.startswith("the agent's default") or not place:
                chosen[wl] = (doc, f)
            else:
                elsewhere.setdefault(wl, {})[place] = (doc, f)
    return chosen, elsewhere


def replay_section(chosen, elsewhere, out, plots):
    """The replay bench's tables and goals: cold with a replayed manifest against warm."""
    first = chosen.get("numpy", next(iter(chosen.values())))[0]
    p = first["parameters"]
    md = ["## Re-running a job: replayed manifest", "",
          f"`tools/bench/replay_bench.sh`: Copper through the shim on the PFS model with {p['metadata_servers']} "
          f"metadata servers ({p['pfs_service_us']:.0f} µs per operation), {p['ranks_per_node']} ranks per node. At each node "
          "count one job records its manifest (`-m FILE`, cold and warm runs), the next replays it (`-m FILE --wait-replay`, "
          f"{p.get('replay_concurrency', 32)} operations in flight) and then runs cold and warm. \"replay\" is the launch's "
          "wait for every node to have every entry (the root's own part, and the longest of the nodes' own); \"agents' CPU\" "
          "is the user + system time of all the agents until then, their start included (on a shared machine load stretches "
          "the times, not this); \"cold\" is the first run after it.", ""]
    for wl in sorted(chosen):
        doc, path = chosen[wl]
        rows, q, mach = doc["results"], doc["parameters"], doc["machine"]

        def get(sc, n):
            return next((r for r in rows if r["scenario"] == sc and r["workload"] == wl and r["nodes"] == n), None)
        ns = sorted({r["nodes"] for r in rows if r["workload"] == wl})
        md += [f"### {wl}", "",
               f"`{doc['command']}`, raw data `{os.path.relpath(path, out) if out else path}`"
               + (f"; mirrors in {q['cache_dir']}" if "cache_dir" in q else "")
               + (f"; load average (1 min) at the start and end: {mach['loadavg_start']:.1f}, {mach['loadavg_end']:.1f} on "
                  f"{mach['cores']} cores" if "loadavg_start" in mach else "") + ".", "",
               "| nodes | shim cold s | shim warm s | cold / warm | replay s (root, every node) | agents' CPU s | replayed cold s "
               "| replayed warm s | replayed cold / warm | PFS ops without / with replay | requests up in the replayed cold run |",
               "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        ratios, ops = [], []
        for n in ns:
            a, b = get("shim", n), get("replay", n)
            if not (a and b):
                continue
            ratios.append((n, b["cold_s"] / b["warm_s"], a["cold_s"] / a["warm_s"]))
            ops.append((n, a["pfs_ops"], b["pfs_ops"], a.get("pfs_ops_job", a["pfs_ops"])))
            md.append(f"| {n} | {a['cold_s']:.3f} | {a['warm_s']:.3f} | {a['cold_s'] / a['warm_s']:.2f} | "
                      f"{b['replay_root_s']:.3f}, {b['replay_all_s']:.3f} | "
                      + (f"{b['replay_agents_cpu_s']:.2f}" if "replay_agents_cpu_s" in b else "-")
                      + f" | {b['cold_s']:.3f} | {b['warm_s']:.3f} | "
                      f"{b['cold_s'] / b['warm_s']:.2f} | {a['pfs_ops']} / {b['pfs_ops']} | {b['forwarded_up_cold']} |")
        entries = next((get("shim", n)["manifest_entries"] for n in ns if get("shim", n)), 0)
        size = next((get("shim", n)["manifest_bytes"] for n in ns if get("shim", n)), 0)
        last = get("replay", ns[-1]) or {}
        brought = (f" (the replay brings {last['replay_files']} files, {last['replay_bytes'] / 1e6:.1f} MB, to every node)"
                   if "replay_files" in last else "")
        md += ["", f"- Manifest: {entries} entries, {size} bytes{brought}.",
               "- Cold with a replayed manifest / warm (goal ≤ 1.3): " + ", ".join(f"{n}: {x:.2f}" for n, x, _ in ratios)
               + "; without replay: " + ", ".join(f"{n}: {y:.2f}" for n, _, y in ratios) + ".",
               "- PFS operations with replay ≤ without, flat in nodes: "
               + ", ".join(f"{n}: {b} ≤ {a}" + (f" (the recording job's, its warm run included: {j})" if j != a else "") for n, a, b, j in ops)
               + f" ({'yes' if all(b <= max(a, j) for _, a, b, j in ops) else 'no'}).",
               f"- Replay until every node of {ns[-1]} has every entry: {get('replay', ns[-1])['replay_all_s']:.2f} s (goal < 1 s; "
               f"{ns[-1]} agents decoding and writing {ns[-1]} copies of the files on one 2-core machine), the root's own: "
               f"{get('replay', ns[-1])['replay_root_s']:.2f} s"
               + (f", the agents' CPU {last['replay_agents_cpu_s']:.2f} s" if "replay_agents_cpu_s" in last else "") + "."]
        if elsewhere.get(wl):
            md.append("- Where the mirrors are matters: every node writes its own copy of every file, and on this VM the "
                      "agent's default place, /tmp, is on the root ext4 file system, where creating a file costs about "
                      "0.5-0.8 ms (2,000 empty files take 1.1-1.7 s; perf shows its inode allocator skipping recently freed "
                      "inodes one by one). Compute nodes often keep /tmp in memory; there:")
        for place, (odoc, opath) in sorted(elsewhere.get(wl, {}).items()):
            for r in sorted((r for r in odoc["results"] if r["workload"] == wl and r["scenario"] == "replay"), key=lambda r: r["nodes"]):
                md.append(f"- With the mirrors in {place} (`{odoc['command']}`, raw data "
                          f"`{os.path.relpath(opath, out) if out else opath}`, load average {odoc['machine'].get('loadavg_start', 0):.1f}): "
                          f"replay to {r['nodes']} nodes {r['replay_root_s']:.2f} s at the root, {r['replay_all_s']:.2f} s every node, "
                          f"agents' CPU {r.get('replay_agents_cpu_s', 0):.2f} s; replayed cold / warm {r['cold_s'] / r['warm_s']:.2f}.")
        md.append("")
        if ratios:
            svg_lines(f"{wl}: cold / warm, with and without a replayed manifest", "simulated nodes", "cold / warm",
                      [("Copper, shim", "#1f77b4", [(n, y) for n, _, y in ratios]),
                       ("Copper, shim, replayed manifest", "#9467bd", [(n, x) for n, x, _ in ratios])],
                      os.path.join(plots, f"{wl}-replay-ratio.svg"))
            md += [f"![cold / warm](plots/{wl}-replay-ratio.svg)", ""]
    return md


def testbed(results, plots):
    """The section of the test bed's figures (tools/bench/cluster_bench.sh), if it ran."""
    files = sorted(glob.glob(os.path.join(results, "cluster-*.json")))
    if not files:
        return []
    doc = json.load(open(files[-1]))
    rows, p, m = doc["results"], doc["parameters"], doc["machine"]
    nodes = sorted({r["nodes"] for r in rows})

    def row(sc, wl, n):
        return next((r for r in rows if r["scenario"] == sc and r["workload"] == wl and r["nodes"] == n), None)

    md = ["## Test bed: one node per namespace", "",
          f"Test-bed figures (`{doc['command']}`, raw data `{os.path.relpath(files[-1], os.path.dirname(plots))}`): "
          f"`out/bin/cluster up N --ssh --pfs DIR` makes each node its own network, UTS and mount namespace "
          f"(own hostname, address on a bridge, `/tmp`, sshd); the PFS model ({p['pfs_service_us']:.0f} µs per metadata "
          "operation) is mounted on a mount point shared with every node; the agents are launched from node 1 with a "
          "hostfile (`launch_copper.sh -H`: mpiexec over ssh, one agent per node, the same prefix on every node) and talk "
          "MPI over the veths (`UCX_TLS=tcp,self UCX_NET_DEVICES=eth0`); "
          f"{p['ranks_per_node']} ranks per node start at once in their nodes. Every node shares the machine's "
          f"{m['cores']} cores, so times grow with the node count for every scenario and say little "
          "alone: compare scenarios within a row (ratios) and the operation counts. "
          f"Each figure is the median of {p['runs']} job(s) (`BENCH_RUNS`); cold is the job's first run, warm its second."
          + (f" Load average (1 min) when the run started and ended: {m['loadavg_start']:.1f} and "
             f"{m['loadavg_end']:.1f}, on {m['cores']} cores (the nodes themselves raise it; well above the core count at the start means other work shared the machine)." if "loadavg_start" in m else ""), ""]
    for wl, what in (("numpy", "`import numpy`"), ("pynamic", "Pynamic-style package"), ("dataset", "dataset walk")):
        if not any(r["workload"] == wl for r in rows):
            continue
        cold = [(lab, col, [(n, row(sc, wl, n)["cold_s"]) for n in nodes if row(sc, wl, n)]) for sc, lab, col in SCENARIOS]
        ops = [(lab, col, [(n, max(row(sc, wl, n)["pfs_ops"], 1)) for n in nodes if row(sc, wl, n)]) for sc, lab, col in SCENARIOS if sc != "local"]
        svg_lines(f"test bed, {wl}: cold, until every rank is done", "nodes (namespaces)", "seconds", cold, os.path.join(plots, f"testbed-{wl}-cold.svg"), log_y=True)
        svg_lines(f"test bed, {wl}: operations on the PFS model", "nodes (namespaces)", "operations", ops, os.path.join(plots, f"testbed-{wl}-pfs-ops.svg"), log_y=True)
        md += [f"### Test bed: {what}", "",
               f"![cold](plots/testbed-{wl}-cold.svg) ![PFS operations](plots/testbed-{wl}-pfs-ops.svg)", "",
               "| nodes | scenario | cold s | warm s | cold / direct | PFS ops (cold) | bytes over the tree | agent RSS MiB |",
               "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for n in nodes:
            d = row("direct", wl, n)
            for sc, lab, _ in SCENARIOS:
                r = row(sc, wl, n)
                if r:
                    ratio = f"{r['cold_s'] / d['cold_s']:.2f}" if d and d["cold_s"] > 0 else "-"
                    md.append(f"| {n} | {lab} | {r['cold_s']:.3f} | {r['warm_s']:.3f} | {ratio} | {r['pfs_ops']} | "
                              f"{r['tree_bytes']} | {r['agent_rss_kb'] / 1024:.0f} |")
        md.append("")
    t = doc.get("tree")
    if t:
        mb = t["bytes"] / 1e6
        md += ["### Test bed: the tree versus `MPI_Bcast`", "",
               f"{t['bytes'] / 2 ** 20:.0f} MiB to {t['nodes']} nodes over the veths, median of {len(t['tree_runs'])}: "
               f"`MPI_Bcast` (tools/bench/bcast.c, 1 MiB chunks, each rank writes its copy to its node's `/tmp`) "
               f"{t['bcast_s']:.3f} s ({mb / t['bcast_s']:.0f} MB/s per node); Copper's tree (every node reads the file "
               f"through the shim at once, cold) {t['tree_s']:.3f} s ({mb / t['tree_s']:.0f} MB/s per node); throughput "
               f"ratio tree / bcast {t['ratio']:.2f} (goal ≥ 0.8). The source file is in the page cache for both.", ""]
    return md


def main():
    args = sys.argv[1:]
    storm = args[0]
    results = args[args.index("--results") + 1] if "--results" in args else os.path.dirname(storm)
    out = args[args.index("--out") + 1] if "--out" in args else os.path.join(os.path.dirname(results.rstrip("/")), "")
    plots = os.path.join(out, "plots")
    os.makedirs(plots, exist_ok=True)
    doc = json.load(open(storm))
    rows = doc["results"]
    p = doc["parameters"]
    nodes = sorted({r["nodes"] for r in rows})

    def row(sc, wl, n):
        return next((r for r in rows if r["scenario"] == sc and r["workload"] == wl and r["nodes"] == n), None)

    md = ["# Copper benchmark report", "",
          f"Machine: {doc['machine']['cores']} cores, Linux {doc['machine']['kernel']}, Python {doc['machine']['python']}. "
          f"Command: `{doc['command']}`" + (" (`--quick`: CI size)" if p["quick"] else "") + ".",
          f"Parameters: simulated nodes {p['nodes']}, {p['ranks_per_node']} ranks per node, PFS model service time "
          f"{p['pfs_service_us']:.0f} µs per metadata operation (one queue), dataset of {p.get('dataset_files', 2000)} files. "
          f"Raw data: `{os.path.relpath(storm, out) if out else storm}`.", "",
          "All nodes share one 2-core machine, so absolute times are pessimistic and noisy; the ratios "
          "measured in the same run and the operation counts are what carry over.", ""]

    for wl, what in (("numpy", "`import numpy`"), ("pynamic", f"Pynamic-style package ({p.get('pynamic', '')})"),
                     ("dataset", "dataset walk (scandir + read of every file)"), ("torch", "`import torch`")):
        if not any(r["workload"] == wl for r in rows):
            continue
        cold = [(lab, col, [(n, row(sc, wl, n)["cold_s"]) for n in nodes if row(sc, wl, n)]) for sc, lab, col in SCENARIOS]
        warm = [(lab, col, [(n, row(sc, wl, n)["warm_s"]) for n in nodes if row(sc, wl, n)]) for sc, lab, col in SCENARIOS]
        ops = [(lab, col, [(n, max(row(sc, wl, n)["pfs_ops"], 1)) for n in nodes if row(sc, wl, n)]) for sc, lab, col in SCENARIOS if sc != "local"]
        svg_lines(f"{wl}: cold, time until every rank is done", "simulated nodes", "seconds", cold, os.path.join(plots, f"{wl}-cold.svg"), log_y=True)
        svg_lines(f"{wl}: warm (second run in the job)", "simulated nodes", "seconds", warm, os.path.join(plots, f"{wl}-warm.svg"), log_y=True)
        svg_lines(f"{wl}: operations on the PFS model", "simulated nodes", "operations", ops, os.path.join(plots, f"{wl}-pfs-ops.svg"), log_y=True)
        md += [f"## {what}", "", f"![cold](plots/{wl}-cold.svg) ![warm](plots/{wl}-warm.svg) ![PFS operations](plots/{wl}-pfs-ops.svg)", "",
               "| nodes | scenario | cold s | warm s | PFS ops (cold job) | bytes over the tree | agent RSS MiB |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for n in nodes:
            for sc, lab, _ in SCENARIOS:
                r = row(sc, wl, n)
                if r:
                    md.append(f"| {n} | {lab} | {r['cold_s']:.3f} | {r['warm_s']:.3f} | {r['pfs_ops']} | {r['tree_bytes']} | {r['agent_rss_kb'] / 1024:.0f} |")
        md.append("")

    md += testbed(results, plots)

    # Goals
    md += ["## Goals", ""]
    shim_ops = [row("shim", "numpy", n)["pfs_ops"] for n in nodes if row("shim", "numpy", n)]
    direct_ops = [row("direct", "numpy", n)["pfs_ops"] for n in nodes if row("direct", "numpy", n)]
    md.append(f"- PFS operations with Copper (numpy, shim) at {nodes[0]} → {nodes[-1]} nodes: {shim_ops[0]} → {shim_ops[-1]}; "
              f"direct: {direct_ops[0]} → {direct_ops[-1]} (grows with nodes × ranks).")
    wls = sorted({r["workload"] for r in rows})
    never = all(row("shim", w, n)["cold_s"] <= row("direct", w, n)["cold_s"] for w in wls for n in nodes)
    md.append(f"- Copper (shim) never slower than direct, cold, at any node count: {'yes' if never else 'no'} "
              + ", ".join(f"{n}: {row('shim', 'numpy', n)['cold_s'] / row('direct', 'numpy', n)['cold_s']:.2f}x" for n in nodes) + " (numpy, Copper/direct).")
    warm_ratio = [row("shim", "numpy", n)["warm_s"] / row("local", "numpy", n)["warm_s"] for n in nodes]
    md.append("- Warm import through Copper versus local disk (same node count): "
              + ", ".join(f"{n}: {x:.2f}x" for n, x in zip(nodes, warm_ratio)) + " (goal ≤ 1.10).")
    tree = newest(results, "tree-*.txt")
    ratio = number(tree, r"throughput ratio: ([0-9.]+)")
    if ratio is not None:
        md.append(f"- Tree throughput versus `MPI_Bcast` (tree bench): {ratio:.2f} (goal ≥ 0.8).")
    md.append("")

    # Micro-benchmarks
    found = newest(results, "foundation-*.txt")
    agent_us, cache_us, native_us = (number(found, r"answered by the agent \(round trip\)\s+([0-9.]+)"),
                                      number(found, r"answered by the process cache\s+([0-9.]+)"),
                                      number(found, r"native stat on the real path\s+([0-9.]+)"))
    fuse = newest(results, "fuse-*.txt")
    bars = []
    if native_us:
        bars += [("stat, process cache / native", cache_us / native_us), ("stat, agent / native", agent_us / native_us)]
    imp = number(found, r"ratio Copper/direct\s+([0-9.]+)")
    if imp:
        bars.append(("warm import, shim / direct", imp))
    fm = number(fuse, r"through the FUSE mount\s+\S+\s+\S+\s+\(ratio to direct ([0-9.]+)")
    if fm:
        bars.append(("warm import, FUSE / direct", fm))
    if ratio:
        bars.append(("tree / MPI_Bcast throughput", ratio))
    if bars:
        svg_bars("Micro-benchmarks (ratios)", bars, os.path.join(plots, "micro.svg"))
        md += ["## Micro-benchmarks", "", "![micro](plots/micro.svg)", ""]
        md += [f"- {label}: {v:.2f}" for label, v in bars] + [""]

    # The agent's memory for metadata (tools/bench/meta_bench.sh)
    meta = newest(results, "meta-*.txt")
    if meta:
        md += meta_section(meta)

    # Re-running a job (tools/bench/replay_bench.sh)
    replay_doc = None
    chosen, elsewhere = replay_docs(results)
    if chosen:
        replay_doc = chosen.get("numpy", (None, None))[0]
        md += replay_section(chosen, elsewhere, out, plots)

    # An idle job's reporting cost (tools/bench/stats_idle_bench.sh)
    md += idle_stats_section(results, out)

    # Projection
    r1 = row("direct", "numpy", nodes[0])
    m = r1["pfs_ops"] / (nodes[0] * p["ranks_per_node"])  # PFS ops per rank-import, direct
    u = row("shim", "numpy", nodes[0])["pfs_ops"]         # PFS ops of Copper's root for the job
    s = p["pfs_service_us"] * 1e-6
    t_local = row("local", "numpy", nodes[0])["cold_s"]
    hop = 0.7e-3  # measured cold miss at a child (README: 0.6-0.8 ms on this machine)
    misses = 250  # round trips of a cold import (shim)
    wr = warm_ratio[0]
    ranks_aurora = 12
    md += ["## Projection to Aurora's scale (10,624 nodes)", "",
           "A deliberately small model, calibrated by this run:", "",
           f"- direct: `T = max(T_local, N × R × m × s)`: every rank's metadata operations queue at the metadata server; "
           f"m = {m:.0f} operations per import (measured on the PFS model, which lets the client cache nothing), s = {s * 1e6:.0f} µs;",
           f"- Copper cold: `T = T_local + u × s + misses × d(N) × h`: the root makes u = {u} PFS operations once, and a rank's "
           f"{misses} sequential misses each climb d(N) = ⌈log_k N⌉ levels (k ≈ ∛N) at h = {hop * 1e3:.1f} ms per hop;",
           f"- Copper warm: `T = T_local × {wr:.2f}` (measured warm/local); direct warm = direct cold (the storm repeats).", "",
           f"| nodes | direct (s, R = {ranks_aurora}) | direct, s fitted to Lustre | Copper cold (s) | Copper warm (s) |"
           + (" Copper, replayed manifest (s) |" if replay_doc else ""), "| --- | --- | --- | --- | --- |" + (" --- |" if replay_doc else "")]
    if replay_doc:
        rp = replay_doc["parameters"]
        conc = rp.get("replay_concurrency", 32)
        entries = next((r["manifest_entries"] for r in replay_doc["results"] if r["scenario"] == "shim" and r["workload"] == "numpy"), u)
        data = next((r.get("replay_bytes", 0) for r in replay_doc["results"] if r["scenario"] == "replay" and r["workload"] == "numpy"), 0)
        link = 10e9  # bytes/s over one tree hop: an assumption (Slingshot 11 NICs carry 25 GB/s)
        md.insert(len(md) - 2, f"- Copper with a replayed manifest: `T = u × s / C + d(N) × ⌈E / C⌉ × h + B / W + T_local × {wr:.2f}`: the root "
                  f"revalidates the manifest's u PFS operations C = {conc} at a time (a metadata service with at least C servers), each of "
                  f"the d(N) levels pulls the E = {entries} entries C at a time, one hop h each, the B = {data / 1e6:.1f} MB of files stream "
                  f"down pipelined in chunks at W = {link / 1e9:.0f} GB/s per hop (an assumption, not measured here), and the import that follows is a warm one "
                  "(no request climbs the tree); the replay's time is counted in full, as if the launch waited for it.")
        md.insert(len(md) - 2, "")
    s_fit = 120.0 / (2048 * ranks_aurora * m)
    for n in (128, 512, 1024, 2048, 4096, 10624):
        k = max(2, math.ceil(n ** (1 / 3)))
        d = max(1, math.ceil(math.log(n) / math.log(k)))
        direct = max(t_local, n * ranks_aurora * m * s)
        direct_fit = max(t_local, n * ranks_aurora * m * s_fit)
        cold = t_local + u * s + misses * d * hop
        line = f"| {n} | {direct:.0f} | {direct_fit:.1f} | {cold:.1f} | {t_local * wr:.2f} |"
        if replay_doc:
            line += f" {u * s / conc + d * math.ceil(entries / conc) * hop + data / link + t_local * wr:.2f} |"
        md.append(line)
    md += ["", "Upstream Copper's published figures (PDSW'24, Aurora, 12 ranks per node, `import torch`): at 2,048 nodes "
           "cold about 57 s with Copper versus about 120 s on Lustre; a second import about 2 s versus about 180 s; "
           "Copper slower than Lustre below about 100 nodes.", "",
           "Where the model is weak: it counts metadata operations as a single queue (a real Lustre MDS serves many in "
           "parallel and clients cache with locks: the fitted column scales s so that direct matches the published 120 s); "
           "it ignores data bandwidth, the interconnect's contention and stragglers; `import torch` opens far more files "
           "than numpy; and the hop latency was measured on 2 shared cores, where progress threads compete with the "
           "application, not on a node with a core to spare.", ""]
    with open(os.path.join(out, "REPORT.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print(os.path.join(out, "REPORT.md"))


if __name__ == "__main__":
    main()
