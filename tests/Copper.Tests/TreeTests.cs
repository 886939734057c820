// The MPI tree on simulated nodes (real mpiexec, real agents, real python3 + numpy):
// only roots read the file system, each path once per job, however many nodes import.
using System.Security.Cryptography;
using System.Text.Json;
using Xunit;

namespace Copper.Tests;

public class TreeTests
{
    private static string Direct(string code = CopperJob.NumpyCode)
    {
        ProcResult r = Harness.Run(Harness.Python, ["-c", code]);
        Assert.True(r.ExitCode == 0, r.ToString());
        return r.Stdout.Trim();
    }

    private static long Num(JsonElement e, string name) => e.GetProperty(name).GetInt64();

    private static void AssertAllImported(CopperJob job, List<(int Node, int Rank, ProcResult Result)> runs)
    {
        string expected = Direct().Replace(CopperJob.Packages, job.Prefix + CopperJob.Packages, StringComparison.Ordinal);
        foreach ((int node, int rank, ProcResult r) in runs)
        {
            Assert.True(r.ExitCode == 0, $"node {node} rank {rank}: {r}");
            Assert.Equal(expected, r.Stdout.Trim());
        }
    }

    /// <summary>Every (op, path) the job read from the file system, across all agents; none twice.</summary>
    private static List<(string, string)> AssertEachPathReadOnce(CopperJob job)
    {
        var all = new List<(string, string)>();
        for (int k = 0; k < job.Nodes; k++)
        {
            all.AddRange(job.Trace(k).Where(t => t.Op != "access"));
        }
        var twice = all.GroupBy(t => t).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        Assert.True(twice.Count == 0, "read more than once: " + string.Join(", ", twice.Take(10)));
        return all;
    }

    private static long TotalPfsOps(Dictionary<int, JsonElement> stats) => stats.Values.Sum(e => Num(e, "pfs_ops"));

    [Fact]
    public void PfsOperationsDoNotGrowWithNodes()
    {
        var totals = new Dictionary<int, long>();
        foreach (int nodes in new[] { 1, 4, 8 })
        {
            using var job = new CopperJob(nodes, "tree" + nodes);
            job.LaunchOrFail();
            // launch returned because the root saw every node join
            Assert.Contains($"copper-agent: tree ready: {nodes} nodes", job.JobOutput());
            var runs = job.Python(Enumerable.Range(0, nodes), ranks: 2);
            AssertAllImported(job, runs);
            Dictionary<int, JsonElement> stats = job.Stats();
            Assert.Equal(nodes, stats.Count);
            foreach ((int k, JsonElement e) in stats)
            {
                if (k != 0)
                {
                    Assert.True(Num(e, "pfs_ops") == 0, $"node {k} is not a root but made {Num(e, "pfs_ops")} file-system operations");
                    Assert.True(Num(e, "bytes_from_parent") > 0, $"node {k} got nothing from its parent");
                    Assert.Empty(job.Trace(k));
                }
            }
            Assert.True(Num(stats[0], "pfs_ops") > 0);
            AssertEachPathReadOnce(job);
            totals[nodes] = TotalPfsOps(stats);
        }
        // Each distinct path is read once per job, so the total stays that of one node (small
        // differences come from the order in which a listing and its missing names arrive).
        foreach (int nodes in new[] { 4, 8 })
        {
            Assert.True(totals[nodes] <= totals[1] * 11 / 10 + 5,
                $"{nodes} nodes made {totals[nodes]} file-system operations, one node {totals[1]}");
        }
    }

    [Fact]
    public void NonRootAgentMakesNoFileSystemCallsUnderStrace()
    {
        string root = Harness.TempDir("stracewrap");
        string trace = Path.Combine(root, "agent3.strace");
        string wrapper = Path.Combine(root, "agent.sh");
        File.WriteAllText(wrapper, $"""
            #!/bin/bash
            if [[ {"${PMI_RANK:-}"} == 3 ]]; then
                exec strace -f -qq -o {trace} -e trace=%file,%desc {Path.Combine(Harness.Bin, "copper-agent")} "$@"
            fi
            exec {Path.Combine(Harness.Bin, "copper-agent")} "$@"
            """);
        File.SetUnixFileMode(wrapper, (UnixFileMode)0x1ED);
        try
        {
            using var job = new CopperJob(4, "strace", agent: wrapper);
            job.LaunchOrFail();
            AssertAllImported(job, job.Python([3, 2], ranks: 2));
            job.Stop();
            string text = File.ReadAllText(trace);
            // The agent did write numpy into its node-local mirror (so the trace is real) ...
            Assert.Contains("/mirror" + CopperJob.Packages + "/numpy/", text);
            // ... and never named the real numpy directory.
            Assert.DoesNotContain("\"" + CopperJob.Packages + "/numpy", text);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void TwoTreesSplitThePathsBetweenTwoRoots()
    {
        using var job = new CopperJob(4, "trees2", "-T 2");
        job.LaunchOrFail();
        AssertAllImported(job, job.Python([1, 3], ranks: 2));
        Dictionary<int, JsonElement> stats = job.Stats();
        var roots = stats.Where(kv => kv.Value.GetProperty("root_of").GetArrayLength() > 0).Select(kv => kv.Key).OrderBy(k => k).ToList();
        Assert.Equal(2, roots.Count);
        foreach ((int k, JsonElement e) in stats)
        {
            if (roots.Contains(k))
            {
                Assert.True(Num(e, "pfs_ops") > 0, $"root node {k} read nothing");
            }
            else
            {
                Assert.Equal(0, Num(e, "pfs_ops"));
            }
        }
        var first = job.Trace(roots[0]).Select(t => t.Path).ToHashSet();
        var second = job.Trace(roots[1]).Select(t => t.Path).ToHashSet();
        first.IntersectWith(second);
        Assert.True(first.Count == 0, "read by both roots: " + string.Join(", ", first.Take(10)));
        AssertEachPathReadOnce(job);

        // The human-readable views: a row per node and a total; each node's place in both trees.
        ProcResult table = Harness.Run(CopperJob.Cli, ["stats", "-v", job.Prefix], job.Env);
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains("total", table.Stdout);
        Assert.Equal(4 + 3, table.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        ProcResult status = Harness.Run(CopperJob.Cli, ["status", "-v", job.Prefix], job.Env);
        Assert.True(status.ExitCode == 0, status.ToString());
        Assert.Contains($"node {roots[1]}: rank {roots[1]} of 4, parents [", status.Stdout);
        Assert.Contains("root of [1]", status.Stdout);
    }

    [Fact]
    public void LargeFileReachesEveryNodeInChunks()
    {
        using var job = new CopperJob(4, "bigfile", "-M 256M");
        string data = Path.Combine(job.Root, "data");
        Directory.CreateDirectory(data);
        string file = Path.Combine(data, "big.bin");
        const long Size = 200L * 1000 * 1000 + 12345;
        using (var fs = new FileStream(file, FileMode.Create))
        {
            // Half random (incompressible), half text (LZ4 shrinks it).
            var rng = new Random(7);
            byte[] block = new byte[1 << 20];
            long written = 0;
            for (int i = 0; written < Size; i++)
            {
                if (i % 2 == 0)
                {
                    rng.NextBytes(block);
                }
                else
                {
                    for (int j = 0; j < block.Length; j++)
                    {
                        block[j] = (byte)('a' + (j * 7 + i) % 26);
                    }
                }
                int n = (int)Math.Min(block.Length, Size - written);
                fs.Write(block, 0, n);
                written += n;
            }
        }
        string expected;
        using (var fs = File.OpenRead(file))
        {
            expected = Convert.ToHexStringLower(MD5.HashData(fs));
        }
        job.LaunchOrFail();
        string script = string.Join("\n", Enumerable.Range(0, 4).Select(k =>
            $"( {job.Through(k)} md5sum {job.Prefix}{file} > {job.Root}/md5.{k} ) &")) + "\nwait\n";
        ProcResult r = Harness.Bash(script, timeoutMs: 300_000);
        Assert.True(r.ExitCode == 0, r.ToString());
        for (int k = 0; k < 4; k++)
        {
            Assert.StartsWith(expected, File.ReadAllText(Path.Combine(job.Root, $"md5.{k}")));
        }
        Dictionary<int, JsonElement> stats = job.Stats();
        Assert.Equal(Size, Num(stats[0], "pfs_bytes"));
        Assert.Equal(1, stats[0].GetProperty("pfs_ops_by_kind").GetProperty("open").GetInt64());
        for (int k = 1; k < 4; k++)
        {
            long got = Num(stats[k], "bytes_from_parent");
            // Came from the parent, in chunks, smaller than the file thanks to LZ4 on the text half.
            Assert.True(got > Size / 3 && got < Size, $"node {k}: {got} bytes from its parent");
            Assert.Equal(0, Num(stats[k], "pfs_ops"));
        }
    }

    [Fact]
    public void ReadinessTimeoutNamesTheNodeThatDidNotStart()
    {
        string root = Harness.TempDir("slowrank");
        string wrapper = Path.Combine(root, "agent.sh");
        File.WriteAllText(wrapper, $"""
            #!/bin/bash
            [[ {"${PMI_RANK:-}"} != 2 ]] || sleep 60
            exec {Path.Combine(Harness.Bin, "copper-agent")} "$@"
            """);
        File.SetUnixFileMode(wrapper, (UnixFileMode)0x1ED);
        try
        {
            using var job = new CopperJob(4, "notready", agent: wrapper);
            ProcResult r = job.Launch(timeoutSeconds: 3);
            Assert.Equal(1, r.ExitCode);
            Assert.Equal("", r.Stdout);
            Assert.Contains("did not start: node 2", r.Stderr);
            Assert.DoesNotContain("did not start: node 0", r.Stderr);
            Assert.Contains("did not join: node 0, node 1, node 3", r.Stderr);
            ProcResult ps = Harness.Run("pgrep", ["-f", "prefix " + job.Prefix]);
            Assert.True(ps.ExitCode != 0, "left running: " + ps.Stdout);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    // Tree for 4 nodes, fan-out 2: 0 -> {1, 2}, 1 -> {3}.

    [Fact]
    public void KilledLeafAgentMidImportItsRanksFinishAndOtherNodesAreUnaffected()
    {
        using var job = new CopperJob(4, "leafkill");
        job.LaunchOrFail();
        int leaf = job.AgentPid(3);
        string code = Path.Combine(job.Root, "code.py");
        File.WriteAllText(code, CopperJob.NumpyCode);
        // Two ranks of node 3 import while its agent is killed; nodes 1 and 2 import after.
        string script = $"""
            set -u
            for r in 0 1; do ( {job.Through(3)} PYTHONPATH={job.Prefix}{CopperJob.Packages} {Harness.Python} {code} >{job.Root}/out.3.$r 2>&1; echo $? >{job.Root}/rc.3.$r ) & done
            sleep 0.15
            kill -KILL {leaf}
            wait
            """;
        ProcResult r = Harness.Bash(script, timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.ToString());
        string expected = Direct().Replace(CopperJob.Packages, job.Prefix + CopperJob.Packages, StringComparison.Ordinal);
        for (int rank = 0; rank < 2; rank++)
        {
            Assert.Equal("0", File.ReadAllText(Path.Combine(job.Root, $"rc.3.{rank}")).Trim());
            Assert.Equal(expected, File.ReadAllText(Path.Combine(job.Root, $"out.3.{rank}")).Trim());
        }
        Thread.Sleep(500);
        AssertAllImported(job, job.Python([3, 2, 1], ranks: 2));
        Dictionary<int, JsonElement> stats = job.Stats();
        // Node 3 answers no more: it is listed only from the root's table, as last reported.
        Assert.True(!stats.ContainsKey(3) || stats[3].TryGetProperty("age_s", out _), stats.GetValueOrDefault(3).ToString());
        Assert.Equal([0, 1, 2], stats.Keys.Where(k => !stats[k].TryGetProperty("age_s", out _)).Order().ToArray());
        Assert.True(Num(stats[2], "requests") > 0, "node 2 was not served by its agent");
        Assert.Equal(0, Num(stats[1], "pfs_ops"));
        Assert.Equal(0, Num(stats[2], "pfs_ops"));
        Assert.Equal(0, Num(stats[2], "degraded"));
        AssertEachPathReadOnce(job);
    }

    [Fact]
    public void SixteenConcurrentOpensOnALeafMakeOneRequestUp()
    {
        using var job = new CopperJob(4, "coalesce");
        string file = Path.Combine(job.Root, "data", "input.bin");
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        byte[] bytes = new byte[3 << 20];
        new Random(3).NextBytes(bytes);
        File.WriteAllBytes(file, bytes);
        string expected = Convert.ToHexStringLower(MD5.HashData(bytes));
        job.LaunchOrFail();
        string script = string.Join("\n", Enumerable.Range(0, 16).Select(i =>
            $"( {job.Through(3)} md5sum {job.Prefix}{file} > {job.Root}/md5.{i} ) &")) + "\nwait\n";
        ProcResult r = Harness.Bash(script, timeoutMs: 120_000);
        Assert.True(r.ExitCode == 0, r.ToString());
        for (int i = 0; i < 16; i++)
        {
            Assert.StartsWith(expected, File.ReadAllText(Path.Combine(job.Root, $"md5.{i}")));
        }
        Dictionary<int, JsonElement> stats = job.Stats();
        Assert.Equal(1, Num(stats[3], "forwarded_up"));
        Assert.Equal(1, Num(stats[1], "forwarded_up"));
        Assert.True(Num(stats[3], "requests") >= 16);
        Assert.Equal(1, stats[0].GetProperty("pfs_ops_by_kind").GetProperty("open").GetInt64());
    }

    [Fact]
    public void SilentParentIsAnsweredFromTheFileSystemWithinPatience()
    {
        using var job = new CopperJob(4, "silent", "-P 1");
        job.LaunchOrFail();
        int parent = job.AgentPid(1);
        Harness.Run("kill", ["-STOP", parent.ToString()]);
        try
        {
            AssertAllImported(job, job.Python([3], ranks: 2));
            JsonElement node3 = job.Stats()[3];
            Assert.True(Num(node3, "parent_timeouts") >= 1);
            Assert.True(Num(node3, "degraded") > 0);
            Assert.True(Num(node3, "pfs_ops") > 0, "answers must come from the real file system");
            Assert.True(node3.GetProperty("parent_down")[0].GetBoolean());
        }
        finally
        {
            Harness.Run("kill", ["-CONT", parent.ToString()]);
        }
    }

    [Fact]
    public void KilledInteriorAgentItsSubtreeFinishesWithinSecondsWithTheDefaultPatience()
    {
        // No -P: the default patience. Node 1 is interior (0 -> {1, 2}, 1 -> {3}); its subtree's
        // ranks (nodes 1 and 3) import while its agent dies. The agent is frozen first so the
        // kill lands while node 3's requests wait on it (mid-import for sure), then killed.
        using var job = new CopperJob(4, "interiordefault");
        job.LaunchOrFail();
        int interior = job.AgentPid(1);
        string code = Path.Combine(job.Root, "code.py");
        File.WriteAllText(code, CopperJob.NumpyCode);
        string ranks = string.Join("\n", new[] { 1, 3 }.SelectMany(n => new[] { 0, 1 }.Select(r =>
            $"( {job.Through(n)} PYTHONPATH={job.Prefix}{CopperJob.Packages} {Harness.Python} {code} >{job.Root}/out.{n}.{r} 2>&1; echo $? >{job.Root}/rc.{n}.{r} ) &")));
        string script = $"""
            set -u
            kill -STOP {interior}
            {ranks}
            sleep 1
            ls {job.Root} | grep -c '^rc\.' >{job.Root}/finished-before-kill
            kill -KILL {interior}
            killed=$EPOCHREALTIME
            wait
            echo "$killed $EPOCHREALTIME" >{job.Root}/times
            """;
        ProcResult r = Harness.Bash(script, timeoutMs: 240_000);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("0", File.ReadAllText(Path.Combine(job.Root, "finished-before-kill")).Trim());
        string expected = Direct().Replace(CopperJob.Packages, job.Prefix + CopperJob.Packages, StringComparison.Ordinal);
        foreach (int node in new[] { 1, 3 })
        {
            for (int rank = 0; rank < 2; rank++)
            {
                Assert.Equal("0", File.ReadAllText(Path.Combine(job.Root, $"rc.{node}.{rank}")).Trim());
                Assert.Equal(expected, File.ReadAllText(Path.Combine(job.Root, $"out.{node}.{rank}")).Trim());
            }
        }
        double[] t = File.ReadAllText(Path.Combine(job.Root, "times")).Split(' ').Select(x => double.Parse(x, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.True(t[1] - t[0] < 10, $"the subtree's ranks finished {t[1] - t[0]:0.0} s after the kill");
        JsonElement node3 = job.Stats()[3];
        Assert.True(Num(node3, "parent_timeouts") >= 1);
        Assert.True(node3.GetProperty("parent_down")[0].GetBoolean());
        // The rest of the tree is unaffected: node 2 is still served by the tree.
        AssertAllImported(job, job.Python([2], ranks: 1));
        JsonElement node2 = job.Stats()[2];
        Assert.Equal(0, Num(node2, "pfs_ops"));
        Assert.Equal(0, Num(node2, "degraded"));
    }

    [Fact]
    public void ParentWaitingOnAFrozenRootKeepsItsChildPatient()
    {
        // Default -P. The root is frozen longer than the patience: node 1 gives up on it and
        // reads the file system, while node 3, whose requests wait on node 1 all that time,
        // hears node 1's keep-alives and never takes it for dead.
        using var job = new CopperJob(4, "busyparent");
        job.LaunchOrFail();
        int root = job.AgentPid(0);
        Harness.Run("kill", ["-STOP", root.ToString()]);
        List<(int Node, int Rank, ProcResult Result)> runs;
        try
        {
            runs = job.Python([3], ranks: 1);
        }
        finally
        {
            Harness.Run("kill", ["-CONT", root.ToString()]);
        }
        AssertAllImported(job, runs);
        Dictionary<int, JsonElement> stats = job.Stats();
        Assert.True(Num(stats[1], "parent_timeouts") >= 1, "node 1 did not give up on the frozen root");
        Assert.True(Num(stats[1], "pfs_ops") > 0);
        Assert.Equal(0, Num(stats[3], "parent_timeouts"));
        Assert.Equal(0, Num(stats[3], "degraded"));
        Assert.Equal(0, Num(stats[3], "pfs_ops"));
        Assert.True(Num(stats[3], "bytes_from_parent") > 0);
    }

    [Fact]
    public void KilledInteriorAgentTheApplicationsStillFinish()
    {
        using var job = new CopperJob(4, "interiorkill", "-P 2");
        job.LaunchOrFail();
        Harness.Run("kill", ["-KILL", job.AgentPid(1).ToString()]);
        Thread.Sleep(300);
        AssertAllImported(job, job.Python([3, 2, 0], ranks: 2));
        ProcResult stop = job.Stop();
        Assert.True(stop.ExitCode == 0, stop.ToString());
        ProcResult ps = Harness.Run("pgrep", ["-f", "prefix " + job.Prefix]);
        Assert.True(ps.ExitCode != 0, "left running: " + ps.Stdout);
    }
}
