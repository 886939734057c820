// The import-storm benchmark at its --quick size, so the harness never rots: every scenario
// and workload ran at every node count and was counted, and the report was written. No
// timing is checked (speed lives in the benchmark's report, not in tests).
using System.Text.Json;
using Xunit;

namespace Copper.Tests;

public class BenchHarnessTests
{
    [Fact]
    public void QuickStormRunsEveryScenarioAndCounts()
    {
        string dir = Harness.TempDir("storm");
        try
        {
            ProcResult r = Harness.Run("bash", [Path.Combine(Harness.RepoRoot, "tools", "bench", "storm_bench.sh"), "--quick", "--out", dir], timeoutMs: 600_000);
            Assert.True(r.ExitCode == 0, r.ToString());
            string json = Directory.GetFiles(dir, "storm-*.json").Single();
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(json));
            var rows = doc.RootElement.GetProperty("results").EnumerateArray().ToList();
            JsonElement Row(string sc, string wl, int n) => rows.Single(x =>
                x.GetProperty("scenario").GetString() == sc && x.GetProperty("workload").GetString() == wl && x.GetProperty("nodes").GetInt32() == n);
            foreach (string wl in new[] { "numpy", "pynamic", "dataset" })
            {
                foreach (int n in new[] { 1, 2 })
                {
                    foreach (string sc in new[] { "local", "direct", "shim", "fuse" })
                    {
                        JsonElement x = Row(sc, wl, n);
                        Assert.True(x.GetProperty("cold_s").GetDouble() > 0 && x.GetProperty("warm_s").GetDouble() > 0, $"{sc} {wl} {n}: no time");
                    }
                    Assert.True(Row("direct", wl, n).GetProperty("pfs_ops").GetInt64() > 0, $"direct {wl} {n}: nothing counted");
                    Assert.True(Row("shim", wl, n).GetProperty("pfs_ops").GetInt64() > 0, $"shim {wl} {n}: the root read nothing");
                    Assert.True(Row("shim", wl, n).GetProperty("agent_rss_kb").GetInt64() > 0);
                }
                // Direct grows with the ranks; Copper's root reads once whatever the node count;
                // the second node got its bytes over the tree.
                Assert.True(Row("direct", wl, 2).GetProperty("pfs_ops").GetInt64() > Row("direct", wl, 1).GetProperty("pfs_ops").GetInt64() * 3 / 2);
                Assert.True(Row("shim", wl, 2).GetProperty("pfs_ops").GetInt64() <= Row("shim", wl, 1).GetProperty("pfs_ops").GetInt64() * 11 / 10);
                Assert.True(Row("shim", wl, 2).GetProperty("tree_bytes").GetInt64() > 0);
                Assert.True(Row("fuse", wl, 2).GetProperty("tree_bytes").GetInt64() > 0);
            }
            string report = File.ReadAllText(Path.Combine(dir, "REPORT.md"));
            Assert.Contains("## Projection to Aurora's scale", report);
            foreach (string plot in new[] { "numpy-cold.svg", "numpy-pfs-ops.svg", "dataset-warm.svg" })
            {
                Assert.StartsWith("<svg", File.ReadAllText(Path.Combine(dir, "plots", plot)));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void QuickReplayBenchRecordsAndReplaysAtEachNodeCount()
    {
        string dir = Harness.TempDir("replaybench");
        try
        {
            ProcResult r = Harness.Run("bash", [Path.Combine(Harness.RepoRoot, "tools", "bench", "replay_bench.sh"), "--nodes", "1 2", "--ranks", "1", "--out", dir], timeoutMs: 600_000);
            Assert.True(r.ExitCode == 0, r.ToString());
            string json = Directory.GetFiles(dir, "replay-*.json").Single();
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(json));
            var rows = doc.RootElement.GetProperty("results").EnumerateArray().ToList();
            foreach (int n in new[] { 1, 2 })
            {
                JsonElement shim = rows.Single(x => x.GetProperty("scenario").GetString() == "shim" && x.GetProperty("nodes").GetInt32() == n);
                JsonElement replay = rows.Single(x => x.GetProperty("scenario").GetString() == "replay" && x.GetProperty("nodes").GetInt32() == n);
                Assert.True(shim.GetProperty("manifest_entries").GetInt32() > 100, shim.ToString());
                Assert.True(replay.GetProperty("replay_bytes").GetInt64() > 0, replay.ToString());
                // The replay asked what the recording job asked: no more of the PFS, and the cold run asked nothing up the tree.
                Assert.True(replay.GetProperty("pfs_ops").GetInt64() <= shim.GetProperty("pfs_ops").GetInt64(), replay.ToString());
                Assert.Equal(0, replay.GetProperty("forwarded_up_cold").GetInt64());
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
