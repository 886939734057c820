// The agent's memory is bounded on a tree of 200,000 entries: an agent with a bound of 20,000
// metadata entries (--max-meta-entries) and a manifest record of 5,000 paths
// (--replay-max-entries) serves a walk of the tree through the shim (os.walk and lstat of every
// entry) with the same answers as the walk done directly, twice (the second after evictions),
// while its count of entries, the count's high-water mark and its peak resident memory stay
// within what the bound states, well below an unbounded agent's on the same walk; the saved
// manifest holds what fit, and the log says so.
using System.Text.Json;
using Copper.Agent;
using Copper.Interop;
using Xunit;
using Xunit.Abstractions;

namespace Copper.Tests;

public class MetadataBoundTests(ITestOutputHelper output)
{
    private const int Dirs = 400;
    private const int FilesPerDir = 500;
    private const int Bound = 20_000;
    private const int RecordMax = 5_000;

    /// <summary>
    /// The agent's peak resident memory allowed: 65 to 85 MiB measured at this bound (start-up,
    /// the garbage collector's working room, 20,000 entries, the record of 5,000 paths); an
    /// agent without the bound peaks near 150 MiB on the same walk.
    /// </summary>
    private const long MaxHwmKiB = 120 << 10;

    /// <summary>What an agent without the bound must take beyond the bounded one on the same walk (380,000 entries more).</summary>
    private const long UnboundedExtraKiB = 32 << 10;

    /// <summary>Creates DIRS directories of FILES files each (sizes 0..6) under the given root.</summary>
    private const string Maker = """
        import os, sys
        root, dirs, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        os.makedirs(root)
        for i in range(dirs):
            d = os.path.join(root, "d%03d" % i)
            os.mkdir(d)
            for j in range(files):
                fd = os.open(os.path.join(d, "f%03d.py" % j), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, b"x" * (j % 7))
                os.close(fd)
        """;

    /// <summary>Walks a tree (os.walk, lstat of every entry); prints the count and a digest of (path, size, mode).</summary>
    private const string Walker = """
        import hashlib, os, sys
        root = sys.argv[1]
        h, n = hashlib.sha256(), 0
        for d, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(dirs + files):
                p = os.path.join(d, name)
                st = os.lstat(p)
                h.update(("%s %d %o\n" % (p[len(root):], st.st_size, st.st_mode)).encode())
                n += 1
        print(n, h.hexdigest())
        """;

    private static JsonElement Stats(AgentProcess agent)
    {
        using var s = agent.Connect();
        (_, byte[] payload) = AgentProcess.Request(s, Op.Stats, []);
        return JsonDocument.Parse(payload.AsMemory(8)).RootElement.Clone();
    }

    private static long Num(JsonElement e, string name) => e.GetProperty(name).GetInt64();

    [Fact]
    public void AWalkOf200000EntriesIsRightWithinTheBound()
    {
        // Under /var/tmp: a tree this size does not belong in a memory-backed /tmp.
        string dir = Path.Combine("/var/tmp", $"copper-test-meta-{Guid.NewGuid():N}"[..33]);
        Directory.CreateDirectory(dir);
        AgentProcess? agent = null;
        try
        {
            string tree = Path.Combine(dir, "tree");
            File.WriteAllText(Path.Combine(dir, "make.py"), Maker);
            File.WriteAllText(Path.Combine(dir, "walk.py"), Walker);
            ProcResult made = Harness.Run(Harness.Python, ["-S", Path.Combine(dir, "make.py"), tree, Dirs.ToString(), FilesPerDir.ToString()], timeoutMs: 600_000);
            Assert.Equal(0, made.ExitCode);
            ProcResult direct = Harness.Run(Harness.Python, ["-S", Path.Combine(dir, "walk.py"), tree], timeoutMs: 600_000);
            Assert.Equal(0, direct.ExitCode);
            Assert.StartsWith($"{Dirs * (FilesPerDir + 1)} ", direct.Stdout);

            string manifest = Path.Combine(dir, "job.cpmf");
            agent = new AgentProcess("meta", "--max-meta-entries", Bound.ToString(), "--manifest", manifest, "--replay-max-entries", RecordMax.ToString());
            Dictionary<string, string?> env = agent.ClientEnv(audit: false);
            string[] walk = ["-S", Path.Combine(dir, "walk.py"), agent.Prefix + tree];

            ProcResult first = Harness.Run(Harness.Python, walk, env, timeoutMs: 900_000);
            Assert.Equal(direct.Stdout, first.Stdout);
            JsonElement afterFirst = Stats(agent);
            ProcResult second = Harness.Run(Harness.Python, walk, env, timeoutMs: 900_000);
            Assert.Equal(direct.Stdout, second.Stdout);
            JsonElement s = Stats(agent);
            long hwm = agent.ProcStatus("VmHWM");
            output.WriteLine($"meta_entries {Num(s, "meta_entries")}, meta_high_water {Num(s, "meta_high_water")}, meta_evicted {Num(afterFirst, "meta_evicted")} after the first walk and {Num(s, "meta_evicted")} after the second, VmHWM {hwm} KiB");

            Assert.Equal(Bound, Num(s, "meta_bound"));
            Assert.True(Num(s, "meta_entries") <= Bound, $"{Num(s, "meta_entries")} entries kept");
            // Over the bound only for a moment, by the answer that crossed it: at most a listing (its names).
            Assert.True(Num(s, "meta_high_water") <= Bound + FilesPerDir + 1, $"high-water mark {Num(s, "meta_high_water")}");
            Assert.True(Num(afterFirst, "meta_evicted") > 0);
            // The second walk found little of the first: it was asked again, and evicted again.
            Assert.True(Num(s, "meta_evicted") > Num(afterFirst, "meta_evicted"));
            Assert.True(hwm < MaxHwmKiB, $"agent's VmHWM {hwm} KiB");

            // The record stopped at what a replay uses, said once; the manifest saved at stop holds what fit.
            string log = File.ReadAllText(Path.Combine(agent.Root, "logs", "copper-agent.0.log"));
            Assert.Single(log.Split('\n'), l => l.Contains("the manifest's record is full (5000 paths", StringComparison.Ordinal));
            Assert.Equal(0, agent.Stop());
            Manifest? m = Manifest.TryDecode(File.ReadAllBytes(manifest), out string why);
            Assert.True(m != null, why);
            Assert.Equal(RecordMax, m.Entries.Count);
            agent.Dispose();

            // The same walk without the bound takes clearly more: what the bound saves is the
            // entries' memory, not a difference in the collector's timing.
            agent = new AgentProcess("metafree", "--max-meta-entries", "0", "--replay-max-entries", RecordMax.ToString());
            ProcResult free = Harness.Run(Harness.Python, ["-S", Path.Combine(dir, "walk.py"), agent.Prefix + tree], agent.ClientEnv(audit: false), timeoutMs: 900_000);
            Assert.Equal(direct.Stdout, free.Stdout);
            long freeHwm = agent.ProcStatus("VmHWM");
            long freeEntries = Num(Stats(agent), "meta_entries");
            output.WriteLine($"without the bound: meta_entries {freeEntries}, VmHWM {freeHwm} KiB");
            Assert.True(freeEntries > 2 * Dirs * FilesPerDir, $"{freeEntries} entries without the bound");
            Assert.True(freeHwm > hwm + UnboundedExtraKiB, $"VmHWM {freeHwm} KiB without the bound, {hwm} KiB with it");
        }
        finally
        {
            agent?.Dispose();
            Harness.Run("rm", ["-rf", "--", dir]);
        }
    }

    /// <summary>Lists a tree (os.walk) and prints path, inode, size and mode of every entry (lstat).</summary>
    private const string InodeWalker = """
        import os, sys
        root = sys.argv[1]
        for d, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(dirs + files):
                st = os.lstat(os.path.join(d, name))
                print(os.path.join(d, name)[len(root):], st.st_ino, st.st_size, oct(st.st_mode))
        """;

    private static long FuseInodes(AgentProcess agent) => Num(Stats(agent), "fuse_inodes");

    [Fact]
    public void TheMountsInodeTableLetsGoWhatTheKernelForgets()
    {
        string data = Harness.TempDir("metafuse");
        try
        {
            for (int i = 0; i < 20; i++)
            {
                Directory.CreateDirectory(Path.Combine(data, $"d{i}"));
                for (int j = 0; j < 100; j++)
                {
                    File.WriteAllText(Path.Combine(data, $"d{i}", $"f{j}"), new string('x', j));
                }
            }
            File.WriteAllText(Path.Combine(data, "walk.py"), InodeWalker);
            using var agent = new AgentProcess("metafuse", null, true);
            var noShim = new Dictionary<string, string?> { ["LD_PRELOAD"] = null, ["LD_AUDIT"] = null };
            string[] walk = ["-S", Path.Combine(data, "walk.py"), agent.Prefix + data];
            ProcResult first = Harness.Run(Harness.Python, walk, noShim);
            Assert.True(first.ExitCode == 0, first.ToString());
            Assert.Equal(20 * 101 + 1, first.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
            long held = FuseInodes(agent);
            Assert.True(held > 20 * 101, $"{held} inodes held after the walk");

            // The kernel lets go of the inodes no one uses (as under memory pressure), with FORGETs.
            File.WriteAllText("/proc/sys/vm/drop_caches", "2");
            var sw = System.Diagnostics.Stopwatch.StartNew();
            while (FuseInodes(agent) > 100 && sw.ElapsedMilliseconds < 30_000)
            {
                Thread.Sleep(100);
            }
            long after = FuseInodes(agent);
            output.WriteLine($"fuse_inodes {held} after the walk, {after} after the kernel let go");
            Assert.True(after <= 100, $"{after} inodes still held of {held}");

            // Looked up again: the same numbers, the same answers.
            ProcResult second = Harness.Run(Harness.Python, walk, noShim);
            Assert.Equal(first.Stdout, second.Stdout);
        }
        finally
        {
            Harness.Run("rm", ["-rf", "--", data]);
        }
    }
}
