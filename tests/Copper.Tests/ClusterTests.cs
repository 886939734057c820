// The test bed (out/bin/cluster, from tools/cluster/cluster): three nodes on this machine, each
// with its own hostname, address and /tmp; names resolve and TCP crosses nodes; the rest of the
// file system is shared; down leaves no namespace, process or state behind. With --ssh, ssh
// between nodes by key carries Hydra's ssh launcher and a Copper job over two nodes.
using Xunit;

namespace Copper.Tests;

public class ClusterTests
{
    private static string Cluster => TestBed.Cluster;

    private static ProcResult Run(string name, params string[] args) =>
        Harness.Run(Cluster, new[] { "--name", name }.Concat(args), timeoutMs: 60_000);

    private static ProcResult Exec(string name, int node, params string[] cmd) =>
        Run(name, new[] { "exec", node.ToString() }.Concat(cmd).ToArray());

    [Fact]
    public void ThreeNodesResolveConnectKeepTheirOwnTmpAndLeaveNothing()
    {
        string name = "ct" + Guid.NewGuid().ToString("N")[..8];
        string state = "/run/copper-cluster/" + name;
        // Outside /tmp (each node has its own), so every node and the root see the same directory.
        // Outside /tmp (each node has its own) whatever the checkout's place, which may be under /tmp.
        string shared = Path.Combine("/var/tmp", "copper-cluster-shared-" + name);
        string marker = "copper-cluster-" + name;
        var holders = new List<int>();
        try
        {
            ProcResult up = Run(name, "up", "3");
            Assert.True(up.ExitCode == 0, up.ToString());
            for (int k = 1; k <= 3; k++)
            {
                holders.Add(int.Parse(File.ReadAllText(Path.Combine(state, $"node{k}.pid")).Trim()));
            }

            ProcResult again = Run(name, "up", "2");
            Assert.True(again.ExitCode == 1 && again.Stderr.Contains("already up"), again.ToString());
            Assert.Equal(2, Run(name, "exec", "9", "true").ExitCode);

            ProcResult list = Run(name, "list");
            Assert.True(list.ExitCode == 0, list.ToString());
            Assert.Equal(new[] { "1 node1 10.211.0.1", "2 node2 10.211.0.2", "3 node3 10.211.0.3" },
                list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));

            // Own hostnames; the root's is unchanged.
            for (int k = 1; k <= 3; k++)
            {
                ProcResult h = Exec(name, k, "cat", "/proc/sys/kernel/hostname");
                Assert.True(h.ExitCode == 0, h.ToString());
                Assert.Equal($"node{k}", h.Stdout.Trim());
            }
            Assert.DoesNotMatch("^node[0-9]+$", File.ReadAllText("/proc/sys/kernel/hostname").Trim());

            // Every node name resolves in every node.
            for (int k = 1; k <= 3; k++)
            {
                for (int j = 1; j <= 3; j++)
                {
                    ProcResult g = Exec(name, k, "getent", "hosts", $"node{j}");
                    Assert.True(g.ExitCode == 0, g.ToString());
                    Assert.StartsWith($"10.211.0.{j} ", g.Stdout.Trim());
                }
            }

            // The exit status passes through.
            Assert.Equal(7, Exec(name, 3, "sh", "-c", "exit 7").ExitCode);

            // TCP from node 1 to node 2, by name: a listener in node 2, a client in node 1 that
            // retries until the listener is there.
            string listener = "import socket\n"
                + "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                + "s.bind(('0.0.0.0', 5555)); s.listen(1); s.settimeout(30)\n"
                + "c, a = s.accept(); c.settimeout(30)\n"
                + "print(a[0], socket.gethostname(), c.makefile().readline().strip(), flush=True)\n";
            string script = $@"set -u
{Cluster} --name {name} exec 2 timeout 40 {Harness.Python} -c ""$1"" > ""$2"" &
l=$!
ok=1
for i in $(seq 1 150); do
  if {Cluster} --name {name} exec 1 timeout 5 bash -c 'echo ""hello from $(hostname)"" > /dev/tcp/node2/5555' 2>/dev/null; then ok=0; break; fi
  sleep 0.2
done
wait $l; rc=$?
cat ""$2""
exit $((ok + rc))
";
            Directory.CreateDirectory(shared);
            ProcResult tcp = Harness.Run("/bin/bash", new[] { "-c", script, "tcp", listener, Path.Combine(shared, "listener.out") }, timeoutMs: 90_000);
            Assert.True(tcp.ExitCode == 0, tcp.ToString());
            Assert.Equal("10.211.0.1 node2 hello from node1", tcp.Stdout.Trim());

            // Each node's /tmp is its own; the rest of the file system is shared.
            Assert.Equal(0, Exec(name, 1, "sh", "-c", $"echo one > /tmp/{marker} && echo one > {shared}/from-node1").ExitCode);
            Assert.Equal(0, Exec(name, 1, "test", "-f", $"/tmp/{marker}").ExitCode);
            Assert.Equal(1, Exec(name, 2, "test", "-e", $"/tmp/{marker}").ExitCode);
            Assert.False(File.Exists("/tmp/" + marker), "node 1's /tmp leaked into the root's");
            Assert.Equal("one", File.ReadAllText(Path.Combine(shared, "from-node1")).Trim());
            ProcResult seen = Exec(name, 3, "cat", $"{shared}/from-node1");
            Assert.True(seen.ExitCode == 0 && seen.Stdout.Trim() == "one", seen.ToString());

            // A process left running in a node is stopped by down.
            ProcResult bg = Exec(name, 3, "sh", "-c", "sleep 600 </dev/null >/dev/null 2>&1 & echo $!");
            Assert.True(bg.ExitCode == 0, bg.ToString());
            holders.Add(int.Parse(bg.Stdout.Trim()));

            ProcResult down = Run(name, "down");
            Assert.True(down.ExitCode == 0, down.ToString());
            ProcResult netns = Harness.Run("ip", new[] { "netns", "list" });
            Assert.DoesNotContain($"cu-{name}-", netns.Stdout);
            Assert.False(Directory.Exists(state), "the state directory is left");
            Assert.DoesNotContain(holders, TestBed.Alive);
            Assert.Equal(0, Run(name, "down").ExitCode);
            ProcResult status = Run(name, "status");
            Assert.True(status.ExitCode == 1, status.ToString());
        }
        finally
        {
            Run(name, "down");
            if (Directory.Exists(shared))
            {
                Directory.Delete(shared, recursive: true);
            }
        }
    }

    [Fact]
    public void SshBetweenNodesCarriesHydraAndACopperJob()
    {
        string name = "cs" + Guid.NewGuid().ToString("N")[..8];
        string state = "/run/copper-cluster/" + name;
        // Outside /tmp (each node has its own): the hostfile, the exports and the scripts.
        string shared = Path.Combine("/var/tmp", "copper-cluster-shared-" + name);
        string? copied = null;
        // Under each node's own /tmp: the prefix path, the agents' runtime, cache and logs.
        string prefix = "/tmp/copper-ssh-" + name + "/copper";
        const string mpiEnv = "export UCX_TLS=tcp,self UCX_NET_DEVICES=eth0 COPPER_RUNTIME_DIR=/tmp/copper-ssh-run";
        try
        {
            string bin = Path.Combine(TestBed.VisibleInstall(name, out copied), "bin");
            Directory.CreateDirectory(shared);
            string hosts = Path.Combine(shared, "hosts");
            File.WriteAllText(hosts, "node1\nnode2\n");

            ProcResult up = Run(name, "up", "2", "--ssh");
            Assert.True(up.ExitCode == 0, up.ToString());

            // ssh by name from node 1 to node 2, without a prompt.
            ProcResult ssh = Exec(name, 1, "timeout", "30", "ssh", "node2", "hostname");
            Assert.True(ssh.ExitCode == 0, ssh.ToString());
            Assert.Equal("node2", ssh.Stdout.Trim());

            // Hydra's ssh launcher, unchanged: one rank on each node.
            ProcResult mpi = Exec(name, 1, "/bin/bash", "-c",
                $"{mpiEnv}; timeout 40 mpiexec.mpich -launcher ssh -f {hosts} -n 2 -ppn 1 hostname");
            Assert.True(mpi.ExitCode == 0, mpi.ToString());
            Assert.Equal(new[] { "node1", "node2" },
                mpi.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(s => s.Trim()).Order());

            // A Copper job over both nodes, launched from node 1 (mpiexec reaches node 2 by ssh);
            // numpy imported on node 2 through the prefix with the shim; stopped on each node.
            string exports = Path.Combine(shared, "exports");
            ProcResult launch = Exec(name, 1, "/bin/bash", "-c",
                $"set -e; {mpiEnv}; timeout 60 {bin}/launch_copper.sh -H {hosts} -v {prefix} -c /tmp/copper-ssh-cache -b none --no-fuse -s 30 > {exports}");
            Assert.True(launch.ExitCode == 0, launch.ToString());
            ProcResult import = Exec(name, 2, "/bin/bash", "-c",
                $"set -e; {mpiEnv}; . {exports}; "
                + "LD_PRELOAD=$COPPER_PRELOAD PYTHONPATH=$COPPER_PREFIX/usr/lib/python3/dist-packages timeout 60 /usr/bin/python3 -c 'import numpy; print(numpy.__file__)'; "
                + "test -d /tmp/copper-ssh-cache/mirror/usr/lib/python3/dist-packages/numpy");
            Assert.True(import.ExitCode == 0, import.ToString());
            Assert.Equal(prefix + "/usr/lib/python3/dist-packages/numpy/__init__.py", import.Stdout.Trim());
            for (int k = 2; k >= 1; k--)
            {
                ProcResult stop = Exec(name, k, "/bin/bash", "-c", $"{mpiEnv}; timeout 60 {bin}/stop_copper.sh -v {prefix}");
                Assert.True(stop.ExitCode == 0, stop.ToString());
            }

            // Nothing of the job is left: in each node only the holder and the sshd remain
            // (a killed process may stay a zombie for a moment; it holds nothing).
            string left = TestBed.LeftInNodes(name, new[] { 1, 2 }, "sshd");
            Assert.True(left == "", left);
            ProcResult agents = Harness.Run("pgrep", new[] { "-af", prefix });
            Assert.True(agents.ExitCode != 0, "a process of the job is left: " + agents.Stdout);
            for (int k = 1; k <= 2; k++)
            {
                ProcResult rest = Exec(name, k, "/bin/bash", "-c", "ls -A /tmp/copper-ssh-run /tmp/copper-ssh-cache 2>/dev/null || true");
                Assert.True(rest.ExitCode == 0 && rest.Stdout.Trim() == "", $"node{k} keeps agent files: " + rest);
            }

            ProcResult down = Run(name, "down");
            Assert.True(down.ExitCode == 0, down.ToString());
            Assert.False(Directory.Exists(state), "the state directory (with the keys) is left");
            ProcResult netns = Harness.Run("ip", new[] { "netns", "list" });
            Assert.DoesNotContain($"cu-{name}-", netns.Stdout);
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
