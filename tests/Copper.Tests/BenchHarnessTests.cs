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

    /// <summary>
    /// The test-bed benchmark (cluster_bench.sh) at its --quick size: every scenario ran on one
    /// and two nodes and was counted, the tree and MPI_Bcast both moved the file, the report
    /// has the section, and the bench left no cluster behind. No timing is checked.
    /// </summary>
    [Fact]
    public void QuickClusterBenchRunsEveryScenarioOnTheTestBed()
    {
        string dir = Harness.TempDir("cbench");
        // The nodes see the checkout only outside /tmp (each has its own): copy what the bench runs.
        string root = Harness.RepoRoot, copy = "";
        if (root == "/tmp" || root.StartsWith("/tmp/", StringComparison.Ordinal))
        {
            root = copy = Path.Combine("/var/tmp", "copper-test-cbench-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.CreateDirectory(root);
            foreach (string d in new[] { "out", "tools" })
            {
                ProcResult cp = Harness.Run("cp", ["-a", Path.Combine(Harness.RepoRoot, d), root]);
                Assert.True(cp.ExitCode == 0, cp.ToString());
            }
        }
        try
        {
            ProcResult r = Harness.Run("bash", [Path.Combine(root, "tools", "bench", "cluster_bench.sh"), "--quick", "--out", dir], timeoutMs: 600_000);
            Assert.True(r.ExitCode == 0, r.ToString());
            string json = Directory.GetFiles(dir, "cluster-*.json").Single();
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(json));
            var rows = doc.RootElement.GetProperty("results").EnumerateArray().ToList();
            JsonElement Row(string sc, int n) => rows.Single(x =>
                x.GetProperty("scenario").GetString() == sc && x.GetProperty("workload").GetString() == "numpy" && x.GetProperty("nodes").GetInt32() == n);
            foreach (int n in new[] { 1, 2 })
            {
                foreach (string sc in new[] { "local", "direct", "shim", "fuse" })
                {
                    JsonElement x = Row(sc, n);
                    Assert.True(x.GetProperty("cold_s").GetDouble() > 0 && x.GetProperty("warm_s").GetDouble() > 0, $"{sc} {n}: no time");
                }
                Assert.True(Row("direct", n).GetProperty("pfs_ops").GetInt64() > 0, $"direct {n}: nothing counted");
                Assert.True(Row("shim", n).GetProperty("pfs_ops").GetInt64() > 0, $"shim {n}: the root read nothing");
            }
            // Direct grows with the nodes; Copper's root reads once; node 2 got its bytes over the tree.
            Assert.True(Row("direct", 2).GetProperty("pfs_ops").GetInt64() > Row("direct", 1).GetProperty("pfs_ops").GetInt64() * 3 / 2);
            Assert.True(Row("shim", 2).GetProperty("pfs_ops").GetInt64() <= Row("shim", 1).GetProperty("pfs_ops").GetInt64() * 11 / 10);
            Assert.True(Row("shim", 2).GetProperty("tree_bytes").GetInt64() > 0);
            Assert.True(Row("fuse", 2).GetProperty("tree_bytes").GetInt64() > 0);
            JsonElement tree = doc.RootElement.GetProperty("tree");
            Assert.True(tree.GetProperty("bcast_s").GetDouble() > 0 && tree.GetProperty("tree_s").GetDouble() > 0, tree.ToString());
            string name = doc.RootElement.GetProperty("cluster_name").GetString()!;
            Assert.DoesNotContain($"cu-{name}-", Harness.Run("ip", ["netns", "list"]).Stdout);
            Assert.False(Directory.Exists("/run/copper-cluster/" + name), "the bench left its cluster's state");

            // The report takes the test bed's figures as a section of their own.
            File.Copy(Directory.GetFiles(Path.Combine(Harness.RepoRoot, "bench", "results"), "storm-*.json").Order().Last(), Path.Combine(dir, "storm.json"));
            ProcResult rep = Harness.Run("/usr/bin/python3", [Path.Combine(Harness.RepoRoot, "tools", "bench", "report.py"), Path.Combine(dir, "storm.json"), "--results", dir, "--out", dir]);
            Assert.True(rep.ExitCode == 0, rep.ToString());
            Assert.Contains("## Test bed: one node per namespace", File.ReadAllText(Path.Combine(dir, "REPORT.md")));
            Assert.StartsWith("<svg", File.ReadAllText(Path.Combine(dir, "plots", "testbed-numpy-cold.svg")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            if (copy.Length > 0 && Directory.Exists(copy))
            {
                Directory.Delete(copy, recursive: true);
            }
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
