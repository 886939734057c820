// Re-running a job on the test bed as on a real cluster: `cluster up 4 --ssh --pfs D`, the PFS
// model serving a copy of numpy under D, the manifest in D (a directory every node sees, as FILE
// must be on a real cluster). Job 1 launches with -m FILE -T 2 from a PBS-style nodefile, 8 ranks
// (2 per node) import numpy through the prefix, `copper manifest save` on node 1 gathers both
// trees' records, and its stop writes FILE from both roots. Job 2 launches with -m
// FILE --wait-replay: the replay reached every node before the ranks ask, every rank prints what
// a direct run prints, no request of the import climbs the tree, and the PFS model counts no more
// operations for job 2 (replay included) than for job 1.
using System.Diagnostics;
using System.Text.Json;
using Copper.Agent;
using Xunit;
using Xunit.Abstractions;

namespace Copper.Tests;

public class ClusterReplayTests(ITestOutputHelper output)
{
    private const string MpiEnv = "export UCX_TLS=tcp,self UCX_NET_DEVICES=eth0";

    // Each rank writes its line to a file of its own (mpiexec may interleave the ranks' output).
    private const string Program = "import os, socket, numpy; "
        + "line = \"%s %s %s %s\" % (socket.gethostname(), numpy.__version__, float(numpy.arange(1000.0).sum()), numpy.__file__); "
        + "out = os.environ.get(\"RANK_OUT\"); "
        + "open(out + \".\" + os.environ[\"PMI_RANK\"], \"w\").write(line + \"\\n\") if out else print(line)";

    [Fact]
    public void AManifestRecordedByOneJobIsReplayedToEveryNodeOfTheNext()
    {
        using var bed = new Bed("cr");
        bed.Up();
        string[] want = bed.Direct();
        long ops0 = bed.ModelOps();

        // Job 1 records, with two trees: node 1 (rank 0) and node 3 (rank 2) are the roots, each
        // reads and records the paths of its tree. A save on demand on node 1 gathers both parts;
        // at the stop (node 1 alone) each root merges its part into the shared file.
        bed.LaunchOrFail("job1", $"-m {bed.Manifest} -T 2");
        Assert.Contains("does not exist yet", bed.JobOutput());
        bed.AssertRanks("job1", want);
        string saved = Path.Combine(bed.Dir, "saved.cpmf");
        ProcResult save = bed.Bash(1, $"timeout 60 {bed.BinDir}/copper manifest save -v {bed.Prefix} {saved}");
        Assert.True(save.ExitCode == 0, save.ToString());
        Assert.Contains("recorded by the roots of 2 trees: 2 of 2 agents", save.Stdout);
        bed.StopAndAssertNothingLeft([1, 2, 3, 4]);
        Manifest? m = Manifest.TryRead(bed.Manifest, bed.Prefix, out string why);
        Assert.True(m != null, why);
        Assert.True(m.Entries.Count > 100, $"{m.Entries.Count} entries");
        var topo = new TreeTopology(4, 2, 0);
        Assert.True(m.Entries.Count(e => topo.TreeOf(e.Path) == 1) > 20, "tree 1's root recorded little: " + m.Entries.Count(e => topo.TreeOf(e.Path) == 1));
        Manifest? onDemand = Manifest.TryRead(saved, bed.Prefix, out why);
        Assert.True(onDemand != null, why);
        // The ranks asked nothing new after the save: both ways give the same paths.
        Assert.Equal(m.Entries.Select(e => e.Path).Order(StringComparer.Ordinal), onDemand.Entries.Select(e => e.Path).Order(StringComparer.Ordinal));
        Assert.Contains(m.Entries, e => e.Path == bed.Pkgs + "/numpy/__init__.py" && (e.Asked & (Asked.Stat | Asked.Lstat)) != 0 && e.Error == 0);
        Assert.Contains(m.Entries, e => e.Path.StartsWith(bed.Pkgs + "/numpy/", StringComparison.Ordinal) && e.Path.EndsWith(".so", StringComparison.Ordinal) && (e.Asked & Asked.Open) != 0);
        long job1 = bed.ModelOps() - ops0;

        // Job 2 replays it: the launch returns once every node has every entry.
        ProcResult launch = bed.Launch("job2", $"-m {bed.Manifest} --wait-replay");
        Assert.True(launch.ExitCode == 0, launch + bed.JobOutput());
        Assert.Contains("copper-agent: replay done on all 4 nodes", bed.JobOutput());
        Dictionary<int, JsonElement> before = bed.Agents();
        foreach ((int k, JsonElement a) in before)
        {
            Assert.True(a.GetProperty("replay_state").GetString() == "done", $"node{k}: {a}");
            Assert.Equal(m.Entries.Count, a.GetProperty("replay_done").GetInt64());
            Assert.True(a.GetProperty("replay_bytes").GetInt64() > 0, $"node{k}: {a}");
        }
        Assert.Equal(0, before[1].GetProperty("replay_changed").GetInt64());

        bed.AssertRanks("job2", want);
        Dictionary<int, JsonElement> after = bed.Agents();
        foreach (int k in new[] { 2, 3, 4 })
        {
            // Everything the ranks asked was on their node already: nothing climbed the tree.
            Assert.True(after[k].GetProperty("requests").GetInt64() > before[k].GetProperty("requests").GetInt64(), $"node{k}: {after[k]}");
            Assert.True(before[k].GetProperty("forwarded_up").GetInt64() == after[k].GetProperty("forwarded_up").GetInt64(),
                $"node{k}: the import sent requests up the tree: before {before[k]}, after {after[k]}");
            Assert.Equal(0, after[k].GetProperty("pfs_ops").GetInt64());
        }
        // ...nor reached the PFS at the root.
        Assert.Equal(before[1].GetProperty("pfs_ops").GetInt64(), after[1].GetProperty("pfs_ops").GetInt64());

        // The PFS's own count: job 2, its replay included, asked no more than job 1.
        long job2 = bed.ModelOps() - ops0 - job1;
        output.WriteLine($"PFS model operations: job 1 {job1}, job 2 (replayed) {job2}; manifest {m.Entries.Count} entries");
        Assert.True(job2 <= job1, $"the PFS model counted {job2} operations for the replayed job, {job1} for the first");

        // One stop on node 1 leaves nothing on any node.
        bed.StopAndAssertNothingLeft([1, 2, 3, 4]);
    }

    /// <summary>A four-node cluster with ssh, the PFS model serving numpy, and one Copper prefix.</summary>
    private sealed class Bed : IDisposable
    {
        private readonly string? _copied;
        private Process? _model;
        private string _tag = "";

        public Bed(string tag)
        {
            Name = tag + Guid.NewGuid().ToString("N")[..8];
            BinDir = Path.Combine(TestBed.VisibleInstall(Name, out _copied), "bin");
        }

        public string Name { get; }
        public string BinDir { get; }
        // Shared by every node: the PFS mount point and what the jobs leave there.
        public string Dir => "/var/tmp/copper-lus-" + Name;
        private string Src => Path.Combine(Dir, "backing");
        private string Pfs => Path.Combine(Dir, "pfs");
        public string Pkgs => Path.Combine(Pfs, "pkgs");
        private string Stats => Path.Combine(Dir, "model.json");
        private string Nodefile => Path.Combine(Dir, "nodefile");
        public string Manifest => Path.Combine(Dir, "numpy.cpmf");
        private string Logs => Path.Combine(Dir, "logs-" + _tag);
        private string Exports => Path.Combine(Dir, "exports-" + _tag);
        // Under each node's own /tmp: the same prefix on every node, the runtime and the cache.
        private string Job => "/tmp/copper-job-" + Name;
        public string Prefix => Job + "/copper";
        private string Env => $"{MpiEnv} COPPER_RUNTIME_DIR={Job}/run";

        public ProcResult Run(params string[] args) =>
            Harness.Run(TestBed.Cluster, new[] { "--name", Name }.Concat(args), timeoutMs: 90_000);

        public ProcResult Bash(int node, string script, int timeoutMs = 150_000) =>
            Harness.Run(TestBed.Cluster, ["--name", Name, "exec", node.ToString(), "/bin/bash", "-c", $"{Env}; {script}"], timeoutMs: timeoutMs);

        public void Up()
        {
            ProcResult up = Run("up", "4", "--ssh", "--pfs", Dir);
            Assert.True(up.ExitCode == 0, up.ToString());
            Directory.CreateDirectory(Path.Combine(Src, "pkgs"));
            ProcResult copy = Harness.Run("cp", ["-a", "/usr/lib/python3/dist-packages/numpy", Src + "/pkgs/"]);
            Assert.True(copy.ExitCode == 0, copy.ToString());
            var psi = new ProcessStartInfo(Path.Combine(BinDir, "copper-pfs-model"))
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            foreach (string a in new[] { Src, "--mount", Pfs, "--service-us", "20", "--model-stats", Stats })
            {
                psi.ArgumentList.Add(a);
            }
            _model = Process.Start(psi)!;
            _model.OutputDataReceived += (_, _) => { };
            _model.ErrorDataReceived += (_, _) => { };
            _model.BeginOutputReadLine();
            _model.BeginErrorReadLine();
            var sw = Stopwatch.StartNew();
            while (!(File.Exists(Stats) && File.ReadAllLines("/proc/self/mountinfo").Any(l => l.Split(' ')[4] == Pfs)))
            {
                Assert.False(_model.HasExited, "the PFS model exited");
                Assert.True(sw.ElapsedMilliseconds < 30_000, "the PFS model did not mount");
                Thread.Sleep(20);
            }
            // PBS lists each node once per rank slot.
            File.WriteAllText(Nodefile, string.Concat(Enumerable.Range(1, 4).Select(k => $"node{k}\nnode{k}\n")));
        }

        /// <summary>The program straight from the PFS on node 1, no Copper: host, version, sum, file.</summary>
        public string[] Direct()
        {
            ProcResult direct = Bash(1, $"PYTHONPATH={Pkgs} timeout 60 {Harness.Python} -c '{Program}'");
            Assert.True(direct.ExitCode == 0, direct.ToString());
            string[] want = direct.Stdout.Trim().Split(' ');
            Assert.Equal(4, want.Length);
            Assert.Equal(Pkgs + "/numpy/__init__.py", want[3]);
            return want;
        }

        /// <summary>
        /// The PFS model's metadata operations, once settled: it rewrites its counts every 200 ms
        /// and a loaded machine delays that, so two readings 0.3 s apart must agree (bounded).
        /// </summary>
        public long ModelOps()
        {
            long Read()
            {
                using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Stats));
                return doc.RootElement.GetProperty("metadata_ops").GetInt64();
            }
            long a = Read();
            for (int i = 0; i < 30; i++)
            {
                Thread.Sleep(300);
                long b = Read();
                if (a == b)
                {
                    break;
                }
                a = b;
            }
            return a;
        }

        /// <summary>launch_copper.sh on node 1 from the nodefile, as a batch script would; logs and exports under <paramref name="tag"/>.</summary>
        public ProcResult Launch(string tag, string args)
        {
            _tag = tag;
            // A patient child by default (-P 30): on a loaded machine a slow parent must not make a
            // node read the PFS itself, which would count against the replay.
            string patience = args.Contains("-P ") ? "" : "-P 30";
            return Bash(1, $"set -e; export PBS_NODEFILE={Nodefile}; timeout 150 {BinDir}/launch_copper.sh -v {Prefix} -c {Job}/cache -d {Logs} "
                + $"-b none --no-fuse -s 90 {patience} {args} > {Exports}", 200_000);
        }

        public void LaunchOrFail(string tag, string args)
        {
            ProcResult launch = Launch(tag, args);
            Assert.True(launch.ExitCode == 0, launch + JobOutput());
        }

        /// <summary>8 ranks over the 4 nodes (mpiexec over ssh from node 1); each prints what the direct run did, through the prefix.</summary>
        public void AssertRanks(string tag, string[] want)
        {
            string outs = Path.Combine(Dir, "rank-" + tag);
            ProcResult ranks = Bash(1, $"set -e; . {Exports}; "
                + $"timeout 120 mpiexec.mpich -launcher ssh -f {Nodefile} -n 8 -ppn 2 -genv LD_PRELOAD \"$COPPER_PRELOAD\" "
                + $"-genv PYTHONPATH \"$COPPER_PREFIX{Pkgs}\" -genv COPPER_RUNTIME_DIR \"$COPPER_RUNTIME_DIR\" -genv RANK_OUT {outs} "
                + $"{Harness.Python} -c '{Program}'", 180_000);
            Assert.True(ranks.ExitCode == 0, ranks + JobOutput());
            string[] lines = Enumerable.Range(0, 8).Select(r => File.ReadAllText($"{outs}.{r}").Trim()).Order().ToArray();
            Assert.Equal(Enumerable.Range(1, 4).SelectMany(k => new[] { $"node{k}", $"node{k}" }), lines.Select(l => l.Split(' ')[0]));
            foreach (string l in lines)
            {
                string[] got = l.Split(' ');
                Assert.Equal(want[1..3], got[1..3]);
                Assert.Equal(Prefix + want[3], got[3]);
            }
        }

        /// <summary>One rank on node <paramref name="node"/> through the prefix (the job's exports), printing its line.</summary>
        public ProcResult Python(int node, string tag) =>
            Bash(node, $". {Path.Combine(Dir, "exports-" + tag)}; LD_PRELOAD=$COPPER_PRELOAD PYTHONPATH=$COPPER_PREFIX{Pkgs} timeout 120 {Harness.Python} -c '{Program}'");

        /// <summary>Each node's own agent's counters (copper stats --json on the node), by node number.</summary>
        public Dictionary<int, JsonElement> Agents()
        {
            var agents = new Dictionary<int, JsonElement>();
            for (int k = 1; k <= 4; k++)
            {
                ProcResult st = Bash(k, $"timeout 30 {BinDir}/copper stats -v {Prefix} --json");
                Assert.True(st.ExitCode == 0, st.ToString());
                using JsonDocument doc = JsonDocument.Parse(st.Stdout);
                JsonElement[] own = doc.RootElement.GetProperty("nodes").EnumerateArray().Where(e => !e.TryGetProperty("age_s", out _)).ToArray();
                Assert.True(own.Length == 1, $"node{k}: {st.Stdout}");
                Assert.Equal(k - 1, own[0].GetProperty("rank").GetInt32());
                agents[k] = own[0].Clone();
            }
            return agents;
        }

        /// <summary>stop_copper.sh on node 1; then no agent, launcher or file of the job is left on <paramref name="nodes"/>.</summary>
        public void StopAndAssertNothingLeft(int[] nodes)
        {
            ProcResult stop = Bash(1, $"timeout 90 {BinDir}/stop_copper.sh -v {Prefix}", 120_000);
            Assert.True(stop.ExitCode == 0, stop + JobOutput());
            string left = TestBed.LeftInNodes(Name, nodes, "sshd");
            Assert.True(left == "", left);
            foreach (int k in nodes)
            {
                // No agent's directory (socket, pid) and no cache; a launch's lock file may stay.
                ProcResult rest = Bash(k, $"find {Job}/run -mindepth 1 -not -name '.*.lock' 2>/dev/null; ls -A {Job}/cache 2>/dev/null; true");
                Assert.True(rest.ExitCode == 0 && rest.Stdout.Trim() == "", $"node{k} keeps agent files: " + rest);
            }
        }

        public string JobOutput() =>
            Directory.Exists(Logs) ? "\n" + string.Concat(Directory.GetFiles(Logs, "copper-mpiexec.*.out").Select(File.ReadAllText)) : "";

        private static bool MountedAtOrBelow(string dir) =>
            File.ReadAllLines("/proc/self/mountinfo")
                .Select(l => l.Split(' ')[4].Replace("\\040", " "))
                .Any(m => m == dir || m.StartsWith(dir + "/", StringComparison.Ordinal));

        public void Dispose()
        {
            if (_model != null && !_model.HasExited)
            {
                _model.Kill();
                _model.WaitForExit(10_000);
            }
            Run("down");
            // In case down could not: nothing of the test stays mounted or on disk.
            for (int i = 0; i < 10 && MountedAtOrBelow(Dir); i++)
            {
                string last = File.ReadAllLines("/proc/self/mountinfo").Select(l => l.Split(' ')[4])
                    .Last(m => m == Dir || m.StartsWith(Dir + "/", StringComparison.Ordinal));
                Harness.Run("umount", ["-l", last]);
            }
            if (Directory.Exists(Dir) && !MountedAtOrBelow(Dir))
            {
                Directory.Delete(Dir, recursive: true);
            }
            if (_copied != null && Directory.Exists(_copied))
            {
                Directory.Delete(_copied, recursive: true);
            }
        }
    }
}
