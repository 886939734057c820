// Issue 9, items 4, 7, 9, 10 and 11: the same answers as a read-only mount of the file system, in
// the corners: a path through Copper's own prefix, mutations (the path's own error before
// EROFS), and a Copper path used from a signal handler that interrupted the shim. Items 6
// and 8 (trailing slashes, names longer than NAME_MAX) are cases of the errno differentials
// in ShimTests and FuseTests (TestTree.Cases).
using Xunit;

namespace Copper.Tests;

public class SemanticsTests
{
    private static readonly Dictionary<string, string?> NoShim = new() { ["LD_PRELOAD"] = null, ["LD_AUDIT"] = null };

    [Fact]
    public void StatFromASignalHandlerThatInterruptedTheShimNamesTheRealFile()
    {
        using var agent = new AgentProcess("sigstat");
        string prog = Harness.CompileC(Harness.Program("sigstat.c"), Path.Combine(agent.Root, "sigstat"));
        ProcResult r = Harness.Run(prog, new[] { agent.Prefix + "/etc/hostname", agent.Prefix, "1.5" }, agent.ClientEnv(audit: false));
        Assert.True(r.ExitCode == 0, r.ToString());
        string[] counts = r.Stdout.Trim().Split(' ');
        int handled = int.Parse(counts[0]), failed = int.Parse(counts[1]);
        Assert.True(handled >= 200, $"only {handled} signals arrived");
        Assert.True(failed == 0, $"{failed} of {handled} stats from the signal handler failed");
    }

    [Fact]
    public void FileThatChangedAfterItsStatKeepsSizeAndBytesFromOneVersion()
    {
        using var agent = new AgentProcess("version");
        string file = Path.Combine(agent.Root, "changing.txt");
        File.WriteAllText(file, "old\n");
        string script = @"
import os
P, F = os.environ['P'], os.environ['F']
before = os.stat(P + F).st_size
with open(F, 'w') as f:
    f.write('the new version, 27 bytes.\n')
data = open(P + F, 'rb').read()
fd = os.open(P + F, os.O_RDONLY)
fsize = os.fstat(fd).st_size
os.close(fd)
print(before, len(data), fsize, os.stat(P + F).st_size, os.lstat(P + F).st_size)
";
        var env = agent.ClientEnv(audit: false);
        env["P"] = agent.Prefix;
        env["F"] = file;
        ProcResult r = Harness.Run(Harness.Python, new[] { "-c", script }, env);
        Assert.True(r.ExitCode == 0, r.ToString());
        // The stat before the change saw the old version; once the bytes are read, every
        // answer about the path is the new version's.
        Assert.Equal("4 27 27 27 27", r.Stdout.Trim());
        ProcResult later = Harness.Run(Harness.Python, new[] { "-c", "import os; print(os.stat(os.environ['P'] + os.environ['F']).st_size)" }, env);
        Assert.Equal("27", later.Stdout.Trim());
    }

    [Fact]
    public void FileThatChangedAfterItsStatReadsWholeThroughTheMount()
    {
        using var agent = new AgentProcess("versionmount", null, true);
        string file = Path.Combine(agent.Root, "changing.txt");
        File.WriteAllText(file, "old\n");
        // The kernel caches the first size it is told; the bytes served are a later version's.
        string script = @"
import os
M, F = os.environ['M'], os.environ['F']
before = os.stat(M + F).st_size
with open(F, 'w') as f:
    f.write('the new version, 27 bytes.\n')
data = open(M + F, 'rb').read()
print(before, len(data), data == open(F, 'rb').read(), os.stat(M + F).st_size)
";
        ProcResult r = Harness.Run(Harness.Python, new[] { "-c", script }, new Dictionary<string, string?>(NoShim) { ["M"] = agent.Prefix, ["F"] = file });
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("4 27 True 27", r.Stdout.Trim());
    }

    [Fact]
    public void NamesThatAreNotUtf8AreServedByteForByteThroughTheMountAndTheShim()
    {
        using var agent = new AgentProcess("bytes", null, true);
        string dir = Harness.TempDir("latin1");
        try
        {
            // Two Latin-1 names that differ in one byte (a lossy re-encoding would merge them),
            // and a directory whose name is not UTF-8 either.
            ProcResult made = Harness.Bash($"cd {dir} && printf 'e acute\\n' > $'caf\\xe9.txt' && printf 'e grave\\n' > $'caf\\xe8.txt' && mkdir $'d\\xff' && printf 'inside\\n' > $'d\\xff/x'");
            Assert.True(made.ExitCode == 0, made.ToString());
            const string Script = "D=$1; cat \"$D/caf\"$'\\xe9'.txt \"$D/caf\"$'\\xe8'.txt \"$D/d\"$'\\xff'/x; (ls \"$D\"; ls \"$D/d\"$'\\xff') | od -An -c; stat -c '%s %F' \"$D/d\"$'\\xff'/x";
            ProcResult direct = Harness.Run("bash", new[] { "-c", Script, "probe", dir }, NoShim);
            ProcResult viaMount = Harness.Run("bash", new[] { "-c", Script, "probe", agent.Prefix + dir }, NoShim);
            ProcResult viaShim = Harness.Run("bash", new[] { "-c", Script, "probe", agent.Prefix + dir }, agent.ClientEnv());
            Assert.True(direct.ExitCode == 0, direct.ToString());
            Assert.StartsWith("e acute\ne grave\ninside\n", direct.Stdout);
            Assert.True(viaMount.ExitCode == 0, viaMount.ToString());
            Assert.Equal(direct.Stdout, viaMount.Stdout);
            Assert.True(viaShim.ExitCode == 0, viaShim.ToString());
            Assert.Equal(direct.Stdout, viaShim.Stdout);
            // The agent's stop removes its cache, names that are not UTF-8 included.
            string cache = Path.Combine(agent.Root, "cache");
            Assert.True(Directory.Exists(cache));
            agent.Stop();
            Assert.False(Directory.Exists(cache), "the agent left its cache behind");
        }
        finally
        {
            Harness.Run("rm", new[] { "-rf", dir }); // .NET cannot name what is not UTF-8
        }
    }

    [Fact]
    public void PathThroughItsOwnPrefixResolvesWithoutReenteringTheMount()
    {
        using var agent = new AgentProcess("selfprefix", null, true);
        string nested = string.Concat(Enumerable.Repeat(agent.Prefix, 11)) + "/etc/hostname";
        // A caller stuck in the mount cannot be killed; only the agent's death releases it.
        string Within20s(string tool, string[] args, IDictionary<string, string?> env)
        {
            var run = Task.Run(() => Harness.Run(tool, args, env, timeoutMs: 600_000));
            if (!run.Wait(20_000))
            {
                agent.Kill();
                run.Wait(30_000);
                Assert.Fail($"{tool} {string.Join(' ', args)} hung in the mount");
            }
            return run.Result.Stdout;
        }
        string Stat(string path, IDictionary<string, string?> env) => Within20s("stat", ["-c", "%s %a %F", path], env);
        string direct = Stat("/etc/hostname", NoShim);
        Assert.NotEqual("", direct);
        Assert.Equal(direct, Stat(nested, NoShim));
        Assert.Equal(direct, Stat(nested, agent.ClientEnv()));
        Assert.Equal(File.ReadAllText("/etc/hostname"), Within20s("cat", [nested], NoShim));
    }

    [Fact]
    public void MutationsFailLikeOnAReadOnlyMountThroughTheShimAndTheMount()
    {
        using var tree = new TestTree();
        // The reference: the same tree on a file system mounted read-only (super block ro,
        // like a read-only PFS client or Copper's own mount).
        string rofs = Harness.TempDir("rofs");
        Assert.Equal(0, Harness.Run("mount", new[] { "-t", "tmpfs", "-o", "mode=0755", "tmpfs", rofs }).ExitCode);
        try
        {
            Harness.Run("cp", new[] { "-a", tree.Dir + "/.", rofs });
            Assert.Equal(0, Harness.Run("mount", new[] { "-o", "remount,ro", rofs }).ExitCode);
            string[] asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];

            using var shimAgent = new AgentProcess("mutshim", uid: 65534);
            string probe = Harness.CompileC(Harness.Program("mutate_errno.c"), Path.Combine(shimAgent.Root, "mutate_errno"));
            Harness.Run("chmod", new[] { "0755", probe });
            string[] Cases(string root) => TestTree.MutationCases.Select(c => root + Path.Combine(tree.Dir, c)[tree.Dir.Length..]).ToArray();

            ProcResult reference = Harness.Run("setpriv", asNobody.Append(probe).Concat(Cases(rofs)), new Dictionary<string, string?>());
            Assert.True(reference.ExitCode == 0, reference.ToString());
            Assert.Contains("mkdir -1 EEXIST", reference.Stdout);
            Assert.Contains("unlink -1 EROFS", reference.Stdout);
            Assert.Contains("chmod -1 ENOENT", reference.Stdout);

            ProcResult viaShim = Harness.Run("setpriv", asNobody.Append(probe).Concat(Cases(shimAgent.Prefix + tree.Dir)), shimAgent.ClientEnv());
            Assert.True(viaShim.ExitCode == 0, viaShim.ToString());
            Assert.Equal(reference.Stdout, viaShim.Stdout);

            using var mountAgent = new AgentProcess("mutmount", null, true);
            ProcResult viaMount = Harness.Run("setpriv", asNobody.Append(probe).Concat(Cases(mountAgent.Prefix + tree.Dir)), NoShim);
            Assert.True(viaMount.ExitCode == 0, viaMount.ToString());
            Assert.Equal(reference.Stdout, viaMount.Stdout);
        }
        finally
        {
            Harness.Run("umount", new[] { "-l", rofs });
            Directory.Delete(rofs, recursive: true);
        }
    }
}
