// Record and replay (launch_copper.sh -m FILE) on simulated nodes, with real mpiexec, real
// agents and real python3 + numpy: one job records what it asked, the next replays it down
// the tree before the ranks ask, and nothing stale is ever served.
using System.Text.Json;
using Copper.Agent;
using Xunit;

namespace Copper.Tests;

public class ReplayTests
{
    private static long Num(JsonElement e, string name) => e.GetProperty(name).GetInt64();

    private static string Direct(string code)
    {
        ProcResult r = Harness.Run(Harness.Python, ["-c", code]);
        Assert.True(r.ExitCode == 0, r.ToString());
        return r.Stdout.Trim();
    }

    /// <summary>Waits (bounded) until every listed node says its replay is done.</summary>
    private static Dictionary<int, JsonElement> WaitReplayDone(CopperJob job, params int[] nodes)
    {
        var until = DateTime.UtcNow.AddSeconds(120);
        while (true)
        {
            Dictionary<int, JsonElement> stats = job.Stats();
            if (nodes.All(k => stats.TryGetValue(k, out JsonElement e) && e.GetProperty("replay_state").GetString() == "done"))
            {
                return stats;
            }
            Assert.True(DateTime.UtcNow < until, "the replay did not finish: " + string.Join("\n", stats.Values));
            Thread.Sleep(200);
        }
    }

    [Fact]
    public void AManifestRecordedByOneJobReplayedByTheNextGivesTheSameOutputsAndNoRequestClimbs()
    {
        string dir = Harness.TempDir("replay-numpy");
        string manifest = Path.Combine(dir, "numpy.cpmf");
        string saved = Path.Combine(dir, "saved.cpmf");
        try
        {
            using (var first = new CopperJob(3, "record", $"-m {manifest}"))
            {
                first.LaunchOrFail();
                Assert.Contains("does not exist yet", first.JobOutput());
                AssertImported(first, first.Python([1], ranks: 1));
                // On demand, from the root agent of this machine.
                ProcResult save = Harness.Run(CopperJob.Cli, ["manifest", "save", "-v", first.Prefix, saved], first.Env);
                Assert.True(save.ExitCode == 0, save.ToString());
                Assert.Contains("entries", save.Stdout);
                Assert.Equal(0, first.Stop().ExitCode);
            }
            Manifest m = ReadAnyPrefix(manifest, out _);
            Assert.True(m.Entries.Count > 100, $"{m.Entries.Count} entries");
            ManifestEntry init = m.Entries.Single(e => e.Path == CopperJob.Packages + "/numpy/__init__.py");
            Assert.True((init.Asked & (Asked.Stat | Asked.Lstat)) != 0 && init.Error == 0 && init.Size > 0, init.ToString());
            Assert.Contains(m.Entries, e => e.Path.StartsWith(CopperJob.Packages + "/numpy/", StringComparison.Ordinal) && e.Path.EndsWith(".so", StringComparison.Ordinal) && (e.Asked & Asked.Open) != 0);
            Manifest onDemand = ReadAnyPrefix(saved, out _);
            Assert.True(onDemand.Entries.Count > 100);

            // A manifest names its prefix; each test job has a prefix of its own (a re-run has the same).
            using var second = new CopperJob(3, "replay", $"-m {manifest} --wait-replay");
            File.WriteAllBytes(manifest, (m with { Prefix = second.Prefix }).Encode());
            ProcResult launch = second.Launch();
            Assert.True(launch.ExitCode == 0, launch + "\n" + second.JobOutput());
            Assert.Contains("replay done", launch.Stderr);
            Assert.Contains("copper-agent: replay done on all 3 nodes", second.JobOutput());
            Dictionary<int, JsonElement> before = second.Stats();
            foreach (JsonElement e in before.Values)
            {
                Assert.Equal("done", e.GetProperty("replay_state").GetString());
                Assert.Equal(m.Entries.Count, Num(e, "replay_entries"));
                Assert.Equal(Num(e, "replay_entries"), Num(e, "replay_done"));
                Assert.True(Num(e, "replay_bytes") > 0);
            }
            Assert.Equal(0, Num(before[0], "replay_changed"));
            Assert.Equal(0, Num(before[0], "replay_vanished"));

            AssertImported(second, second.Python([1, 2], ranks: 2));
            Dictionary<int, JsonElement> after = second.Stats();
            foreach (int k in new[] { 1, 2 })
            {
                // Everything the import asked was already on the node: nothing climbed the tree.
                Assert.Equal(Num(before[k], "forwarded_up"), Num(after[k], "forwarded_up"));
                Assert.True(Num(after[k], "requests") > Num(before[k], "requests"));
            }
            // ...and the file system was asked nothing more.
            Assert.Equal(Num(before[0], "pfs_ops"), Num(after[0], "pfs_ops"));

            // copper stats shows the replay per node.
            ProcResult table = Harness.Run(CopperJob.Cli, ["stats", "-v", second.Prefix], second.Env);
            Assert.Contains($"replay node 2: done, {m.Entries.Count} of {m.Entries.Count} entries", table.Stdout);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }

        static void AssertImported(CopperJob job, List<(int Node, int Rank, ProcResult Result)> runs)
        {
            string expected = Direct(CopperJob.NumpyCode).Replace(CopperJob.Packages, job.Prefix + CopperJob.Packages, StringComparison.Ordinal);
            foreach ((int node, int rank, ProcResult r) in runs)
            {
                Assert.True(r.ExitCode == 0, $"node {node} rank {rank}: {r}");
                Assert.Equal(expected, r.Stdout.Trim());
            }
        }
    }

    private static Manifest ReadAnyPrefix(string file, out string why)
    {
        Manifest? m = Manifest.TryDecode(File.ReadAllBytes(file), out why);
        Assert.True(m != null, why);
        return m;
    }

    [Fact]
    public void WithTwoTreesASaveOnDemandHoldsWhatEachTreesRootRead()
    {
        // -n 4 -T 2: tree 0's root is rank 0, tree 1's rank 2; each reads the paths of its own
        // tree. The save goes to node 0's agent, which asks tree 1's root for its record.
        string dir = Harness.TempDir("replay-trees");
        string saved = Path.Combine(dir, "saved.cpmf");
        var topo = new TreeTopology(4, 2, 0);
        Assert.Equal(2, topo.Root(1));
        string data = Path.Combine(dir, "data");
        Directory.CreateDirectory(data);
        string[] names = Enumerable.Range(0, 64).Select(i => Path.Combine(data, $"f{i:00}")).ToArray();
        string one = names.First(p => topo.TreeOf(p) == 1);
        string zero = names.First(p => topo.TreeOf(p) == 0);
        File.WriteAllText(one, "read through tree 1\n");
        File.WriteAllText(zero, "read through tree 0\n");
        try
        {
            using var job = new CopperJob(4, "trees", "-T 2");
            job.LaunchOrFail();
            ProcResult cat = Harness.Bash($"{job.Through(3)} cat {job.Prefix}{one} {job.Prefix}{zero}", job.Env);
            Assert.True(cat.ExitCode == 0, cat.ToString());
            Assert.Equal("read through tree 1\nread through tree 0\n", cat.Stdout);
            // Each root read its own tree's file, and only its own.
            Assert.Contains(("open", one), job.Trace(2));
            Assert.DoesNotContain(("open", one), job.Trace(0));
            Assert.Contains(("open", zero), job.Trace(0));

            ProcResult save = Harness.Run(CopperJob.Cli, ["manifest", "save", "-v", job.Prefix, saved], job.Env);
            Assert.True(save.ExitCode == 0, save.ToString());
            Assert.Contains("recorded by the roots of 2 trees: 2 of 2 agents", save.Stdout);
            Manifest m = Manifest.TryRead(saved, job.Prefix, out string why) ?? throw new InvalidOperationException(why);
            ManifestEntry e1 = m.Entries.Single(e => e.Path == one);
            Assert.True((e1.Asked & Asked.Open) != 0 && e1.Error == 0 && e1.Size == 20, e1.ToString());
            Assert.Contains(m.Entries, e => e.Path == zero && (e.Asked & Asked.Open) != 0);
            // One manifest, each path once.
            Assert.Equal(m.Entries.Count, m.Entries.Select(e => e.Path).Distinct().Count());

            // Tree 1's root frozen: the save does not wait for it past its bound, names it, and
            // writes what the others recorded.
            string later = names.Skip(1).First(p => topo.TreeOf(p) == 0);
            File.WriteAllText(later, "read while tree 1's root is frozen\n");
            int root1 = job.AgentPid(2);
            Assert.Equal(0, Harness.Run("kill", ["-STOP", root1.ToString()]).ExitCode);
            try
            {
                Assert.Equal(0, Harness.Bash($"{job.Through(0)} cat {job.Prefix}{later}", job.Env).ExitCode);
                string partial = Path.Combine(dir, "partial.cpmf");
                ProcResult frozen = Harness.Run(CopperJob.Cli, ["manifest", "save", "-v", job.Prefix, partial], job.Env, timeoutMs: 60_000);
                Assert.True(frozen.ExitCode == 0, frozen.ToString());
                Assert.Contains("left out: the record of rank 2's (did not answer within 10 s)", frozen.Stdout);
                Manifest p = Manifest.TryRead(partial, job.Prefix, out why) ?? throw new InvalidOperationException(why);
                Assert.Contains(p.Entries, e => e.Path == later && (e.Asked & Asked.Open) != 0);
                Assert.DoesNotContain(p.Entries, e => e.Path == one);
            }
            finally
            {
                Harness.Run("kill", ["-CONT", root1.ToString()]);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void AFileChangedDeletedAndAddedBetweenTheJobsIsSeenAsItIsNow()
    {
        string dir = Harness.TempDir("replay-change");
        string data = Path.Combine(dir, "data");
        string manifest = Path.Combine(dir, "m.cpmf");
        Directory.CreateDirectory(data);
        File.WriteAllText(Path.Combine(data, "a"), "first version of a\n");
        File.WriteAllText(Path.Combine(data, "b"), "b, soon gone\n");
        File.WriteAllText(Path.Combine(data, "same"), "unchanged\n");
        string Code(string root) => $$"""
            import os
            d = "{{root}}{{data}}"
            print(sorted(os.listdir(d)))
            for n in ("a", "b", "c", "same"):
                try:
                    print(n, os.stat(d + "/" + n).st_size, open(d + "/" + n).read().strip())
                except OSError as e:
                    print(n, type(e).__name__, e.errno)
            """;
        try
        {
            using (var first = new CopperJob(3, "change1", $"-m {manifest}"))
            {
                first.LaunchOrFail();
                ProcResult r = first.Python([2], ranks: 1, Code(first.Prefix))[0].Result;
                Assert.True(r.ExitCode == 0, r.ToString());
                Assert.Contains("a 19 first version of a", r.Stdout);
                Assert.Equal(0, first.Stop().ExitCode);
            }
            Manifest m = ReadAnyPrefix(manifest, out _);
            Assert.Contains(m.Entries, e => e.Path == data + "/b" && (e.Asked & Asked.Open) != 0);
            // c was absent from the listing: that answered, the file system was not asked.
            Assert.Contains(m.Entries, e => e.Path == data && (e.Asked & Asked.List) != 0);
            Assert.DoesNotContain(m.Entries, e => e.Path == data + "/c");

            File.WriteAllText(Path.Combine(data, "a"), "the second, longer version of a\n");
            File.Delete(Path.Combine(data, "b"));
            File.WriteAllText(Path.Combine(data, "c"), "c is new\n");

            using var second = new CopperJob(3, "change2", $"-m {manifest} --wait-replay");
            File.WriteAllBytes(manifest, (m with { Prefix = second.Prefix }).Encode());
            ProcResult launch = second.Launch();
            Assert.True(launch.ExitCode == 0, launch + "\n" + second.JobOutput());
            Dictionary<int, JsonElement> stats = WaitReplayDone(second, 0, 1, 2);
            Assert.True(Num(stats[0], "replay_changed") >= 1, stats[0].ToString());
            Assert.True(Num(stats[0], "replay_vanished") >= 1, stats[0].ToString());

            string expected = Direct(Code("")).Replace(data, second.Prefix + data, StringComparison.Ordinal);
            Assert.Contains("a 32 the second, longer version of a", expected);
            Assert.Contains("b FileNotFoundError 2", expected);
            Assert.Contains("c 9 c is new", expected);
            foreach ((int node, _, ProcResult r) in second.Python([1, 2], ranks: 1, Code(second.Prefix)))
            {
                Assert.True(r.ExitCode == 0, $"node {node}: {r}");
                Assert.Equal(expected, r.Stdout.Trim());
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("corrupt", "corrupt (checksum mismatch)")]
    [InlineData("other-prefix", "recorded for prefix /tmp/elsewhere/copper")]
    [InlineData("empty", "the file is empty")]
    [InlineData("truncated", "truncated")]
    public void AManifestThatCannotBeUsedIsNamedAndTheLaunchWorks(string kind, string said)
    {
        string dir = Harness.TempDir("replay-bad");
        string manifest = Path.Combine(dir, "m.cpmf");
        string file = Path.Combine(dir, "f.txt");
        File.WriteAllText(file, "served all the same\n");
        try
        {
            using var job = new CopperJob(2, "badmanifest", $"-m {manifest} --wait-replay");
            var good = new Manifest(job.Prefix, [ManifestEntry.Of(file, Asked.Stat | Asked.Open, 0, default)]);
            byte[] bytes = good.Encode();
            switch (kind)
            {
                case "corrupt":
                    bytes[^2] ^= 0x40;
                    break;
                case "other-prefix":
                    bytes = (good with { Prefix = "/tmp/elsewhere/copper" }).Encode();
                    break;
                case "empty":
                    bytes = [];
                    break;
                case "truncated":
                    bytes = bytes[..^5];
                    break;
            }
            File.WriteAllBytes(manifest, bytes);
            ProcResult launch = job.Launch();
            Assert.True(launch.ExitCode == 0, launch + "\n" + job.JobOutput());
            string output = job.JobOutput();
            Assert.Contains($"copper-agent: manifest {manifest} not replayed: {said}", output);
            Assert.Contains("launching without replay", output);
            ProcResult cat = Harness.Bash($"{job.Through(1)} cat {job.Prefix}{file}", job.Env);
            Assert.True(cat.ExitCode == 0, cat.ToString());
            Assert.Equal("served all the same\n", cat.Stdout);
            Assert.Equal("skipped", job.Stats()[0].GetProperty("replay_state").GetString());
            // At stop, this job's record replaces what could not be used.
            Assert.Equal(0, job.Stop().ExitCode);
            Manifest now = Manifest.TryRead(manifest, job.Prefix, out string why) ?? throw new InvalidOperationException(why);
            Assert.Contains(now.Entries, e => e.Path == file && (e.Asked & Asked.Open) != 0);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ANodeThatDiesMidReplayLeavesTheOthersServing()
    {
        string dir = Harness.TempDir("replay-dies");
        string data = Path.Combine(dir, "data");
        string manifest = Path.Combine(dir, "m.cpmf");
        Directory.CreateDirectory(data);
        var rng = new Random(12);
        for (int i = 0; i < 120; i++)
        {
            byte[] b = new byte[200_000];
            rng.NextBytes(b);
            File.WriteAllBytes(Path.Combine(data, $"f{i:000}"), b);
        }
        const string Sum = "import hashlib, os, sys; d = sys.argv[1]; print(hashlib.sha256(b''.join(open(d + '/' + n, 'rb').read() for n in sorted(os.listdir(d)))).hexdigest())";
        string SumThrough(CopperJob job, int node) =>
            $"{job.Through(node)} {Harness.Python} -c \"{Sum}\" {job.Prefix}{data}";
        try
        {
            int entries;
            using (var first = new CopperJob(2, "recorddies", $"-m {manifest}"))
            {
                first.LaunchOrFail();
                ProcResult r = Harness.Bash(SumThrough(first, 1), first.Env, 120_000);
                Assert.True(r.ExitCode == 0, r.ToString());
                Assert.Equal(0, first.Stop().ExitCode);
                Manifest m = ReadAnyPrefix(manifest, out _);
                entries = m.Entries.Count;
            }
            // Node 1 is interior (0 -> {1, 2}, 1 -> {3}); patience 2 s.
            using var job = new CopperJob(4, "replaydies", $"-m {manifest} -P 2");
            File.WriteAllBytes(manifest, (ReadAnyPrefix(manifest, out _) with { Prefix = job.Prefix }).Encode());
            job.LaunchOrFail();
            int interior = job.AgentPid(1);
            // Frozen as soon as the tree is up (the replay of 24 MB to four nodes is under way or
            // about to be), then killed: whatever it held of the stream is lost.
            ProcResult kill = Harness.Bash($"kill -STOP {interior}; sleep 1; kill -KILL {interior}");
            Assert.True(kill.ExitCode == 0, kill.ToString());
            Dictionary<int, JsonElement> stats = WaitReplayDone(job, 0, 2);
            Assert.Equal(entries, Num(stats[2], "replay_done"));
            Assert.DoesNotContain("replay done on all 4 nodes", job.JobOutput());

            string expected = Harness.Run(Harness.Python, ["-c", Sum, data]).Stdout.Trim();
            Assert.Equal(64, expected.Length);
            foreach (int node in new[] { 0, 2, 3 })
            {
                ProcResult r = Harness.Bash(SumThrough(job, node), job.Env, 120_000);
                Assert.True(r.ExitCode == 0, $"node {node}: {r}");
                Assert.Equal(expected, r.Stdout.Trim());
            }
            // Node 2 was served by the tree from what the replay brought: nothing climbed.
            Assert.Equal(Num(stats[2], "forwarded_up"), Num(job.Stats()[2], "forwarded_up"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void AManifestOfTooManyEntriesIsReplayedInPartAndSaysSo()
    {
        // Millions of entries are bounded the same way as these 40 (--replay-max-entries).
        string dir = Harness.TempDir("replay-many");
        string manifest = Path.Combine(dir, "m.cpmf");
        try
        {
            var entries = new List<ManifestEntry>();
            for (int i = 0; i < 40; i++)
            {
                string f = Path.Combine(dir, $"f{i:00}");
                File.WriteAllText(f, $"file {i}\n");
                entries.Add(ManifestEntry.Of(f, Asked.Stat | Asked.Open, 0, default));
            }
            using var job = new CopperJob(2, "replaymany", $"-m {manifest} --wait-replay");
            job.Env["COPPER_AGENT_ARGS"] += " --replay-max-entries 10";
            File.WriteAllBytes(manifest, new Manifest(job.Prefix, entries).Encode());
            ProcResult launch = job.Launch();
            Assert.True(launch.ExitCode == 0, launch + "\n" + job.JobOutput());
            Assert.Contains($"manifest {manifest} has 40 entries: replaying the first 10", job.JobOutput());
            foreach (JsonElement e in job.Stats().Values)
            {
                Assert.Equal(10, Num(e, "replay_entries"));
                Assert.Equal(10, Num(e, "replay_done"));
            }
            ProcResult cat = Harness.Bash($"{job.Through(1)} cat {job.Prefix}{dir}/f39", job.Env);
            Assert.Equal("file 39\n", cat.Stdout);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ALoneAgentRecordsAndReplaysToo()
    {
        // No MPI: one agent reads the file system itself; the same -m FILE.
        string root = Harness.TempDir("replay-alone");
        string prefix = Path.Combine(root, "copper");
        string launch = Path.Combine(Harness.Bin, "launch_copper.sh"), stop = Path.Combine(Harness.Bin, "stop_copper.sh");
        var env = new Dictionary<string, string?> { ["COPPER_RUNTIME_DIR"] = Path.Combine(root, "run") };
        File.WriteAllText(Path.Combine(root, "f.txt"), "alone\n");
        string run = $"eval \"$({launch} -v {prefix} -d {root}/logs -s 20 -b none --no-fuse -m {root}/m.cpmf {{0}})\"\n"
            + $"LD_PRELOAD=$COPPER_PRELOAD LD_AUDIT=$COPPER_AUDIT cat {prefix}{root}/f.txt\n";
        try
        {
            ProcResult first = Harness.Bash("set -e\n" + string.Format(run, "") + $"{stop} -v {prefix}\n", env);
            Assert.True(first.ExitCode == 0, first.ToString());
            Manifest m = Manifest.TryRead(Path.Combine(root, "m.cpmf"), prefix, out string why) ?? throw new InvalidOperationException(why);
            Assert.Contains(m.Entries, e => e.Path == root + "/f.txt" && (e.Asked & Asked.Open) != 0);

            File.WriteAllText(Path.Combine(root, "f.txt"), "alone, and changed\n");
            ProcResult second = Harness.Bash("set -e\n" + string.Format(run, "--wait-replay")
                + $"{Path.Combine(Harness.Bin, "copper")} stats -v {prefix}\n", env);
            Assert.True(second.ExitCode == 0, second.ToString());
            Assert.Contains("replay done: ", second.Stderr);
            Assert.Contains("alone, and changed", second.Stdout);
            Assert.Matches(@"replay node 0: done, (\d+) of \1 entries, [1-9]\d* files, .* [1-9]\d* changed", second.Stdout);
        }
        finally
        {
            Harness.Run(stop, ["-v", prefix], env);
            Directory.Delete(root, recursive: true);
        }
    }
}
