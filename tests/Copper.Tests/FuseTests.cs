// The FUSE door, used with no LD_PRELOAD at all: tools that walk trees themselves, a
// static binary, python3, the dynamic loader and the shell see through the mount what they
// see on the real directory; writes fail with EROFS; stop leaves no mount behind.
using System.Text.Json;
using Xunit;

namespace Copper.Tests;

public class FuseTests
{
    private static Dictionary<string, string?> NoShim => new() { ["LD_PRELOAD"] = null, ["LD_AUDIT"] = null };

    private static bool IsMounted(string path) =>
        File.ReadAllLines("/proc/mounts").Any(l => l.Split(' ')[1] == path);

    [Fact]
    public void TreeToolsSeeTheSameTreeThroughTheMount()
    {
        using var agent = new AgentProcess("fusetree", null, true);
        string data = Harness.TempDir("fusedata");
        try
        {
            Harness.Run("cp", ["-a", CopperJob.Packages + "/numpy", data]);
            string script = """
                set -e
                cd "$1"
                ls -lR --time-style=full-iso . | grep -v '^total '
                find . -printf '%p %y %m %s %n %TY-%Tm-%Td %l\n' | sort
                du -s .
                tar cf - --sort=name --owner=0 --group=0 . | md5sum
                find . -type f | sort | xargs cat | md5sum
                """;
            ProcResult direct = Harness.Run("/bin/bash", ["-c", script, "walk", data], NoShim);
            ProcResult viaMount = Harness.Run("/bin/bash", ["-c", script, "walk", agent.Prefix + data], NoShim);
            Assert.True(direct.ExitCode == 0, direct.ToString());
            Assert.True(viaMount.ExitCode == 0, viaMount.ToString());
            Assert.True(direct.Stdout.Length > 10_000, "the walk printed too little to compare");
            Assert.Equal(direct.Stdout, viaMount.Stdout);
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public void PythonLoaderAndStaticBinaryWorkThroughTheMount()
    {
        using var agent = new AgentProcess("fuseprog", null, true);
        string dir = Harness.TempDir("fuseprog");
        try
        {
            // python3 with PYTHONPATH on the mount imports numpy (C extensions included).
            var env = NoShim;
            env["PYTHONPATH"] = agent.Prefix + CopperJob.Packages;
            ProcResult direct = Harness.Run(Harness.Python, ["-c", CopperJob.NumpyCode]);
            ProcResult py = Harness.Run(Harness.Python, ["-c", CopperJob.NumpyCode], env);
            Assert.True(py.ExitCode == 0, py.ToString());
            Assert.Equal(direct.Stdout.Replace(CopperJob.Packages, agent.Prefix + CopperJob.Packages, StringComparison.Ordinal), py.Stdout);

            // A program whose libraries come from a Copper LD_LIBRARY_PATH (and $ORIGIN).
            Harness.CompileC(Harness.Program("libbar.c"), Path.Combine(dir, "libbar.so"), "-shared", "-fPIC");
            Harness.CompileC(Harness.Program("libfoo.c"), Path.Combine(dir, "libfoo.so"), "-shared", "-fPIC", "-L" + dir, "-lbar", "-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags");
            string app = Harness.CompileC(Harness.Program("app.c"), Path.Combine(agent.Root, "app"), "-L" + dir, "-lfoo");
            var ld = NoShim;
            ld["LD_LIBRARY_PATH"] = agent.Prefix + dir;
            ProcResult r = Harness.Run(app, [], ld);
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Contains("value 43", r.Stdout);
            Assert.Contains($"mapped {agent.Prefix}{dir}/libfoo.so", r.Stdout);

            // A statically linked program reads an input file through the mount.
            string input = Path.Combine(dir, "input.dat");
            File.WriteAllBytes(input, System.Security.Cryptography.RandomNumberGenerator.GetBytes(700_000));
            string stat = Harness.CompileC(Harness.Program("readfile.c"), Path.Combine(agent.Root, "readfile"), "-static");
            ProcResult s = Harness.Bash($"{stat} {agent.Prefix}{input} | md5sum; md5sum < {input}");
            string[] sums = s.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(s.ExitCode == 0 && sums.Length == 2, s.ToString());
            Assert.Equal(sums[1], sums[0]);

            // A shell can cd into the mount.
            ProcResult cd = Harness.Bash($"cd {agent.Prefix}{dir} && ls", NoShim);
            Assert.Contains("libfoo.so", cd.Stdout);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ErrnoDifferentialThroughTheMount()
    {
        using var tree = new TestTree();
        // The agent mounts as root (unprivileged FUSE needs /dev/fuse access this machine may
        // not give); the probe runs as nobody, so the kernel checks the real modes.
        using var agent = new AgentProcess("fuseerrno", null, true);
        string probe = Harness.CompileC(Harness.Program("probe.c"), Path.Combine(agent.Root, "probe"));
        Harness.Run("chmod", ["0755", probe]);
        string[] real = TestTree.Cases.Select(c => Path.Combine(tree.Dir, c)).ToArray();
        string[] mounted = real.Select(p => agent.Prefix + p).ToArray();
        string[] asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups", probe];
        ProcResult direct = Harness.Run("setpriv", asNobody.Concat(real), new Dictionary<string, string?>());
        ProcResult viaMount = Harness.Run("setpriv", asNobody.Concat(mounted), NoShim);
        Assert.True(direct.ExitCode == 0, direct.ToString());
        Assert.True(viaMount.ExitCode == 0, viaMount.ToString());
        Assert.Contains("open -1 EACCES", direct.Stdout);
        Assert.Equal(direct.Stdout, viaMount.Stdout);
    }

    [Fact]
    public void WritesFailReadOnlyAndChangeNothing()
    {
        using var tree = new TestTree();
        using var agent = new AgentProcess("fuserofs", null, true);
        string m = agent.Prefix + tree.Dir;
        string before = Harness.Bash($"cd {tree.Dir} && find . -printf '%p %m %s %T@\\n' | sort").Stdout;
        string[] commands =
        [
            $"touch {m}/new", $"touch {m}/data.txt", $"mkdir {m}/newdir", $"rm {m}/data.txt", $"mv {m}/data.txt {m}/moved",
            $"ln -s data.txt {m}/newlink", $"chmod 600 {m}/data.txt", $"truncate -s 0 {m}/data.txt", $"echo x > {m}/data.txt",
            $"echo x >> {m}/data.txt", $"rmdir {m}/sub",
        ];
        foreach (string c in commands)
        {
            ProcResult r = Harness.Bash(c, NoShim);
            Assert.True(r.ExitCode != 0, $"'{c}' succeeded");
            Assert.Contains("Read-only file system", r.Stdout + r.Stderr);
        }
        Assert.Equal(before, Harness.Bash($"cd {tree.Dir} && find . -printf '%p %m %s %T@\\n' | sort").Stdout);
    }

    [Fact]
    public void SimulatedNodesMountOneTreeAndKilledAgentsLeaveNoMount()
    {
        using var job = new CopperJob(3, "fusenodes");
        job.LaunchOrFail();
        string[] mounts = [job.Prefix, job.Prefix + ".n1", job.Prefix + ".n2"];
        foreach (string mp in mounts)
        {
            Assert.True(IsMounted(mp), $"{mp} is not mounted");
        }
        string expected = Harness.Run(Harness.Python, ["-c", CopperJob.NumpyCode]).Stdout;
        for (int k = 0; k < 3; k++)
        {
            var env = NoShim;
            env["PYTHONPATH"] = mounts[k] + CopperJob.Packages;
            ProcResult r = Harness.Run(Harness.Python, ["-c", CopperJob.NumpyCode], env);
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal(expected.Replace(CopperJob.Packages, mounts[k] + CopperJob.Packages, StringComparison.Ordinal), r.Stdout);
        }
        Dictionary<int, JsonElement> stats = job.Stats();
        Assert.True(stats[0].GetProperty("pfs_ops").GetInt64() > 0);
        for (int k = 1; k < 3; k++)
        {
            Assert.Equal(0, stats[k].GetProperty("pfs_ops").GetInt64());
            Assert.True(stats[k].GetProperty("fuse_requests").GetProperty("lookup").GetInt64() > 0);
        }
        // Every agent killed: the mounts are dead; stop_copper.sh removes them all.
        foreach (int k in new[] { 0, 1, 2 })
        {
            Harness.Run("kill", ["-KILL", job.AgentPid(k).ToString()]);
        }
        Thread.Sleep(300);
        ProcResult stop = job.Stop();
        Assert.True(stop.ExitCode == 0, stop.ToString());
        foreach (string mp in mounts)
        {
            Assert.False(IsMounted(mp), $"{mp} is still mounted");
        }
    }

    [Fact]
    public void AListingTheTreeCannotCarryIsTheRealListingThroughAChildsMount()
    {
        // A directory whose listing is larger than one reply: the parent answers "too long"
        // (Copper's own status, not an errno), and the child's mount lists the real directory,
        // as the shim does, instead of failing with EIO.
        using var job = new CopperJob(2, "fusebiglist");
        string dir = Path.Combine(job.Root, "big");
        Directory.CreateDirectory(dir);
        string stem = new('x', 240);
        int count = (int)(Copper.Interop.Protocol.MaxPayload / (16 + stem.Length + 6)) + 1000;
        for (int i = 0; i < count; i++)
        {
            File.Create(Path.Combine(dir, $"{stem}{i:D6}")).Dispose();
        }
        job.LaunchOrFail();
        const string List = "ls -f \"$1\" | LC_ALL=C sort | md5sum; ls -f \"$1\" | wc -l";
        ProcResult direct = Harness.Run("/bin/bash", ["-c", List, "list", dir], NoShim);
        ProcResult viaChild = Harness.Run("/bin/bash", ["-c", "set -o pipefail; " + List, "list", job.Prefix + ".n1" + dir], NoShim);
        Assert.True(direct.ExitCode == 0, direct.ToString());
        Assert.True(viaChild.ExitCode == 0, viaChild.ToString());
        Assert.Contains((count + 2).ToString(), direct.Stdout);
        Assert.Equal(direct.Stdout, viaChild.Stdout);
    }

    /// <summary>A passthrough of the real directory <paramref name="root"/>.</summary>
    private sealed class Passthrough(string root) : Copper.Agent.IFuseBackend
    {
        private string Real(string path) => path == "/" ? root : root + path;

        public string StatfsPath => root;

        public Copper.Agent.StatAnswer Lstat(string path) => Copper.Agent.RealFileSystem.Stat(Real(path), follow: false);

        public Copper.Agent.LinkAnswer ReadLink(string path) => Copper.Agent.RealFileSystem.ReadLink(Real(path));

        public int Access(string path, int mode) => Copper.Agent.RealFileSystem.Access(Real(path), mode);

        public Copper.Agent.DirAnswer List(string path) => Copper.Agent.RealFileSystem.List(Real(path));

        public Copper.Agent.OpenAnswer Open(string path)
        {
            Copper.Agent.StatAnswer s = Copper.Agent.RealFileSystem.Stat(Real(path), follow: true);
            Copper.Interop.OpenKind kind = (s.St.Mode & 0xF000) == 0x4000 ? Copper.Interop.OpenKind.Dir : Copper.Interop.OpenKind.File;
            return new Copper.Agent.OpenAnswer(s.Status, s.Status == 0 ? kind : 0, s.St, Copper.Agent.PathBytes.Encode(Real(path)));
        }

        public int PeekLstat(string path, byte direntType, out Copper.Interop.CopperStat st)
        {
            st = default;
            return Copper.Interop.Protocol.StatusFallback;
        }
    }

    [Fact]
    public void TwoMountsInOneProcessServeEachItsOwn()
    {
        // Each mount's state comes to its callbacks with the request (libfuse's userdata), so
        // one process may serve several, each with its own answers and counts.
        string[] dirs = [Harness.TempDir("fusetwo-a"), Harness.TempDir("fusetwo-b"), Harness.TempDir("fusetwo-ma"), Harness.TempDir("fusetwo-mb")];
        File.WriteAllText(Path.Combine(dirs[0], "which"), "a\n");
        File.WriteAllText(Path.Combine(dirs[1], "which"), "b\n");
        Copper.Agent.FuseMount? one = null, two = null;
        try
        {
            var log = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
            one = Copper.Agent.FuseMount.Start(new Passthrough(dirs[0]), log, dirs[2], 0, kernelCaching: false);
            two = Copper.Agent.FuseMount.Start(new Passthrough(dirs[1]), log, dirs[3], 0, kernelCaching: false);
            ProcResult r = Harness.Bash($"cat {dirs[2]}/which {dirs[3]}/which {dirs[2]}/which; ls {dirs[3]}", NoShim);
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal("a\nb\na\nwhich\n", r.Stdout);
            static JsonElement Requests(Copper.Agent.FuseMount m)
            {
                using var ms = new MemoryStream();
                using (var w = new Utf8JsonWriter(ms))
                {
                    w.WriteStartObject();
                    m.DescribeTo(w);
                    w.WriteEndObject();
                }
                return JsonDocument.Parse(ms.ToArray()).RootElement.GetProperty("fuse_requests").Clone();
            }
            Assert.Equal(2, Requests(one).GetProperty("open").GetInt64());
            Assert.Equal(1, Requests(two).GetProperty("open").GetInt64());
            Assert.Equal(0, Requests(one).GetProperty("opendir").GetInt64());
            Assert.True(Requests(two).GetProperty("opendir").GetInt64() >= 1);
        }
        finally
        {
            two?.Dispose();
            one?.Dispose();
            foreach (string d in dirs)
            {
                Directory.Delete(d, recursive: true);
            }
        }
    }

    private static JsonElement Stats(AgentProcess agent)
    {
        using var s = agent.Connect();
        (_, byte[] payload) = AgentProcess.Request(s, Copper.Interop.Op.Stats, []);
        using JsonDocument doc = JsonDocument.Parse(payload.AsMemory(8));
        return doc.RootElement.Clone();
    }

    [Fact]
    public void OneCacheTwoDoors()
    {
        using var tree = new TestTree();
        using var agent = new AgentProcess("fusedoors", null, true);
        string file = Path.Combine(tree.Dir, "sub", "inner.txt");
        string want = File.ReadAllText(file);
        // Through the shim first: the agent reads the file system once ...
        ProcResult viaShim = Harness.Run("cat", [agent.Prefix + file], agent.ClientEnv(audit: false));
        Assert.Equal(want, viaShim.Stdout);
        static (long Open, long Read) FileOps(JsonElement e) =>
            (e.GetProperty("pfs_ops_by_kind").GetProperty("open").GetInt64(), e.GetProperty("pfs_ops_by_kind").GetProperty("read").GetInt64());
        (long Open, long Read) afterShim = FileOps(Stats(agent));
        Assert.Equal(1, afterShim.Open);
        // ... then through the mount (no shim): the same materialized copy answers; the file is
        // not opened or read again (the kernel's lookups of the parent directories are new
        // metadata questions, which the shim never asked).
        ProcResult viaMount = Harness.Run("cat", [agent.Prefix + file], NoShim);
        Assert.Equal(want, viaMount.Stdout);
        JsonElement after = Stats(agent);
        Assert.Equal(afterShim, FileOps(after));
        Assert.True(after.GetProperty("fuse_requests").GetProperty("open").GetInt64() >= 1, "the mount was not used");
    }
}
