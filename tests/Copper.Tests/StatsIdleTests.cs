// The job's counters at the root while the job idles, on a real six-node MPI job on this
// machine (launch_copper.sh -n 6: fan-out 2, so nodes 3 and 4 report through node 1 and node 5
// through node 2). Unchanged counters are not sent again: the root receives small liveness
// frames instead, every node stays listed with a fresh age, and new counters still arrive; an
// orphaned subtree stays fresh through the root directly.
using System.Text.Json;
using Xunit;

namespace Copper.Tests;

public class StatsIdleTests
{
    private static long Num(JsonElement e, string name) => e.GetProperty(name).GetInt64();

    /// <summary>The root's "job" entries by node.</summary>
    private static Dictionary<int, JsonElement> Entries(JsonElement root) =>
        root.GetProperty("job").GetProperty("entries").EnumerateArray().ToDictionary(e => e.GetProperty("node").GetInt32());

    private static bool Reported(JsonElement e) => e.TryGetProperty("requests", out _);

    private static bool Silent(JsonElement e) => e.GetProperty("silent").GetBoolean();

    private static double Age(JsonElement e) => e.GetProperty("age_s").ValueKind == JsonValueKind.Number ? e.GetProperty("age_s").GetDouble() : double.MaxValue;

    /// <summary>The root's stats once <paramref name="done"/> holds (polled, at most <paramref name="seconds"/>).</summary>
    private static JsonElement WaitFor(CopperJob job, Func<JsonElement, bool> done, string what, int seconds = 60)
    {
        JsonElement root = job.RootStats();
        for (int i = 0; i < seconds * 4 && !done(root); i++)
        {
            Thread.Sleep(250);
            root = job.RootStats();
        }
        Assert.True(done(root), what + ": " + root.GetProperty("job"));
        return root;
    }

    [Fact]
    public void AnIdleJobCostsTheRootLivenessFramesNotReportsAndNewCountersStillArrive()
    {
        using var job = new CopperJob(6, "idle", "--no-fuse"); // no mount: nothing outside the test moves the counters
        job.LaunchOrFail();
        WaitFor(job, r => Entries(r).Values.All(Reported), "every node reported once");
        // The start settles: no report reaches the root between two looks 1.5 s apart.
        JsonElement a = job.RootStats();
        for (int i = 0; i < 20; i++)
        {
            Thread.Sleep(1500);
            JsonElement next = job.RootStats();
            bool settled = Num(next, "stats_report_frames_received") == Num(a, "stats_report_frames_received");
            a = next;
            if (settled)
            {
                break;
            }
        }

        // Idle for longer than the silence limit.
        double silentAfter = a.GetProperty("job").GetProperty("silent_after_s").GetDouble();
        Thread.Sleep(TimeSpan.FromSeconds(silentAfter + 2));
        JsonElement b = job.RootStats();
        long reportFrames = Num(b, "stats_report_frames_received") - Num(a, "stats_report_frames_received");
        long reportBytes = Num(b, "stats_report_bytes_received") - Num(a, "stats_report_bytes_received");
        long liveFrames = Num(b, "stats_live_frames_received") - Num(a, "stats_live_frames_received");
        long liveBytes = Num(b, "stats_live_bytes_received") - Num(a, "stats_live_bytes_received");
        Dictionary<int, JsonElement> entries = Entries(b);
        // One node's counters as a full report carries them (12 bytes of entry head, then the JSON).
        long entryBytes = entries.Where(kv => kv.Key != 0).Min(kv => 12 + kv.Value.GetRawText().Length);
        string seen = $"idle: {reportFrames} report frames ({reportBytes} B), {liveFrames} live frames ({liveBytes} B); one entry {entryBytes} B";
        Assert.True(reportFrames == 0, seen);
        Assert.True(liveFrames > 0, seen);
        // Full reports every 3 s would have cost (nodes - 1) entries at least 4 times over this
        // window; the root received less than one such round.
        Assert.True(reportBytes + liveBytes < (job.Nodes - 1) * entryBytes, seen);
        // Every node is listed with its counters and a fresh age, though none reported for longer
        // than the silence limit: the liveness frames spoke for them.
        Assert.Equal(Enumerable.Range(0, job.Nodes), entries.Keys.Order());
        foreach (JsonElement e in entries.Values)
        {
            Assert.True(Reported(e) && !Silent(e) && Age(e) < silentAfter, e + "; " + seen);
        }

        // Activity on node 4 (below node 1): its new counters reach the root.
        long before = Num(entries[4], "requests");
        Assert.All(job.Python([4], ranks: 1), r => Assert.True(r.Result.ExitCode == 0, r.Result.ToString()));
        JsonElement c = WaitFor(job, r => Num(Entries(r)[4], "requests") > before, "node 4's new counters at the root");
        Assert.True(Num(c, "stats_report_frames_received") > Num(b, "stats_report_frames_received"), c.ToString());
        Assert.True(Num(Entries(c)[4], "bytes_from_parent") > 0, Entries(c)[4].ToString());
    }

    [Fact]
    public void AKilledInteriorNodeIsMarkedSilentAndItsSubtreeStaysFreshThroughTheRoot()
    {
        using var job = new CopperJob(6, "idleorphan", "--no-fuse");
        job.LaunchOrFail();
        WaitFor(job, r => Entries(r).Values.All(e => Reported(e) && !Silent(e)), "every node reported once");
        Assert.Equal(0, Harness.Run("kill", ["-KILL", job.AgentPid(1).ToString()]).ExitCode);

        // Node 1 falls silent at the root; its children 3 and 4, whose last word came through it,
        // would be as old: they are fresh because they now speak to the root directly.
        JsonElement r = WaitFor(job, r =>
        {
            Dictionary<int, JsonElement> e = Entries(r);
            return Silent(e[1]) && Age(e[3]) < 5 && Age(e[4]) < 5;
        }, "node 1 silent, nodes 3 and 4 fresh");
        Dictionary<int, JsonElement> entries = Entries(r);
        Assert.True(Age(entries[1]) >= r.GetProperty("job").GetProperty("silent_after_s").GetDouble(), entries[1].ToString()); // (rounded to 0.1 s)
        foreach (int n in new[] { 2, 3, 4, 5 })
        {
            Assert.False(Silent(entries[n]), entries[n].ToString());
        }
        Assert.Equal([1], r.GetProperty("job").GetProperty("entries").EnumerateArray().Where(Silent).Select(e => e.GetProperty("node").GetInt32()));
    }
}
