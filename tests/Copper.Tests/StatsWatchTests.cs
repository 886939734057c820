// `copper stats --watch` and the job summary stop_copper.sh prints and writes, on a real
// two-node MPI job on this machine (launch_copper.sh -n 2) after a numpy import on node 1.
using System.Text.Json;
using System.Text.RegularExpressions;
using Xunit;

namespace Copper.Tests;

public class StatsWatchTests
{
    private static long Num(JsonElement e, string name) => e.GetProperty(name).GetInt64();

    /// <summary>The node rows of one frame: node -> the row's words.</summary>
    private static Dictionary<int, string[]> Rows(string frame) =>
        frame.Split('\n')
            .Where(l => Regex.IsMatch(l, @"^\d+\s"))
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .ToDictionary(w => int.Parse(w[0]), w => w);

    /// <summary>No agent directory is left (the runtime directory goes when it is empty).</summary>
    private static void AssertStopped(CopperJob job)
    {
        string run = job.Env["COPPER_RUNTIME_DIR"]!;
        Assert.True(!Directory.Exists(run) || Directory.GetDirectories(run).Length == 0, "agents left in " + run);
    }

    [Fact]
    public void WatchPrintsPlainFramesOfEveryNodeWithRequests()
    {
        using var job = new CopperJob(2, "watch");
        job.LaunchOrFail();
        Assert.All(job.Python([1], ranks: 1), r => Assert.True(r.Result.ExitCode == 0, r.Result.ToString()));

        ProcResult r = Harness.Run(CopperJob.Cli, ["stats", "-v", job.Prefix, "--watch", "1", "--count", "2"], job.Env, timeoutMs: 30_000);
        Assert.True(r.ExitCode == 0, r.ToString());
        // Not a terminal: plain frames, one after the other, no escape codes.
        Assert.DoesNotContain('\x1b', r.Stdout);
        string[] frames = r.Stdout.Split("Copper " + job.Prefix + ":", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, frames.Length);
        foreach (string frame in frames)
        {
            Assert.Contains("2 node(s) of the job", frame);
            Dictionary<int, string[]> rows = Rows(frame);
            Assert.Equal([0, 1], rows.Keys.Order());
            // node 1 answered the import's requests; node 0, the root, read the file system
            Assert.True(long.Parse(rows[1][2]) > 0, frame);
            Assert.True(long.Parse(rows[0][7]) > 0, frame);
            Assert.Equal("0", rows[1][7]);
            // every column is there: age, requests, req/s (a number: two samples), hits, bytes, pfs, degraded, mirror
            Assert.Equal(10, rows[1].Length);
            Assert.Matches(@"^\d+\.\d$", rows[1][3]);
            Assert.Matches(@"^\d+\.\d%$", rows[1][4]);
            Assert.NotEqual("0B", rows[1][5]); // bytes from the parent
            Assert.NotEqual("0B", rows[1][9]); // node 1's mirror holds numpy
            Match m = Regex.Match(frame, @"file system: (\d+) operations .*direct would have made about (\d+) \(saved (\d+)\)");
            Assert.True(m.Success, frame);
            Assert.True(long.Parse(m.Groups[2].Value) >= long.Parse(rows[1][2]), frame);
        }

        // bad usage is refused, not watched
        ProcResult bad = Harness.Run(CopperJob.Cli, ["stats", "-v", job.Prefix, "--watch", "1", "--json"], job.Env, timeoutMs: 30_000);
        Assert.Equal(2, bad.ExitCode);
    }

    [Fact]
    public void StopPrintsAndWritesTheJobSummary()
    {
        using var job = new CopperJob(2, "summary");
        job.LaunchOrFail();
        Assert.All(job.Python([1], ranks: 1), r => Assert.True(r.Result.ExitCode == 0, r.Result.ToString()));

        ProcResult stop = job.Stop();
        Assert.True(stop.ExitCode == 0, stop.ToString());
        Assert.Contains("Copper job summary", stop.Stderr);
        Assert.Contains("direct would have made about", stop.Stderr);
        string file = Assert.Single(Directory.GetFiles(job.LogDir, "copper-summary.*.json"));
        Assert.Contains("written to     " + file, stop.Stderr);
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(file));
        JsonElement s = doc.RootElement;
        Assert.Equal(job.Prefix, s.GetProperty("prefix").GetString());
        Assert.Equal(2, Num(s, "nodes"));
        Assert.Equal([0L, 1L], s.GetProperty("per_node").EnumerateArray().Select(n => Num(n, "node")));
        Assert.True(Num(s, "pfs_ops") > 0, s.ToString());
        Assert.True(Num(s, "requests") > 0, s.ToString());
        Assert.True(Num(s, "bytes_from_parent") > 0, s.ToString());
        Assert.True(Num(s, "mirror_held_bytes") > 0, s.ToString());
        Assert.Equal(Num(s, "requests"), Num(s, "direct_ops_estimate"));
        Assert.Equal(Math.Max(0, Num(s, "requests") - Num(s, "pfs_ops")), Num(s, "pfs_ops_saved"));
        Assert.True(s.GetProperty("duration_s").GetInt64() >= 0);
        // the summary was taken before the agents stopped, and they did stop
        AssertStopped(job);
    }

    [Fact]
    public void StopDoesNotWaitForASummaryThatHangs()
    {
        using var job = new CopperJob(2, "summaryhang");
        string cli = Path.Combine(job.Root, "copper-hangs");
        File.WriteAllText(cli, "#!/bin/sh\nexec sleep 600\n");
        File.SetUnixFileMode(cli, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        job.LaunchOrFail();
        var env = new Dictionary<string, string?>(job.Env) { ["COPPER_CLI"] = cli };
        ProcResult stop = Harness.Run(CopperJob.StopScript, ["-v", job.Prefix], env, timeoutMs: 60_000);
        Assert.True(stop.ExitCode == 0, stop.ToString());
        Assert.Contains("job summary is incomplete or missing", stop.Stderr);
        AssertStopped(job);
    }
}
