// Faults on the test bed (out/bin/cluster): a node that dies as a whole, a link that goes down
// and comes back, a node whose sshd does not answer at launch. Each test runs a real Copper job
// over ssh between the nodes and checks that the application still gets right answers, that
// launch and stop end, and that nothing of the job is left on any surviving node.
using System.Text.Json;
using Xunit;

namespace Copper.Tests;

public class ClusterFaultTests
{
    private const string MpiEnv = "export UCX_TLS=tcp,self UCX_NET_DEVICES=eth0 COPPER_RUNTIME_DIR=/tmp/copper-fault-run";
    private const string Packages = "/usr/lib/python3/dist-packages";

    // One application rank: imports numpy, says so, waits for the go file, then imports more
    // (packages no earlier import loaded) and prints where they came from and a result.
    private const string RankCode = """
        import os, sys, time
        go, tag = sys.argv[1], sys.argv[2]
        import numpy
        open(go + '.' + tag, 'w').close()
        deadline = time.time() + 240
        while not os.path.exists(go) and time.time() < deadline:
            time.sleep(0.05)
        import numpy.testing, pygments.lexers.python, yaml
        print(tag, numpy.__file__, numpy.testing.__file__, pygments.__file__, yaml.__file__,
              int(numpy.arange(5).sum()), flush=True)
        """;

    [Fact]
    public void KillTakesANodeDownAndLinkCutsOnlyTheLink()
    {
        using var bed = new Bed("fk");
        bed.Up(3);
        // A process of node 3's, to be killed with it.
        ProcResult bg = bed.Exec(3, "sh", "-c", "sleep 600 </dev/null >/dev/null 2>&1 & echo $!");
        Assert.True(bg.ExitCode == 0, bg.ToString());
        int sleeper = int.Parse(bg.Stdout.Trim());

        // Node 2's link down: its sshd is not reachable from node 1, node 3's still is; the node lives.
        ProcResult down = bed.Run("link", "2", "down");
        Assert.True(down.ExitCode == 0, down.ToString());
        Assert.NotEqual(0, bed.Exec(1, "timeout", "3", "bash", "-c", "echo > /dev/tcp/node2/22").ExitCode);
        Assert.True(bed.WaitTcp(1, "node3"), "node 3 is not reachable from node 1");
        ProcResult status = bed.Run("status");
        Assert.True(status.ExitCode == 0 && status.Stdout.Contains("up (link down)"), status.ToString());
        Assert.Equal(0, bed.Exec(2, "true").ExitCode);

        ProcResult up = bed.Run("link", "2", "up");
        Assert.True(up.ExitCode == 0, up.ToString());
        Assert.True(bed.WaitTcp(1, "node2"), "node 2 is not reachable again after link up");

        // Node 3 killed: every process of it is gone, status says DOWN (exit 1), exec refuses.
        ProcResult kill = bed.Run("kill", "3");
        Assert.True(kill.ExitCode == 0, kill.ToString());
        Assert.False(TestBed.Alive(sleeper), "a process of the killed node survived");
        Assert.Empty(bed.LiveProcesses(3));
        status = bed.Run("status");
        Assert.True(status.ExitCode == 1 && status.Stdout.Split('\n').Any(l => l.StartsWith("3 ") && l.EndsWith(" DOWN")), status.ToString());
        Assert.NotEqual(0, bed.Exec(3, "true").ExitCode);
        Assert.NotEqual(0, bed.Exec(1, "timeout", "3", "bash", "-c", "echo > /dev/tcp/node3/22").ExitCode);
        Assert.Equal(2, bed.Run("kill", "9").ExitCode);

        // down still removes everything.
        ProcResult gone = bed.Run("down");
        Assert.True(gone.ExitCode == 0, gone.ToString());
        Assert.DoesNotContain($"cu-{bed.Name}-", Harness.Run("ip", ["netns", "list"]).Stdout);
    }

    [Fact]
    public void AnInteriorNodeDiesDuringAnImportAndTheOthersFinish()
    {
        using var bed = new Bed("fd");
        bed.Up(4);
        // Fan-out 2 over 4 nodes: node1 is the root, node2 the parent of node4.
        ProcResult launch = bed.Launch(4, "-F 2 -P 3");
        Assert.True(launch.ExitCode == 0, launch + bed.JobOutput());

        ProcResult run = bed.Ranks([2, 3, 4], killAfterPhase1: "kill 2", dies: 2);
        Assert.True(run.ExitCode == 0, run + bed.JobOutput());
        foreach (int k in new[] { 3, 4 })
        {
            Assert.Equal(bed.Expected(k), bed.RankOutput(k));
        }

        ProcResult stop = bed.Stop(1);
        Assert.True(stop.ExitCode == 0, stop.ToString());
        bed.AssertNothingLeft([1, 3, 4]);
    }

    [Fact]
    public void ALinkOutageFallsBackAndTheNodeIsServedAgain()
    {
        using var bed = new Bed("fl");
        bed.Up(3);
        ProcResult launch = bed.Launch(3, "-F 2 -P 2");
        Assert.True(launch.ExitCode == 0, launch + bed.JobOutput());

        // During the outage node 3's parent (node 1) is silent: after -P its agent reads the
        // file system itself, and the rank gets the right answers.
        Assert.Equal(0, bed.Run("link", "3", "down").ExitCode);
        ProcResult during = bed.Ranks([3], killAfterPhase1: null, tag: "during");
        Assert.True(during.ExitCode == 0, during + bed.JobOutput());
        Assert.Equal(bed.Expected(3), bed.RankOutput(3, "during"));
        JsonElement outage = bed.AgentStats(3);
        Assert.True(outage.GetProperty("parent_timeouts").GetInt64() >= 1, outage.ToString());
        Assert.True(outage.GetProperty("degraded").GetInt64() > 0, outage.ToString());
        Assert.True(outage.GetProperty("parent_down")[0].GetBoolean(), outage.ToString());

        // The link back: the parent's late replies arrive, the agent hears it and asks it again.
        Assert.Equal(0, bed.Run("link", "3", "up").ExitCode);
        JsonElement back = outage;
        for (int i = 0; i < 600 && back.GetProperty("parent_down")[0].GetBoolean(); i++)
        {
            Thread.Sleep(100);
            back = bed.AgentStats(3);
        }
        Assert.False(back.GetProperty("parent_down")[0].GetBoolean(), "node 3 never heard its parent again: " + back);

        // New imports on node 3 go up the tree again, not to the file system.
        ProcResult after = bed.Python(3, "import pygments.lexers.javascript, pygments.formatters.html; print(pygments.lexers.javascript.__file__)");
        Assert.True(after.ExitCode == 0, after.ToString());
        Assert.Equal(bed.Prefix + Packages + "/pygments/lexers/javascript.py", after.Stdout.Trim());
        JsonElement served = bed.AgentStats(3);
        Assert.True(served.GetProperty("forwarded_up").GetInt64() > back.GetProperty("forwarded_up").GetInt64(), served.ToString());
        Assert.Equal(back.GetProperty("degraded").GetInt64(), served.GetProperty("degraded").GetInt64());

        ProcResult stop = bed.Stop(1);
        Assert.True(stop.ExitCode == 0, stop.ToString());
        bed.AssertNothingLeft([1, 2, 3]);
    }

    [Fact]
    public void CopperStatsOnTheLaunchNodeShowsEveryNodeAndMarksAKilledOneSilent()
    {
        using var bed = new Bed("fj");
        bed.Up(3);
        ProcResult launch = bed.Launch(3, "-F 2");
        Assert.True(launch.ExitCode == 0, launch + bed.JobOutput());
        ProcResult run = bed.Ranks([2, 3], killAfterPhase1: null);
        Assert.True(run.ExitCode == 0, run + bed.JobOutput());
        Assert.Equal(bed.Expected(2), bed.RankOutput(2));
        Assert.Equal(bed.Expected(3), bed.RankOutput(3));

        // On node 1 (the root's node): every node, each with its own counters, as last reported
        // (reports go up about once a second: wait for them, boundedly).
        Dictionary<string, JsonElement> nodes = [];
        for (int i = 0; i < 600; i++)
        {
            nodes = bed.JobStats(1);
            if (nodes.Count == 3 && nodes.Values.All(n => n.TryGetProperty("requests", out JsonElement r) && r.GetInt64() > 0)
                && nodes["node3"].GetProperty("requests").GetInt64() >= 40)
            {
                break;
            }
            Thread.Sleep(100);
        }
        Assert.Equal(["node1", "node2", "node3"], nodes.Keys.Order());
        // The imports were served through the tree: only the root read the file system.
        Assert.True(nodes["node1"].GetProperty("pfs_ops").GetInt64() > 0, nodes["node1"].ToString());
        Assert.True(nodes["node1"].GetProperty("child_requests").GetInt64() > 0, nodes["node1"].ToString());
        foreach (string n in new[] { "node2", "node3" })
        {
            Assert.Equal(0, nodes[n].GetProperty("pfs_ops").GetInt64());
            Assert.True(nodes[n].GetProperty("forwarded_up").GetInt64() > 0, nodes[n].ToString());
            Assert.False(nodes[n].GetProperty("silent").GetBoolean(), nodes[n].ToString());
        }
        long node3Requests = nodes["node3"].GetProperty("requests").GetInt64();

        // Node 3 dies: the root still answers at once each time, and marks it silent with its last counters.
        Assert.Equal(0, bed.Run("kill", "3").ExitCode);
        for (int i = 0; i < 600 && !(nodes["node3"].TryGetProperty("silent", out JsonElement s) && s.GetBoolean()); i++)
        {
            Thread.Sleep(100);
            nodes = bed.JobStats(1);
        }
        Assert.True(nodes["node3"].GetProperty("silent").GetBoolean(), nodes["node3"].ToString());
        Assert.True(nodes["node3"].GetProperty("requests").GetInt64() >= node3Requests, nodes["node3"].ToString());
        Assert.True(nodes["node3"].GetProperty("age_s").GetDouble() > 0, nodes["node3"].ToString());
        Assert.False(nodes["node2"].GetProperty("silent").GetBoolean(), nodes["node2"].ToString());
        ProcResult table = bed.Bash(1, $"timeout 20 {bed.BinDir}/copper stats -v {bed.Prefix}");
        Assert.True(table.ExitCode == 0 && table.Stdout.Contains("3 node(s) of the job") && table.Stdout.Contains("silent, last report"), table.ToString());

        ProcResult stop = bed.Stop(1);
        Assert.True(stop.ExitCode == 0, stop.ToString());
        bed.AssertNothingLeft([1, 2]);
    }

    [Fact]
    public void ALaunchWithANodeWhoseSshdIsDeadFailsNamingItAndLeavesNothing()
    {
        using var bed = new Bed("fs");
        bed.Up(3);
        int sshd = int.Parse(File.ReadAllText(Path.Combine(bed.State, "ssh", "node3.sshd.pid")).Trim());
        Assert.Equal(0, Harness.Run("kill", [sshd.ToString()]).ExitCode);
        for (int i = 0; i < 100 && TestBed.Alive(sshd); i++)
        {
            Thread.Sleep(100);
        }

        // -s 15: the test's own bound (the process timeout) is generous; the launch must end by itself.
        ProcResult launch = bed.Launch(3, "", seconds: 15);
        Assert.True(launch.ExitCode == 1, launch + bed.JobOutput());
        Assert.Contains("node3", launch.Stderr);
        Assert.Contains("could not start the agent on every node", launch.Stderr);
        bed.AssertNothingLeft([1, 2, 3]);
    }

    /// <summary>A cluster of the test bed with ssh, a shared directory and a Copper job's places.</summary>
    private sealed class Bed : IDisposable
    {
        private readonly string? _copied;

        public Bed(string tag)
        {
            Name = tag + Guid.NewGuid().ToString("N")[..8];
            State = "/run/copper-cluster/" + Name;
            // Outside /tmp (each node has its own): hostfile, exports, scripts, outputs, logs.
            Shared = Path.Combine("/var/tmp", "copper-fault-" + Name);
            Directory.CreateDirectory(Shared);
            BinDir = Path.Combine(TestBed.VisibleInstall(Name, out _copied), "bin");
            File.WriteAllText(Path.Combine(Shared, "rank.py"), RankCode);
        }

        public string Name { get; }
        public string State { get; }
        public string Shared { get; }
        public string BinDir { get; }
        // Under each node's own /tmp: the prefix path, the agents' runtime, cache.
        public string Prefix => "/tmp/copper-fault-" + Name + "/copper";
        private string Logs => Path.Combine(Shared, "logs");
        private string Exports => Path.Combine(Shared, "exports");

        public ProcResult Run(params string[] args) =>
            Harness.Run(TestBed.Cluster, new[] { "--name", Name }.Concat(args), timeoutMs: 90_000);

        public ProcResult Exec(int node, params string[] cmd) => Run(new[] { "exec", node.ToString() }.Concat(cmd).ToArray());

        public ProcResult Bash(int node, string script, int timeoutMs = 120_000) =>
            Harness.Run(TestBed.Cluster, ["--name", Name, "exec", node.ToString(), "/bin/bash", "-c", $"{MpiEnv}; {script}"], timeoutMs: timeoutMs);

        public void Up(int n)
        {
            ProcResult up = Run("up", n.ToString(), "--ssh");
            Assert.True(up.ExitCode == 0, up.ToString());
            File.WriteAllText(Path.Combine(Shared, "hosts"), string.Concat(Enumerable.Range(1, n).Select(k => $"node{k}\n")));
        }

        /// <summary>Node 1 launches the job over every node (mpiexec reaches the others by ssh).</summary>
        public ProcResult Launch(int n, string args, int seconds = 60) =>
            Bash(1, $"timeout {seconds + 60} {BinDir}/launch_copper.sh -H {Shared}/hosts -v {Prefix} -c /tmp/copper-fault-cache -b none --no-fuse -s {seconds} -d {Logs} {args} > {Exports}",
                (seconds + 90) * 1000);

        public ProcResult Stop(int node) => Bash(node, $"timeout 90 {BinDir}/stop_copper.sh -v {Prefix}", 120_000);

        private string Through => $". {Exports}; LD_PRELOAD=$COPPER_PRELOAD PYTHONPATH=$COPPER_PREFIX{Packages}";

        public ProcResult Python(int node, string code) =>
            Bash(node, $"{Through} timeout 120 {Harness.Python} -c '{code}'", 180_000);

        /// <summary>
        /// Starts a rank on each node, waits until every rank imported numpy, runs the fault
        /// (a cluster command, or none), lets the ranks go on and waits for them all; exit 0
        /// when every rank but the one on node <paramref name="dies"/> exited 0.
        /// </summary>
        public ProcResult Ranks(int[] nodes, string? killAfterPhase1, string tag = "rank", int dies = 0)
        {
            string cluster = $"{TestBed.Cluster} --name {Name}";
            string go = Path.Combine(Shared, "go-" + tag);
            string script = "set -u\npids=()\n";
            foreach (int k in nodes)
            {
                script += $"{cluster} exec {k} /bin/bash -c '{MpiEnv}; {Through} timeout 240 {Harness.Python} {Shared}/rank.py {go} node{k}' >{Shared}/out.{tag}.{k} 2>{Shared}/err.{tag}.{k} & {(k == dies ? "" : "pids+=($!)")}\n";
            }
            string ready = string.Join(" && ", nodes.Select(k => $"[ -e {go}.node{k} ]"));
            script += $"for i in $(seq 1 2400); do {ready} && break; sleep 0.1; done\n";
            script += $"{ready} || echo 'not every rank imported numpy' >&2\n";
            if (killAfterPhase1 != null)
            {
                script += $"{cluster} {killAfterPhase1} || exit 1\n";
            }
            script += $"touch {go}\nrc=0\n";
            script += "for p in \"${pids[@]}\"; do wait $p || rc=1; done\nexit $rc\n";
            return Harness.Bash(script, timeoutMs: 360_000);
        }

        public string RankOutput(int node, string tag = "rank")
        {
            string err = File.ReadAllText(Path.Combine(Shared, $"err.{tag}.{node}"));
            return File.ReadAllText(Path.Combine(Shared, $"out.{tag}.{node}")).Trim() + (err.Length > 0 ? "\nstderr: " + err : "");
        }

        public string Expected(int node)
        {
            string p = Prefix + Packages;
            return $"node{node} {p}/numpy/__init__.py {p}/numpy/testing/__init__.py {p}/pygments/__init__.py {p}/yaml/__init__.py 10";
        }

        /// <summary>This node's own agent's counters (copper stats --json on the node).</summary>
        public JsonElement AgentStats(int node)
        {
            ProcResult r = Bash(node, $"{BinDir}/copper stats -v {Prefix} --json");
            Assert.True(r.ExitCode == 0, r.ToString());
            using JsonDocument doc = JsonDocument.Parse(r.Stdout);
            return doc.RootElement.GetProperty("nodes").EnumerateArray().Single(e => e.GetProperty("host").GetString() == $"node{node}").Clone();
        }

        /// <summary>`copper stats --json` on node <paramref name="node"/>: every node listed, by host.</summary>
        public Dictionary<string, JsonElement> JobStats(int node)
        {
            // The CLI's own socket timeouts bound it; `timeout` only guards the test.
            ProcResult r = Bash(node, $"timeout 20 {BinDir}/copper stats -v {Prefix} --json");
            Assert.True(r.ExitCode == 0, r.ToString());
            using JsonDocument doc = JsonDocument.Parse(r.Stdout);
            Assert.True(doc.RootElement.GetProperty("job").GetBoolean(), r.Stdout);
            return doc.RootElement.GetProperty("nodes").EnumerateArray()
                .Where(e => e.TryGetProperty("host", out _))
                .ToDictionary(e => e.GetProperty("host").GetString()!, e => e.Clone());
        }

        public string JobOutput() =>
            Directory.Exists(Logs) ? "\n" + string.Concat(Directory.GetFiles(Logs, "copper-mpiexec.*.out").Select(File.ReadAllText)) : "";

        /// <summary>Live processes in node K's network namespace: "pid comm".</summary>
        public List<string> LiveProcesses(int node)
        {
            ProcResult pids = Harness.Run("ip", ["netns", "pids", $"cu-{Name}-{node}"]);
            var live = new List<string>();
            foreach (string p in pids.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                if (TestBed.Alive(int.Parse(p)))
                {
                    try
                    {
                        live.Add(p + " " + File.ReadAllText($"/proc/{p}/comm").Trim());
                    }
                    catch (IOException)
                    {
                    }
                }
            }
            return live;
        }

        /// <summary>
        /// Within a generous bound, only each node's holder (sleep) and sshd are left: no agent,
        /// mpiexec, hydra proxy, ssh or guard; and no agent files under the nodes' /tmp.
        /// </summary>
        public void AssertNothingLeft(int[] nodes)
        {
            List<string> left = [];
            for (int i = 0; i < 300; i++)
            {
                left = nodes.SelectMany(k => LiveProcesses(k).Where(p => p.Split(' ')[1] is not ("sleep" or "sshd")).Select(p => $"node{k}:{p}")).ToList();
                if (left.Count == 0)
                {
                    break;
                }
                Thread.Sleep(100);
            }
            Assert.True(left.Count == 0, "left: " + string.Join(", ", left) + JobOutput());
            foreach (int k in nodes)
            {
                // No agent's directory (socket, pid) and no cache; a launch's lock file may stay.
                ProcResult rest = Bash(k, "find /tmp/copper-fault-run -mindepth 1 -not -name '.*.lock' 2>/dev/null; ls -A /tmp/copper-fault-cache 2>/dev/null; true");
                Assert.True(rest.ExitCode == 0 && rest.Stdout.Trim() == "", $"node{k} keeps agent files: " + rest);
            }
        }

        /// <summary>True once a TCP connection from node <paramref name="from"/> to HOST:22 succeeds (bounded retries).</summary>
        public bool WaitTcp(int from, string host)
        {
            for (int i = 0; i < 60; i++)
            {
                if (Exec(from, "timeout", "3", "bash", "-c", $"echo > /dev/tcp/{host}/22").ExitCode == 0)
                {
                    return true;
                }
                Thread.Sleep(200);
            }
            return false;
        }

        public void Dispose()
        {
            Run("down");
            if (Directory.Exists(Shared))
            {
                Directory.Delete(Shared, recursive: true);
            }
            if (_copied != null && Directory.Exists(_copied))
            {
                Directory.Delete(_copied, recursive: true);
            }
        }
    }
}
