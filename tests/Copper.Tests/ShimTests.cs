// The preload shim and the audit module inside real programs (python3 with numpy, C
// programs, coreutils), differential against the same programs on the real paths.
using System.Security.Cryptography;
using Xunit;

namespace Copper.Tests;

public class ShimTests
{
    private const string DistPackages = "/usr/lib/python3/dist-packages";
    private const string NumpyScript = "import numpy, sys; print(numpy.__file__); a = numpy.arange(12.0).reshape(3, 4); print(a.sum(), numpy.linalg.norm(a), numpy.fft.fft(numpy.ones(4)).real.tolist())";

    private static string Tail(string stdout) => string.Join('\n', stdout.Split('\n').Skip(1));

    [Fact]
    public void NumpyImportsThroughCopperWithoutTouchingTheRealDirectory()
    {
        using var agent = new AgentProcess("numpy");
        ProcResult direct = Harness.Run(Harness.Python, new[] { "-c", NumpyScript });
        Assert.True(direct.ExitCode == 0, direct.ToString());

        var env = agent.ClientEnv();
        env["PYTHONPATH"] = agent.Prefix + DistPackages;
        env["PYTHONDONTWRITEBYTECODE"] = "1";
        string trace = Path.Combine(agent.Root, "strace.txt");
        ProcResult viaCopper = Harness.Run("strace", new[] { "-f", "-qq", "-o", trace, "-e", "trace=%file,%desc", Harness.Python, "-c", NumpyScript }, env);
        Assert.True(viaCopper.ExitCode == 0, viaCopper.ToString());
        Assert.StartsWith(agent.Prefix + DistPackages + "/numpy/", viaCopper.Stdout);
        Assert.Equal(Tail(direct.Stdout), Tail(viaCopper.Stdout));

        string[] realAccess = File.ReadAllLines(trace).Where(l => l.Contains("\"" + DistPackages + "/numpy")).ToArray();
        Assert.True(realAccess.Length == 0, "the application touched the real numpy directory:\n" + string.Join('\n', realAccess.Take(20)));
        Assert.Contains(File.ReadAllLines(trace), l => l.Contains(agent.MirrorRoot + DistPackages + "/numpy/core/_multiarray_umath"));
    }

    [Fact]
    public void LibraryFromCopperLibraryPathLoadsWithItsOriginNeighbour()
    {
        using var agent = new AgentProcess("ldpath");
        string dir = Harness.TempDir("libs");
        try
        {
            Harness.CompileC(Harness.Program("libbar.c"), Path.Combine(dir, "libbar.so"), "-shared", "-fPIC");
            Harness.CompileC(Harness.Program("libfoo.c"), Path.Combine(dir, "libfoo.so"), "-shared", "-fPIC", "-L" + dir, "-lbar", "-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags");
            string app = Harness.CompileC(Harness.Program("app.c"), Path.Combine(agent.Root, "app"), "-L" + dir, "-lfoo");

            var env = agent.ClientEnv();
            env["LD_LIBRARY_PATH"] = agent.Prefix + dir;
            ProcResult r = Harness.Run(app, Array.Empty<string>(), env);
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Contains("value 43", r.Stdout);
            Assert.Contains($"mapped {agent.MirrorRoot}{dir}/libfoo.so", r.Stdout);
            Assert.Contains($"mapped {agent.MirrorRoot}{dir}/libbar.so", r.Stdout);

            // Without Copper the same LD_LIBRARY_PATH names nothing that exists: the run above
            // really went through the agent.
            env.Remove("LD_PRELOAD");
            env.Remove("LD_AUDIT");
            Assert.NotEqual(0, Harness.Run(app, Array.Empty<string>(), env).ExitCode);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void WrapperGivesANonPythonProgramTheSameBytes()
    {
        using var agent = new AgentProcess("wrapper");
        string dir = Harness.TempDir("input");
        try
        {
            string input = Path.Combine(dir, "input.dat");
            File.WriteAllBytes(input, RandomNumberGenerator.GetBytes(300_000));
            var env = agent.ClientEnv(audit: false);
            env.Remove("LD_PRELOAD");
            env["COPPER_PRELOAD"] = Harness.Preload;
            env["COPPER_AUDIT"] = Harness.Audit;
            ProcResult direct = Harness.Run("md5sum", new[] { input });
            ProcResult wrapped = Harness.Run(Path.Combine(Harness.Bin, "wrapper.sh"), new[] { "md5sum", agent.Prefix + input }, env);
            Assert.True(wrapped.ExitCode == 0, wrapped.ToString());
            Assert.Equal(direct.Stdout.Split(' ')[0], wrapped.Stdout.Split(' ')[0]);
            Assert.True(File.Exists(agent.MirrorRoot + input), "the wrapped program should have read the node-local copy");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ErrnoDifferentialAsAnUnprivilegedUser()
    {
        using var tree = new TestTree();
        using var agent = new AgentProcess("errno", uid: 65534);
        string probe = Harness.CompileC(Harness.Program("probe.c"), Path.Combine(agent.Root, "probe"));
        Harness.Run("chmod", new[] { "0755", probe });
        string[] real = TestTree.Cases.Select(c => Path.Combine(tree.Dir, c)).ToArray();
        string[] copper = real.Select(p => agent.Prefix + p).ToArray();
        string[] asNobody = { "--reuid=65534", "--regid=65534", "--clear-groups", probe };

        ProcResult direct = Harness.Run("setpriv", asNobody.Concat(real), new Dictionary<string, string?>());
        ProcResult viaCopper = Harness.Run("setpriv", asNobody.Concat(copper), agent.ClientEnv());
        Assert.True(direct.ExitCode == 0, direct.ToString());
        Assert.True(viaCopper.ExitCode == 0, viaCopper.ToString());
        Assert.Contains("open -1 EACCES", direct.Stdout);
        Assert.Contains("stat -1 ELOOP", direct.Stdout);
        Assert.Contains("open -1 ENAMETOOLONG", direct.Stdout);
        Assert.Contains("scandir 0 - .,..,inner.txt,", direct.Stdout);
        // readlink of an absolute link prints a real path in both runs (targets are not rewritten).
        Assert.Equal(direct.Stdout, viaCopper.Stdout);
    }

    [Fact]
    public void EveryMutationFailsWithErofsAndChangesNothing()
    {
        using var tree = new TestTree();
        using var agent = new AgentProcess("erofs");
        string mutate = Harness.CompileC(Harness.Program("mutate.c"), Path.Combine(agent.Root, "mutate"));
        string Snapshot() => Harness.Run("bash", new[] { "-c", $"cd {tree.Dir} && find . -printf '%p %m %s %T@\\n' | sort" }).Stdout;
        string before = Snapshot();
        string file = Path.Combine(tree.Dir, "data.txt");
        ProcResult r = Harness.Run(mutate, new[] { agent.Prefix + file, agent.Prefix + Path.Combine(tree.Dir, "sub") }, agent.ClientEnv());
        Assert.True(r.ExitCode == 0, r.ToString());
        string[] lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length >= 25, r.Stdout);
        Assert.All(lines, l => Assert.EndsWith(" -1 EROFS", l));
        Assert.Equal(before, Snapshot());
        Assert.Equal("hello from the parallel file system\n", File.ReadAllText(file));
    }

    [Fact]
    public void FileLargerThanMaxCacheableReadsCorrectlyFromTheRealPath()
    {
        using var agent = new AgentProcess("big", "--max-cacheable-bytes", "4096");
        string dir = Harness.TempDir("bigfile");
        try
        {
            string big = Path.Combine(dir, "big.bin");
            string small = Path.Combine(dir, "small.bin");
            File.WriteAllBytes(big, RandomNumberGenerator.GetBytes(1_000_000));
            File.WriteAllBytes(small, RandomNumberGenerator.GetBytes(1000));
            ProcResult r = Harness.Run("md5sum", new[] { agent.Prefix + big, agent.Prefix + small }, agent.ClientEnv());
            ProcResult direct = Harness.Run("md5sum", new[] { big, small });
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal(direct.Stdout.Replace(dir, ""), r.Stdout.Replace(agent.Prefix + dir, ""));
            Assert.False(File.Exists(agent.MirrorRoot + big), "a file over -M must not be cached");
            Assert.True(File.Exists(agent.MirrorRoot + small));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ForkedWorkersAndThreadsReadCopperFiles()
    {
        using var agent = new AgentProcess("fork");
        string script = Path.Combine(Harness.RepoRoot, "tests", "Copper.Tests", "programs", "workers.py");
        var env = agent.ClientEnv();
        ProcResult direct = Harness.Run(Harness.Python, new[] { script, "", DistPackages + "/numpy" });
        ProcResult viaCopper = Harness.Run(Harness.Python, new[] { script, agent.Prefix, DistPackages + "/numpy" }, env);
        Assert.True(direct.ExitCode == 0, direct.ToString());
        Assert.True(viaCopper.ExitCode == 0, viaCopper.ToString());
        Assert.Contains("processes 4 threads 8", viaCopper.Stdout);
        Assert.Equal(direct.Stdout, viaCopper.Stdout);
    }

    [Fact]
    public void ProgramSurvivesTheAgentBeingKilledMidRun()
    {
        var agent = new AgentProcess("sigkill");
        try
        {
            var env = agent.ClientEnv();
            env["PYTHONPATH"] = agent.Prefix + DistPackages;
            string script = "import sys, json\n" +
                $"print(len(open('{agent.Prefix}/etc/hostname').read()) > 0, flush=True)\n" +
                "sys.stdin.readline()\n" +
                "import numpy\n" +
                "print(numpy.__file__.startswith(sys.argv[1]), numpy.arange(5).sum(), flush=True)\n";
            var psi = new System.Diagnostics.ProcessStartInfo(Harness.Python) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add(script);
            psi.ArgumentList.Add(agent.Prefix);
            foreach (var kv in env)
            {
                psi.Environment[kv.Key] = kv.Value;
            }
            using var p = System.Diagnostics.Process.Start(psi)!;
            Assert.Equal("True", p.StandardOutput.ReadLine());
            agent.Kill();
            p.StandardInput.WriteLine("go");
            p.StandardInput.Close();
            string? line = p.StandardOutput.ReadLine();
            Assert.True(p.WaitForExit(60_000));
            Assert.Equal(0, p.ExitCode);
            Assert.Equal("True 10", line);
        }
        finally
        {
            agent.Dispose();
        }
    }
}
