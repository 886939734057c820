// Slurm on the test bed (out/bin/cluster up N --slurm): four nodes idle in sinfo; inside
// `salloc -N4`, launch_copper.sh finds the nodes from SLURM_JOB_NODELIST and starts one agent
// per node (Hydra's slurm bootstrap, one job step that overlaps the application's), `srun -N4
// -n8` ranks import numpy through the prefix, and stop_copper.sh where the launch ran stops
// every node's agent; the epilog snippet (out/share/copper/slurm-epilog.sh) cleans up after
// a job that ended without stop_copper.sh; down leaves no daemon, socket, mount or state; a
// second Slurm cluster up at the same time does not meet the first.
using Xunit;

namespace Copper.Tests;

public class ClusterSlurmTests
{
    private static string Cluster => TestBed.Cluster;

    private static ProcResult Run(string name, params string[] args) =>
        Harness.Run(Cluster, new[] { "--name", name }.Concat(args), timeoutMs: 120_000);

    private static ProcResult Exec(string name, int node, int timeoutMs, params string[] cmd) =>
        Harness.Run(Cluster, new[] { "--name", name, "exec", node.ToString() }.Concat(cmd), timeoutMs: timeoutMs);

    // UCX crosses the veths only when told to (test bed only; never for a real site).
    private const string MpiEnv = "export UCX_TLS=tcp,self UCX_NET_DEVICES=eth0";

    private static void RequireSlurm()
    {
        // CI installs Slurm (build.sh); a machine without it fails here, by name, not silently.
        foreach (string b in new[] { "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "/usr/bin/srun", "/usr/bin/salloc" })
        {
            Assert.True(File.Exists(b), $"{b} is missing: these tests need Slurm (Debian packages slurmctld slurmd slurm-client munge; build.sh installs them as root)");
        }
    }

    /// <summary>Pids of the processes in the nodes' network namespaces whose name is one of <paramref name="comms"/>.</summary>
    private static List<int> NodePids(string name, int nodes, params string[] comms)
    {
        var pids = new List<int>();
        for (int k = 1; k <= nodes; k++)
        {
            ProcResult r = Harness.Run("ip", new[] { "netns", "pids", $"cu-{name}-{k}" });
            foreach (string p in r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                int pid = int.Parse(p.Trim());
                try
                {
                    if (comms.Contains(File.ReadAllText($"/proc/{pid}/comm").Trim()) && TestBed.Alive(pid))
                    {
                        pids.Add(pid);
                    }
                }
                catch (IOException)
                {
                }
            }
        }
        return pids;
    }

    /// <summary>What the nodes run besides their holder and the Slurm daemons (bounded poll; "" when nothing).</summary>
    private static string LeftInNodes(string name, int nodes) =>
        TestBed.LeftInNodes(name, Enumerable.Range(1, nodes), "slurmd|slurmctld|slurmscriptd|munged");

    /// <summary>Takes the cluster down and checks it leaves no namespace, daemon, socket, mount or state.</summary>
    private static void DownLeavesNothing(string name, int nodes, string state)
    {
        List<int> daemons = NodePids(name, nodes, "slurmctld", "slurmd", "munged");
        Assert.True(daemons.Count == nodes + 2, $"expected slurmctld, munged and {nodes} slurmd, found pids {string.Join(' ', daemons)}");
        string socket = Path.Combine(state, "slurm", "munge", "munge.socket");
        Assert.True(File.Exists(socket), "no munge socket at " + socket);

        ProcResult down = Run(name, "down");
        Assert.True(down.ExitCode == 0, down.ToString());
        Assert.DoesNotContain(daemons, TestBed.Alive);
        Assert.False(File.Exists(socket), "the munge socket is left");
        Assert.False(Directory.Exists(state), "the state directory is left");
        Assert.DoesNotContain(state, File.ReadAllText("/proc/self/mounts"));
        ProcResult netns = Harness.Run("ip", new[] { "netns", "list" });
        Assert.DoesNotContain($"cu-{name}-", netns.Stdout);
    }

    private static string[] Lines(string path) =>
        File.ReadAllText(path).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(s => s.Trim()).ToArray();

    [Fact]
    public void SallocLaunchesAnAgentPerNodeRanksImportThroughThePrefixAndStopReachesEveryNode()
    {
        RequireSlurm();
        string name = "sl" + Guid.NewGuid().ToString("N")[..8];
        string other = "so" + Guid.NewGuid().ToString("N")[..8];
        string state = "/run/copper-cluster/" + name;
        // Outside /tmp (each node has its own): the job script and what it reports.
        string shared = Path.Combine("/var/tmp", "copper-slurm-shared-" + name);
        // Under each node's own /tmp: the prefix (a FUSE mount on every node), the agents'
        // runtime (the default, /tmp/copper-run-<uid>), cache and logs.
        string prefix = "/tmp/copper-slurm-" + name + "/copper";
        string? copied = null;
        try
        {
            string bin = Path.Combine(TestBed.VisibleInstall(name, out copied), "bin");
            Directory.CreateDirectory(shared);

            ProcResult up = Run(name, "up", "4", "--slurm");
            Assert.True(up.ExitCode == 0, up.ToString());

            ProcResult sinfo = Exec(name, 2, 30_000, "sinfo", "-h", "-N", "-o", "%N %T");
            Assert.True(sinfo.ExitCode == 0, sinfo.ToString());
            Assert.Equal(new[] { "node1 idle", "node2 idle", "node3 idle", "node4 idle" },
                sinfo.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(s => s.Trim()).Order());

            // A second Slurm cluster at the same time, same node names and addresses: each
            // sees only its own nodes, and taking it down leaves the first one working.
            ProcResult up2 = Run(other, "up", "2", "--slurm");
            Assert.True(up2.ExitCode == 0, up2.ToString());
            ProcResult sinfo2 = Exec(other, 1, 30_000, "sinfo", "-h", "-o", "%D %T %N");
            Assert.True(sinfo2.ExitCode == 0 && sinfo2.Stdout.Trim() == "2 idle node[1-2]", sinfo2.ToString());
            ProcResult srun2 = Exec(other, 2, 60_000, "timeout", "50", "srun", "-N2", "hostname");
            Assert.True(srun2.ExitCode == 0, srun2.ToString());
            Assert.Equal(new[] { "node1", "node2" }, srun2.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(s => s.Trim()).Order());
            DownLeavesNothing(other, 2, "/run/copper-cluster/" + other);
            ProcResult sinfo1 = Exec(name, 1, 30_000, "sinfo", "-h", "-o", "%D %T %N");
            Assert.True(sinfo1.ExitCode == 0 && sinfo1.Stdout.Trim() == "4 idle node[1-4]", sinfo1.ToString());

            string job = Path.Combine(shared, "job.sh");
            File.WriteAllText(job, $@"set -euo pipefail
{MpiEnv}
out={shared} bin={bin} prefix={prefix}
echo ""$SLURM_JOB_NODELIST"" >$out/nodelist
timeout 60 $bin/launch_copper.sh -v $prefix -c /tmp/copper-slurm-cache -b none -s 30 >$out/exports
. $out/exports
# One agent per node, ready, in a step of this job.
squeue -h -s -j ""$SLURM_JOB_ID"" -o '%i %N' >$out/steps
srun -N4 -n4 --overlap sh -c 'echo ""$(hostname) $(ls /tmp/copper-run-0/*/agent.ready | wc -l)""' | sort >$out/agents
# The application: 8 ranks over 4 nodes, through the prefix, then directly.
LD_PRELOAD=$COPPER_PRELOAD PYTHONPATH=$COPPER_PREFIX/usr/lib/python3/dist-packages timeout 60 \
  srun -N4 -n8 sh -c 'echo ""$(hostname) $(/usr/bin/python3 -c ""import numpy; print(numpy.__file__)"")""' | sort >$out/copper
srun -N4 -n4 --overlap sh -c 'test -d /tmp/copper-slurm-cache/mirror/usr/lib/python3/dist-packages/numpy && echo ""$(hostname) cached""' | sort >$out/cached
timeout 60 srun -N4 -n8 sh -c 'echo ""$(hostname) $(/usr/bin/python3 -c ""import numpy; print(numpy.__file__)"")""' | sort >$out/direct
# Stopped where it was launched: the root's Shutdown reaches every node.
timeout 60 $bin/stop_copper.sh -v $prefix
for i in $(seq 1 100); do
  left=$(srun -N4 -n4 --overlap sh -c 'for d in /tmp/copper-run-0/* /tmp/copper-slurm-cache; do [ -e ""$d"" ] && echo ""$(hostname):$d""; done; grep "" $prefix fuse.copper "" /proc/self/mounts | sed ""s/^/$(hostname):/""; true')
  [ -z ""$left"" ] && break
  sleep 0.2
done
echo ""$left"" >$out/left
");
            ProcResult salloc = Exec(name, 1, 240_000, "timeout", "200", "salloc", "-N4", "/bin/bash", job);
            Assert.True(salloc.ExitCode == 0, salloc.ToString());

            Assert.Equal("node[1-4]", File.ReadAllText(Path.Combine(shared, "nodelist")).Trim());
            Assert.Contains("export COPPER_MOUNT=", File.ReadAllText(Path.Combine(shared, "exports")));
            Assert.Contains(Lines(Path.Combine(shared, "steps")), s => s.EndsWith(" node[1-4]", StringComparison.Ordinal));
            Assert.Equal(new[] { "node1 1", "node2 1", "node3 1", "node4 1" }, Lines(Path.Combine(shared, "agents")));

            string[] copper = Lines(Path.Combine(shared, "copper"));
            string[] direct = Lines(Path.Combine(shared, "direct"));
            const string numpy = "/usr/lib/python3/dist-packages/numpy/__init__.py";
            Assert.Equal(new[] { 1, 1, 2, 2, 3, 3, 4, 4 }.Select(k => $"node{k} {prefix}{numpy}"), copper);
            Assert.Equal(direct, copper.Select(l => l.Replace(prefix, "", StringComparison.Ordinal)));
            Assert.Equal(new[] { "node1 cached", "node2 cached", "node3 cached", "node4 cached" }, Lines(Path.Combine(shared, "cached")));
            Assert.True(File.ReadAllText(Path.Combine(shared, "left")).Trim() == "",
                "agent files or mounts left after stop_copper.sh: " + File.ReadAllText(Path.Combine(shared, "left")));

            // Nothing of the job is left in the nodes (mpiexec, proxies, agents, steps).
            string left = LeftInNodes(name, 4);
            Assert.True(left == "", "left in the nodes: " + left);

            DownLeavesNothing(name, 4, state);
        }
        finally
        {
            Run(other, "down");
            Run(name, "down");
            if (Directory.Exists(shared))
            {
                Directory.Delete(shared, recursive: true);
            }
            if (copied != null && Directory.Exists(copied))
            {
                Directory.Delete(copied, recursive: true);
            }
        }
    }

    [Fact]
    public void EpilogCleansUpAfterAJobThatEndsWithoutStoppingItsAgents()
    {
        RequireSlurm();
        string name = "se" + Guid.NewGuid().ToString("N")[..8];
        string state = "/run/copper-cluster/" + name;
        string shared = Path.Combine("/var/tmp", "copper-slurm-shared-" + name);
        string prefix = "/tmp/copper-epi-" + name + "/copper";
        string prefix2 = "/tmp/copper-epi-" + name + "/other";
        string? copied = null;
        try
        {
            string install = TestBed.VisibleInstall(name, out copied);
            string bin = Path.Combine(install, "bin");
            string epilog = Path.Combine(install, "share", "copper", "slurm-epilog.sh");
            Assert.True(File.Exists(epilog), epilog + " is not installed");
            Directory.CreateDirectory(shared);

            ProcResult up = Run(name, "up", "4", "--slurm", "--epilog", epilog);
            Assert.True(up.ExitCode == 0, up.ToString());

            // The job leaves everything behind: the tree's agents (default runtime and cache
            // directories, a FUSE mount per node), node 2's agent killed outright (its
            // directory, cache and mount stay), and on every node an agent started outside
            // the job's processes (launch_copper.sh run by a step, detached).
            string job = Path.Combine(shared, "job.sh");
            File.WriteAllText(job, $@"set -euo pipefail
{MpiEnv}
out={shared} bin={bin}
timeout 60 $bin/launch_copper.sh -v {prefix} -b none -s 30 >$out/exports
. $out/exports
LD_PRELOAD=$COPPER_PRELOAD PYTHONPATH=$COPPER_PREFIX/usr/lib/python3/dist-packages timeout 60 srun -N4 -n4 /usr/bin/python3 -c 'import numpy'
srun -w node2 -N1 -n1 --overlap sh -c 'kill -KILL $(cat /tmp/copper-run-0/*/agent.pid)'
srun -N4 -n4 --overlap env -u SLURM_JOB_NODELIST timeout 60 $bin/launch_copper.sh -v {prefix2} -b none --no-fuse -s 30 >/dev/null
srun -N4 -n4 --overlap sh -c 'echo ""$(hostname) $(ls -d /tmp/copper-run-0/* | wc -l) $(ls -d /tmp/copper-cache-0/* | wc -l) $(grep -c "" /tmp/copper-epi-{name}/[a-z]* fuse.copper "" /proc/self/mounts)""' | sort >$out/before
");
            ProcResult salloc = Exec(name, 1, 240_000, "timeout", "200", "salloc", "-N4", "/bin/bash", job);
            Assert.True(salloc.ExitCode == 0, salloc.ToString());
            Assert.Equal(new[] { "node1 2 2 1", "node2 2 2 1", "node3 2 2 1", "node4 2 2 1" }, Lines(Path.Combine(shared, "before")));

            // The epilog runs on every node once the job's steps are gone; it is done when no
            // agent process, directory, cache or mount of the job is left on any node.
            string check = $@"for i in $(seq 1 200); do
  left=
  for k in 1 2 3 4; do
    l=$({Cluster} --name {name} exec $k sh -c 'ls -A /tmp/copper-run-0 /tmp/copper-cache-0 2>/dev/null; grep "" /tmp/copper-epi-{name}/[a-z]* fuse.copper "" /proc/self/mounts; true')
    [ -z ""$l"" ] || left=""$left node$k: $l""
  done
  [ -z ""$left"" ] && exit 0
  sleep 0.2
done
echo ""$left""; exit 1";
            ProcResult files = Harness.Bash(check, timeoutMs: 120_000);
            Assert.True(files.ExitCode == 0, "left after the job's end: " + files.Stdout);
            string left = LeftInNodes(name, 4);
            Assert.True(left == "", "left in the nodes: " + left);

            DownLeavesNothing(name, 4, state);
        }
        finally
        {
            Run(name, "down");
            if (Directory.Exists(shared))
            {
                Directory.Delete(shared, recursive: true);
            }
            if (copied != null && Directory.Exists(copied))
            {
                Directory.Delete(copied, recursive: true);
            }
        }
    }
}
