// The mirror's budget (-C): a dataset three times the budget read through the prefix by two
// ranks gives every rank the right bytes while the mirror (sampled during the run, and its
// high-water counter) stays within the budget; evicted files are materialized again; a file
// larger than the budget is read from the real path; a file some process has open is not
// evicted under it; the FUSE mount and the audit module (numpy's extensions) keep working
// under a budget smaller than what they read.
using System.Security.Cryptography;
using System.Text.Json;
using Xunit;

namespace Copper.Tests;

public class CacheBudgetTests
{
    private const long Budget = 1 << 20;
    private const int FileBytes = 256 << 10;
    private const int Files = 12; // 3 MiB: three times the budget

    /// <summary>Reads every file of a directory (listed through the same path) in order, PASSES times; prints name and sha256.</summary>
    private const string Reader = """
        import hashlib, os, sys
        root, passes = sys.argv[1], int(sys.argv[2])
        names = sorted(os.listdir(root))
        for p in range(passes):
            for n in names:
                with open(os.path.join(root, n), "rb") as f:
                    print(n, hashlib.sha256(f.read()).hexdigest())
        """;

    private static string Dataset(string dir, int files, int bytes)
    {
        string data = Path.Combine(dir, "data");
        Directory.CreateDirectory(data);
        for (int i = 0; i < files; i++)
        {
            File.WriteAllBytes(Path.Combine(data, $"part-{i:D3}.bin"), RandomNumberGenerator.GetBytes(bytes));
        }
        return data;
    }

    /// <summary>What the reader prints when it reads <paramref name="data"/> directly.</summary>
    private static string Expected(string data, int passes)
    {
        var lines = Directory.GetFiles(data).Select(Path.GetFileName).Order(StringComparer.Ordinal)
            .Select(n => n + " " + Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(data, n!))))).ToList();
        return string.Concat(Enumerable.Repeat(string.Concat(lines.Select(l => l + "\n")), passes));
    }

    /// <summary>
    /// The mirror's size as the budget counts it: its regular files, in whole 4 KiB blocks, each
    /// inode once (a walk during a rename may meet a file under both names).
    /// </summary>
    private static long MirrorSize(string mirror)
    {
        ProcResult r = Harness.Run("find", [mirror, "-type", "f", "-printf", "%i %s\\n"]);
        var sizes = new Dictionary<string, long>();
        foreach (string line in r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] f = line.Split(' ');
            sizes[f[0]] = (long.Parse(f[1]) + 4095) / 4096 * 4096;
        }
        return sizes.Values.Sum();
    }

    /// <summary>Samples the mirrors' sizes until stopped; the largest seen, per mirror.</summary>
    private sealed class Sampler : IDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Task<long[]> _task;

        public Sampler(params string[] mirrors)
        {
            _task = Task.Run(async () =>
            {
                var max = new long[mirrors.Length];
                while (!_stop.IsCancellationRequested)
                {
                    for (int i = 0; i < mirrors.Length; i++)
                    {
                        max[i] = Math.Max(max[i], MirrorSize(mirrors[i]));
                    }
                    try
                    {
                        await Task.Delay(5, _stop.Token);
                    }
                    catch (OperationCanceledException)
                    {
                    }
                }
                return max;
            });
        }

        public long[] Stop()
        {
            _stop.Cancel();
            return _task.GetAwaiter().GetResult();
        }

        public void Dispose()
        {
            _stop.Cancel();
            _stop.Dispose();
        }
    }

    private static long Num(JsonElement e, string name) => e.GetProperty(name).GetInt64();

    [Fact]
    public void DatasetThreeTimesTheBudgetReadsRightOnTwoRanksWithinTheBudget()
    {
        string dir = Harness.TempDir("budgetdata");
        string cache = Harness.TempDir("budgetcache");
        try
        {
            string data = Dataset(dir, Files, FileBytes);
            using var job = new CopperJob(2, "budget", $"-C 1M --no-fuse -c {cache}/c");
            job.LaunchOrFail();
            File.WriteAllText(Path.Combine(dir, "reader.py"), Reader);
            string[] mirrors = [cache + "/c.n0/mirror", cache + "/c.n1/mirror"];
            List<(int Node, int Rank, ProcResult Result)> runs;
            long[] seen;
            using (var sampler = new Sampler(mirrors))
            {
                var script = new System.Text.StringBuilder("set -u\n");
                for (int k = 0; k < 2; k++)
                {
                    script.Append($"( {job.Through(k)} {Harness.Python} {dir}/reader.py {job.Prefix}{data} 3 >{dir}/out.{k} 2>{dir}/err.{k}; echo $? >{dir}/rc.{k} ) &\n");
                }
                script.Append("wait\n");
                ProcResult all = Harness.Bash(script.ToString(), timeoutMs: 300_000);
                Assert.True(all.ExitCode == 0, all.ToString());
                seen = sampler.Stop();
                runs = [.. Enumerable.Range(0, 2).Select(k => (k, 0, new ProcResult(int.Parse(File.ReadAllText($"{dir}/rc.{k}").Trim()),
                    File.ReadAllText($"{dir}/out.{k}"), File.ReadAllText($"{dir}/err.{k}"))))];
            }
            string expected = Expected(data, 3);
            foreach ((int node, _, ProcResult r) in runs)
            {
                Assert.True(r.ExitCode == 0, $"node {node}: {r}");
                Assert.Equal(expected, r.Stdout);
            }
            Dictionary<int, JsonElement> stats = job.Stats();
            for (int k = 0; k < 2; k++)
            {
                Assert.True(seen[k] > 0, $"node {k}: the sampler never saw the mirror hold a file");
                Assert.True(seen[k] <= Budget, $"node {k}: the mirror held {seen[k]} bytes, more than the budget {Budget}");
                JsonElement s = stats[k];
                Assert.Equal(Budget, Num(s, "mirror_budget"));
                Assert.True(Num(s, "mirror_high_water") <= Budget, s.ToString());
                Assert.True(Num(s, "mirror_high_water") >= FileBytes, s.ToString());
                Assert.True(Num(s, "evictions") > 0, s.ToString());
                Assert.True(Num(s, "bytes_evicted") >= Num(s, "evictions") * FileBytes, s.ToString());
                Assert.True(MirrorSize(mirrors[k]) <= Budget);
            }
            // Node 0 reads the file system for the job: an evicted file was materialized again
            // (read again), not left to the real path.
            int reopened = job.Trace(0).Count(t => t.Op == "open" && t.Path == data + "/part-000.bin");
            Assert.True(reopened >= 2, $"part-000.bin was materialized {reopened} time(s)");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            Directory.Delete(cache, recursive: true);
        }
    }

    [Fact]
    public void FileLargerThanTheBudgetIsReadFromTheRealPath()
    {
        string dir = Harness.TempDir("budgetbig");
        string cache = Harness.TempDir("budgetbigc");
        try
        {
            string data = Path.Combine(dir, "data");
            Directory.CreateDirectory(data);
            File.WriteAllBytes(Path.Combine(data, "big.bin"), RandomNumberGenerator.GetBytes((int)Budget * 3 / 2));
            File.WriteAllBytes(Path.Combine(data, "small.bin"), RandomNumberGenerator.GetBytes(FileBytes));
            using var job = new CopperJob(1, "budgetbig", $"-C 1M --no-fuse -c {cache}/c");
            job.LaunchOrFail();
            File.WriteAllText(Path.Combine(dir, "reader.py"), Reader);
            ProcResult r = Harness.Bash($"{job.Through(0)} {Harness.Python} {dir}/reader.py {job.Prefix}{data} 2");
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal(Expected(data, 2), r.Stdout);
            Assert.False(File.Exists($"{cache}/c.n0/mirror{data}/big.bin"), "the file larger than the budget is in the mirror");
            Assert.True(File.Exists($"{cache}/c.n0/mirror{data}/small.bin"), "the small file was not materialized");
            JsonElement s = job.Stats()[0];
            Assert.True(Num(s, "mirror_high_water") <= Budget, s.ToString());
            Assert.Equal(0, Num(s, "evictions"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            Directory.Delete(cache, recursive: true);
        }
    }

    [Fact]
    public void FileOpenInAProcessIsNotEvictedAndReadsRight()
    {
        string dir = Harness.TempDir("budgetopen");
        string cache = Harness.TempDir("budgetopenc");
        try
        {
            string data = Dataset(dir, Files, FileBytes);
            string held = Path.Combine(data, "part-000.bin");
            using var job = new CopperJob(1, "budgetopen", $"-C 1M --no-fuse -c {cache}/c");
            job.LaunchOrFail();
            File.WriteAllText(Path.Combine(dir, "reader.py"), Reader);
            // Opens the file, reads a little, says so, waits (bounded) for "go", reads the rest.
            File.WriteAllText(Path.Combine(dir, "holder.py"), $$"""
                import hashlib, os, sys, time
                f = open(sys.argv[1], "rb")
                head = f.read(1000)
                open("{{dir}}/opened", "w").close()
                deadline = time.time() + 120
                while not os.path.exists("{{dir}}/go") and time.time() < deadline:
                    time.sleep(0.05)
                print(hashlib.sha256(head + f.read()).hexdigest())
                """);
            // One script: the holder in the background, the reader meanwhile, then "go"; every
            // wait bounded, the holder killed on the way out.
            string script = $$"""
                set -u
                {{job.Through(0)}} {{Harness.Python}} {{dir}}/holder.py {{job.Prefix}}{{held}} >{{dir}}/held.out 2>{{dir}}/held.err &
                holder=$!
                trap 'kill $holder 2>/dev/null || true' EXIT
                for i in $(seq 600); do [[ -e {{dir}}/opened ]] && break; sleep 0.1; done
                [[ -e {{dir}}/opened ]] || { echo "holder did not open its file"; cat {{dir}}/held.err; exit 3; }
                {{job.Through(0)}} {{Harness.Python}} {{dir}}/reader.py {{job.Prefix}}{{data}} 2 >{{dir}}/reader.out 2>{{dir}}/reader.err || { echo "reader failed"; cat {{dir}}/reader.err; exit 4; }
                if [[ -e {{cache}}/c.n0/mirror{{held}} ]]; then echo kept; else echo evicted; fi
                touch {{dir}}/go
                wait $holder || { echo "holder failed"; cat {{dir}}/held.err; exit 5; }
                """;
            ProcResult run = Harness.Bash(script, timeoutMs: 300_000);
            Assert.True(run.ExitCode == 0, run.ToString());
            Assert.Equal(Expected(data, 2), File.ReadAllText(Path.Combine(dir, "reader.out")));
            Assert.True(run.Stdout.Trim() == "kept", "a file a process has open was evicted: " + run);
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(held))), File.ReadAllText(Path.Combine(dir, "held.out")).Trim());
            JsonElement s = job.Stats()[0];
            Assert.True(Num(s, "evictions") > 0, s.ToString());
            Assert.True(Num(s, "mirror_high_water") <= Budget, s.ToString());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            Directory.Delete(cache, recursive: true);
        }
    }

    [Fact]
    public void MountReadsRightUnderTheBudget()
    {
        string dir = Harness.TempDir("budgetfuse");
        string cache = Harness.TempDir("budgetfusec");
        try
        {
            string data = Dataset(dir, Files, FileBytes);
            using var job = new CopperJob(1, "budgetfuse", $"-C 1M -c {cache}/c");
            job.LaunchOrFail();
            File.WriteAllText(Path.Combine(dir, "reader.py"), Reader);
            Assert.Contains(File.ReadAllLines("/proc/mounts"), l => l.Split(' ')[1] == job.Prefix);
            // No shim: the kernel asks the mount, which answers from the mirror.
            ProcResult r = Harness.Run(Harness.Python, [$"{dir}/reader.py", job.Prefix + data, "3"],
                new Dictionary<string, string?> { ["LD_PRELOAD"] = null, ["LD_AUDIT"] = null });
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal(Expected(data, 3), r.Stdout);
            JsonElement s = job.Stats()[0];
            Assert.True(Num(s, "evictions") > 0, s.ToString());
            Assert.True(Num(s, "mirror_high_water") <= Budget, s.ToString());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            Directory.Delete(cache, recursive: true);
        }
    }

    [Fact]
    public void NumpyImportsTwiceUnderABudgetSmallerThanNumpy()
    {
        string cache = Harness.TempDir("budgetnumpyc");
        try
        {
            using var job = new CopperJob(1, "budgetnumpy", $"-C 4M --no-fuse -c {cache}/c");
            job.LaunchOrFail();
            ProcResult direct = Harness.Run(Harness.Python, ["-c", CopperJob.NumpyCode]);
            for (int i = 0; i < 2; i++)
            {
                // The extensions load through the audit module; the second import finds copies
                // the first one's listings said were in the mirror, and many are gone.
                ProcResult r = job.Python([0], 1)[0].Result;
                Assert.True(r.ExitCode == 0, r.ToString());
                Assert.Equal(direct.Stdout.Replace(CopperJob.Packages, job.Prefix + CopperJob.Packages, StringComparison.Ordinal), r.Stdout);
            }
            JsonElement s = job.Stats()[0];
            Assert.True(Num(s, "evictions") > 0, s.ToString());
            Assert.True(Num(s, "mirror_high_water") <= 4 << 20, s.ToString());
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }

    [Fact]
    public void BudgetOptionTakesSizesAndPercentagesAndRefusesTheRest()
    {
        foreach (string bad in new[] { "0", "-5", "1T", "abc", "0%", "101%", "5.5M" })
        {
            ProcResult r = Harness.Run(CopperJob.LaunchScript, ["-v", "/tmp/copper-budget-never", "-C", bad]);
            Assert.True(r.ExitCode == 2, $"-C {bad}: {r}");
            Assert.Contains("-C", r.Stderr);
        }
        string cache = Harness.TempDir("budgetpct");
        try
        {
            using var job = new CopperJob(1, "budgetpct", $"-C 50% --no-fuse -c {cache}/c");
            job.LaunchOrFail();
            // Half of the size of the file system the cache lives on (as statvfs gives it).
            ProcResult fs = Harness.Run("stat", ["-f", "-c", "%S %b", cache]);
            string[] f = fs.Stdout.Trim().Split(' ');
            long expected = long.Parse(f[0]) * long.Parse(f[1]) / 100 * 50;
            Assert.Equal(expected, Num(job.Stats()[0], "mirror_budget"));
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
        string cache2 = Harness.TempDir("budgetdef");
        try
        {
            // No -C: a quarter of the free space, which changes as others write: within 1%.
            using var job = new CopperJob(1, "budgetdef", $"--no-fuse -c {cache2}/c");
            job.LaunchOrFail();
            ProcResult fs = Harness.Run("stat", ["-f", "-c", "%S %a", cache2]);
            string[] f = fs.Stdout.Trim().Split(' ');
            double quarter = long.Parse(f[0]) * (double)long.Parse(f[1]) / 4;
            long budget = Num(job.Stats()[0], "mirror_budget");
            Assert.InRange(budget, quarter * 0.99, quarter * 1.01);
        }
        finally
        {
            Directory.Delete(cache2, recursive: true);
        }
    }
}
