// A Copper job on the test bed as on a real cluster: `cluster up 4 --ssh --pfs D` gives four
// nodes that share D (a PFS mount point made shared before the nodes exist); the PFS model
// (copper-pfs-model) serves a copy of numpy there; from node 1 a PBS-style nodefile (each node
// twice) starts one agent per node and mpiexec runs 8 Python ranks, 2 per node, importing numpy
// through the prefix. Every rank prints what a direct run prints; only the tree's root reads the
// PFS, and each file once for the whole job; stop_copper.sh on node 1 stops every node.
using System.Diagnostics;
using System.Text.Json;
using Xunit;

namespace Copper.Tests;

public class ClusterJobTests
{
    private static string Cluster => TestBed.Cluster;

    private static ProcResult Run(string name, params string[] args) =>
        Harness.Run(Cluster, new[] { "--name", name }.Concat(args), timeoutMs: 60_000);

    private static ProcResult Exec(string name, int node, string script, int timeoutMs = 120_000) =>
        Harness.Run(Cluster, new[] { "--name", name, "exec", node.ToString(), "/bin/bash", "-c", script }, timeoutMs: timeoutMs);

    private static bool MountedAtOrBelow(string dir) =>
        File.ReadAllLines("/proc/self/mountinfo")
            .Select(l => l.Split(' ')[4].Replace("\\040", " "))
            .Any(m => m == dir || m.StartsWith(dir + "/", StringComparison.Ordinal));

    private static void Cleanup(string name, string dir, Process? model)
    {
        if (model != null && !model.HasExited)
        {
            model.Kill();
            model.WaitForExit(10_000);
        }
        Run(name, "down");
        // In case down could not: nothing of the test stays mounted or on disk.
        for (int i = 0; i < 10 && MountedAtOrBelow(dir); i++)
        {
            string last = File.ReadAllLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4])
                .Last(m => m == dir || m.StartsWith(dir + "/", StringComparison.Ordinal));
            Harness.Run("umount", new[] { "-l", last });
        }
        if (Directory.Exists(dir) && !MountedAtOrBelow(dir))
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void PfsDirectoryReachesEveryNodeAndDownUnmountsIt()
    {
        string name = "cp" + Guid.NewGuid().ToString("N")[..8];
        string dir = "/var/tmp/copper-lus-" + name;
        try
        {
            ProcResult up = Run(name, "up", "3", "--pfs", dir);
            Assert.True(up.ExitCode == 0, up.ToString());
            Assert.True(MountedAtOrBelow(dir), "up did not bind the PFS directory");

            // A file system mounted on the directory in the root namespace after up (a tmpfs
            // here; the PFS model in the job test) is seen by every node.
            string fs = Path.Combine(dir, "fs");
            Directory.CreateDirectory(fs);
            ProcResult mount = Harness.Run("mount", new[] { "-t", "tmpfs", "-o", "size=1m", "tmpfs", fs });
            Assert.True(mount.ExitCode == 0, mount.ToString());
            File.WriteAllText(Path.Combine(fs, "hello"), name + "\n");
            for (int k = 1; k <= 3; k++)
            {
                ProcResult seen = Exec(name, k, $"cat {fs}/hello && grep -c ' {fs} ' /proc/self/mountinfo");
                Assert.True(seen.ExitCode == 0, seen.ToString());
                Assert.Equal(new[] { name, "1" }, seen.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            }

            // down unmounts it (and the bind) and removes the directory up made.
            ProcResult down = Run(name, "down");
            Assert.True(down.ExitCode == 0, down.ToString());
            Assert.False(MountedAtOrBelow(dir), File.ReadAllText("/proc/self/mountinfo"));
            Assert.False(Directory.Exists(dir), "down left the directory up made");

            // Refused: a path each node has its own copy of, and a relative one.
            foreach (string bad in new[] { "/tmp/copper-lus-" + name, "copper-lus-" + name })
            {
                ProcResult r = Run(name, "up", "1", "--pfs", bad);
                Assert.True(r.ExitCode == 1 && r.Stderr.Contains("--pfs"), r.ToString());
                Assert.False(Directory.Exists("/run/copper-cluster/" + name), "a refused up left its state");
            }
        }
        finally
        {
            Cleanup(name, dir, null);
        }
    }

    [Fact]
    public void FourNodesTwoRanksEachImportNumpyWhileOnlyTheRootReadsThePfsOnce()
    {
        string name = "cj" + Guid.NewGuid().ToString("N")[..8];
        string state = "/run/copper-cluster/" + name;
        string dir = "/var/tmp/copper-lus-" + name;   // the PFS mount point, shared with the nodes
        string src = Path.Combine(dir, "backing");    // what the PFS model serves
        string pfs = Path.Combine(dir, "pfs");        // the PFS model's mount
        string pkgs = Path.Combine(pfs, "pkgs");      // where numpy is, on the "PFS"
        string stats = Path.Combine(dir, "model.json");
        string nodefile = Path.Combine(dir, "nodefile");
        string exports = Path.Combine(dir, "exports");
        string? copied = null;
        // Under each node's own /tmp: the same prefix on every node, the runtime, cache, logs.
        string job = "/tmp/copper-job-" + name;
        string prefix = job + "/copper";
        string env = $"export UCX_TLS=tcp,self UCX_NET_DEVICES=eth0 COPPER_RUNTIME_DIR={job}/run";
        // Each rank writes its line to a file of its own (mpiexec may interleave the ranks' output).
        const string program = "import os, socket, numpy; "
            + "line = \"%s %s %s %s\" % (socket.gethostname(), numpy.__version__, float(numpy.arange(1000.0).sum()), numpy.__file__); "
            + "out = os.environ.get(\"RANK_OUT\"); "
            + "open(out + \".\" + os.environ[\"PMI_RANK\"], \"w\").write(line + \"\\n\") if out else print(line)";
        Process? model = null;
        try
        {
            string bin = Path.Combine(TestBed.VisibleInstall(name, out copied), "bin");
            ProcResult up = Run(name, "up", "4", "--ssh", "--pfs", dir);
            Assert.True(up.ExitCode == 0, up.ToString());

            // A real package tree on the PFS model, mounted in the root namespace after up.
            Directory.CreateDirectory(Path.Combine(src, "pkgs"));
            ProcResult copy = Harness.Run("cp", new[] { "-a", "/usr/lib/python3/dist-packages/numpy", src + "/pkgs/" });
            Assert.True(copy.ExitCode == 0, copy.ToString());
            var psi = new ProcessStartInfo(Path.Combine(bin, "copper-pfs-model"))
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            foreach (string a in new[] { src, "--mount", pfs, "--service-us", "20", "--model-stats", stats, "--per-path" })
            {
                psi.ArgumentList.Add(a);
            }
            model = Process.Start(psi)!;
            model.OutputDataReceived += (_, _) => { };
            model.ErrorDataReceived += (_, _) => { };
            model.BeginOutputReadLine();
            model.BeginErrorReadLine();
            var sw = Stopwatch.StartNew();
            while (!(File.Exists(stats) && File.ReadAllLines("/proc/self/mountinfo").Any(l => l.Split(' ')[4] == pfs)))
            {
                Assert.False(model.HasExited, "the PFS model exited");
                Assert.True(sw.ElapsedMilliseconds < 30_000, "the PFS model did not mount");
                Thread.Sleep(20);
            }

            // PBS lists each node once per rank slot.
            File.WriteAllText(nodefile, string.Concat(Enumerable.Range(1, 4).Select(k => $"node{k}\nnode{k}\n")));

            // The direct run: the same program straight from the PFS, no Copper.
            ProcResult direct = Exec(name, 1, $"PYTHONPATH={pkgs} timeout 60 /usr/bin/python3 -c '{program}'");
            Assert.True(direct.ExitCode == 0, direct.ToString());
            string[] want = direct.Stdout.Trim().Split(' ');
            Assert.Equal(4, want.Length);
            Assert.Equal(pkgs + "/numpy/__init__.py", want[3]);
            Thread.Sleep(600); // the model rewrites its counts every 200 ms
            Dictionary<string, long> opensBefore = Opens(stats);
            // Python opens the package's compiled modules and extensions (dozens of files).
            Assert.True(opensBefore.Count(kv => kv.Key.StartsWith("/pkgs/numpy/", StringComparison.Ordinal)) >= 20,
                "the direct run did not reach the model: " + string.Join(", ", opensBefore.Keys));

            // The job: agents from the PBS nodefile (no -H), then 8 ranks over the 4 nodes. A
            // patient child (-P 30): on a loaded machine a slow parent must not make it read the
            // PFS itself, which this test would count against it.
            ProcResult launch = Exec(name, 1,
                $"set -e; {env}; export PBS_NODEFILE={nodefile}; timeout 100 {bin}/launch_copper.sh -v {prefix} -c {job}/cache -d {job}/logs -b none -s 90 -P 30 > {exports}");
            Assert.True(launch.ExitCode == 0, launch.ToString());
            string exported = File.ReadAllText(exports);
            Assert.DoesNotContain("COPPER_NODE", exported);
            ProcResult ranks = Exec(name, 1,
                $"set -e; {env}; export PBS_NODEFILE={nodefile}; . {exports}; "
                + $"timeout 100 mpiexec.mpich -launcher ssh -f $PBS_NODEFILE -n 8 -ppn 2 -genv LD_PRELOAD \"$COPPER_PRELOAD\" "
                + $"-genv PYTHONPATH \"$COPPER_PREFIX{pkgs}\" -genv COPPER_RUNTIME_DIR \"$COPPER_RUNTIME_DIR\" -genv RANK_OUT {dir}/rank "
                + $"/usr/bin/python3 -c '{program}'", timeoutMs: 150_000);
            Assert.True(ranks.ExitCode == 0, ranks.ToString());
            string[] lines = Enumerable.Range(0, 8).Select(r => File.ReadAllText($"{dir}/rank.{r}").Trim()).Order().ToArray();
            Assert.Equal(Enumerable.Range(1, 4).SelectMany(k => new[] { $"node{k}", $"node{k}" }), lines.Select(l => l.Split(' ')[0]));
            foreach (string l in lines)
            {
                // The same answer as the direct run, numpy loaded through the prefix.
                string[] got = l.Split(' ');
                Assert.Equal(want[1..3], got[1..3]);
                Assert.Equal(prefix + want[3], got[3]);
            }

            // Per node: the agent served its ranks; only the root (node 1, rank 0) read the PFS.
            for (int k = 1; k <= 4; k++)
            {
                ProcResult st = Exec(name, k, $"{env}; timeout 30 {bin}/copper stats -v {prefix} --json");
                Assert.True(st.ExitCode == 0, st.ToString());
                using JsonDocument doc = JsonDocument.Parse(st.Stdout);
                // This node's own agent; on node 1 (the root's) every other node follows, as last reported.
                JsonElement[] all = doc.RootElement.GetProperty("nodes").EnumerateArray().ToArray();
                JsonElement[] agents = all.Where(e => !e.TryGetProperty("age_s", out _)).ToArray();
                Assert.True(agents.Length == 1, $"node{k}: {st.Stdout}");
                Assert.True(all.Length == (k == 1 ? 4 : 1), $"node{k}: {st.Stdout}");
                JsonElement a = agents[0];
                Assert.True(a.GetProperty("requests").GetInt64() > 0, $"node{k}: {st.Stdout}");
                Assert.Equal(k - 1, a.GetProperty("rank").GetInt32());
                long pfsOps = a.GetProperty("pfs_ops").GetInt64();
                if (k == 1)
                {
                    Assert.True(pfsOps > 0, $"the root read nothing: {st.Stdout}");
                }
                else
                {
                    Assert.True(pfsOps == 0, $"node{k} is not the root but read the PFS: {st.Stdout}");
                    Assert.True(a.GetProperty("bytes_from_parent").GetInt64() > 0, $"node{k}: {st.Stdout}");
                }
            }

            // The model's own count: each file was opened once for the whole job (8 ranks, 4 nodes).
            Thread.Sleep(600);
            Dictionary<string, long> opensAfter = Opens(stats);
            var byJob = opensAfter.Select(kv => (kv.Key, N: kv.Value - opensBefore.GetValueOrDefault(kv.Key))).Where(x => x.N > 0).ToArray();
            Assert.True(byJob.Count(x => x.Key.StartsWith("/pkgs/numpy/", StringComparison.Ordinal)) >= 20,
                "the job read too few files: " + string.Join(", ", byJob.Select(x => x.Key)));
            Assert.True(byJob.All(x => x.N == 1), "opened more than once in the job: "
                + string.Join(", ", byJob.Where(x => x.N > 1).Select(x => $"{x.Key} {x.N}")));

            // stop_copper.sh on node 1 alone stops every node's agent (Shutdown goes down the tree).
            ProcResult stop = Exec(name, 1, $"{env}; timeout 60 {bin}/stop_copper.sh -v {prefix}");
            Assert.True(stop.ExitCode == 0, stop.ToString());
            string left = TestBed.LeftInNodes(name, new[] { 1, 2, 3, 4 }, "sshd");
            Assert.True(left == "", left);
            for (int k = 1; k <= 4; k++)
            {
                ProcResult rest = Exec(name, k, $"ls -A {job}/run {job}/cache 2>/dev/null || true; grep -c ' {prefix} ' /proc/self/mountinfo || true");
                Assert.True(rest.ExitCode == 0 && rest.Stdout.Trim() == "0", $"node{k} keeps agent files or its mount: " + rest);
            }

            Assert.Equal(0, Harness.Run("kill", new[] { "-TERM", model.Id.ToString() }).ExitCode);
            Assert.True(model.WaitForExit(20_000), "the PFS model did not stop");
            ProcResult down = Run(name, "down");
            Assert.True(down.ExitCode == 0, down.ToString());
            Assert.False(Directory.Exists(state), "the state directory is left");
            Assert.False(MountedAtOrBelow(dir), "a mount is left at " + dir);
            Assert.False(Directory.Exists(dir), "down left the PFS directory");
            Assert.DoesNotContain($"cu-{name}-", Harness.Run("ip", new[] { "netns", "list" }).Stdout);
        }
        finally
        {
            Cleanup(name, dir, model);
            if (copied != null && Directory.Exists(copied))
            {
                Directory.Delete(copied, recursive: true);
            }
        }
    }

    /// <summary>Opens per path in the PFS model's counts (paths below its mount point).</summary>
    private static Dictionary<string, long> Opens(string stats)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(stats));
        var opens = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (JsonProperty p in doc.RootElement.GetProperty("ops_by_path").EnumerateObject())
        {
            if (p.Value.TryGetProperty("open", out JsonElement n))
            {
                opens[p.Name] = n.GetInt64();
            }
        }
        return opens;
    }
}
