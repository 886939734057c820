// copper verify against a real agent, a real strace and the system's python3 + numpy: an
// import through the prefix leaks nothing; a real path of the same tree, opened directly, is
// named with its directory; site.py's own scan of the real dist-packages is named too;
// no agent and bad usage have their own exit statuses.
using System.Text.RegularExpressions;
using Copper.Interop;
using Xunit;

namespace Copper.Tests;

public sealed class VerifyAgent : IDisposable
{
    public string Root { get; } = Harness.TempDir("verify");
    public string Prefix => Path.Combine(Root, "copper");
    public Dictionary<string, string?> Env => new() { ["COPPER_RUNTIME_DIR"] = Path.Combine(Root, "run") };

    public VerifyAgent()
    {
        ProcResult r = Harness.Run(Path.Combine(Harness.Bin, "launch_copper.sh"),
            new[] { "-v", Prefix, "-d", Root + "/logs", "-c", Root + "/cache", "-b", "none", "--no-fuse" }, Env);
        if (r.ExitCode != 0)
        {
            Dispose();
            throw new InvalidOperationException("launch_copper.sh failed: " + r);
        }
    }

    public void Dispose()
    {
        Harness.Run(Path.Combine(Harness.Bin, "stop_copper.sh"), new[] { "-v", Prefix }, Env);
        Directory.Delete(Root, recursive: true);
    }
}

public class VerifyTests : IClassFixture<VerifyAgent>
{
    private const string DistPackages = "/usr/lib/python3/dist-packages";
    private static string Copper => Path.Combine(Harness.Bin, "copper");
    private readonly VerifyAgent _agent;

    public VerifyTests(VerifyAgent agent) => _agent = agent;

    private ProcResult Verify(params string[] command)
    {
        var env = _agent.Env;
        env["PYTHONPATH"] = _agent.Prefix + DistPackages;
        env["LD_PRELOAD"] = null;
        env["LD_AUDIT"] = null;
        return Harness.Run(Copper, new[] { "verify", "-v", _agent.Prefix, "--" }.Concat(command), env, timeoutMs: 180_000);
    }

    // "through Copper: N calls (R requests to the agent, M on mirror copies ..."
    private static (int Requests, int Mirror) ThroughCopper(string report)
    {
        Match m = Regex.Match(report, @"through Copper: \d+ calls \((\d+) requests to the agent, (\d+) on mirror copies");
        Assert.True(m.Success, report);
        return (int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value));
    }

    // The leak lines ("<dir>: N calls (...)"), trimmed: all of them, or those of one section
    // ("by the command's own paths", "by the shim ...").
    private static string[] LeakLines(string report, string? section = null)
    {
        var lines = new List<string>();
        string current = "";
        foreach (string l in report.Split('\n'))
        {
            if (l.StartsWith("    by ", StringComparison.Ordinal))
            {
                current = l.Trim();
            }
            else if (Regex.IsMatch(l, @"^\s+/.*: \d+ calls \(") && (section == null || current.StartsWith(section, StringComparison.Ordinal)))
            {
                lines.Add(l.Trim());
            }
        }
        return lines.ToArray();
    }

    [Fact]
    public void NumpyImportThroughThePrefixLeaksNothing()
    {
        // -S: Debian's python3 scans its own dist-packages at start-up (site.py), by its real
        // path; that is a leak of its own (see SiteScanOfTheRealDirectoryIsNamed).
        ProcResult r = Verify(Harness.Python, "-S", "-c", "import numpy; print('numpy from', numpy.__file__)");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains($"numpy from {_agent.Prefix}{DistPackages}/numpy/__init__.py", r.Stdout);
        Assert.Contains("leaks: none", r.Stdout);
        Assert.Empty(LeakLines(r.Stdout));
        (int requests, int mirror) = ThroughCopper(r.Stdout);
        Assert.True(mirror > 0, "numpy's files must be opened from the mirror: " + r.Stdout);
        Assert.True(requests > 0, r.Stdout);
    }

    [Fact]
    public void ARealPathOfTheSameTreeIsNamed()
    {
        // The import goes through the prefix; the script then reads one file of numpy's real tree.
        string script = Path.Combine(_agent.Root, "leaky.py");
        File.WriteAllText(script,
            "import numpy\n" +
            $"with open('{DistPackages}/numpy/version.py') as f:\n" +
            "    f.read()\n" +
            "print('numpy from', numpy.__file__)\n");
        ProcResult r = Verify(Harness.Python, "-S", script);
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Contains($"numpy from {_agent.Prefix}{DistPackages}/numpy/__init__.py", r.Stdout);
        string[] leaks = LeakLines(r.Stdout);
        Assert.True(leaks.Length == 1, r.Stdout);
        Assert.Equal(leaks, LeakLines(r.Stdout, "by the command's own paths"));
        Assert.StartsWith($"{DistPackages}/numpy: ", leaks[0]);
        Assert.Contains($"{DistPackages}/numpy/version.py", leaks[0]);
        Assert.Contains("openat 1", leaks[0]);
        Assert.True(ThroughCopper(r.Stdout).Mirror > 0, r.Stdout);
    }

    [Fact]
    public void SiteScanOfTheRealDirectoryIsNamed()
    {
        // Without -S, site.py lists /usr/lib/python3/dist-packages (on python3's own path) and
        // reads its .pth files by their real paths, although PYTHONPATH reaches it through Copper.
        ProcResult r = Verify(Harness.Python, "-c", "import numpy");
        Assert.True(r.ExitCode == 1, r.ToString());
        string[] leaks = LeakLines(r.Stdout);
        Assert.Contains(leaks, l => l.StartsWith($"{DistPackages}: ", StringComparison.Ordinal) && l.Contains("getdents64", StringComparison.Ordinal));
        Assert.DoesNotContain(leaks, l => l.StartsWith($"{DistPackages}/numpy", StringComparison.Ordinal));
        Assert.Empty(LeakLines(r.Stdout, "by the shim"));
    }

    [Fact]
    public void FilesLargerThanTheLimitAreTheShimsFallback()
    {
        // An agent of its own with -M 64K: numpy's larger files are read from their real paths
        // by the shim (by design); verify names them apart from the command's own real paths.
        string prefix = Path.Combine(_agent.Root, "small");
        var env = _agent.Env;
        try
        {
            ProcResult launch = Harness.Run(Path.Combine(Harness.Bin, "launch_copper.sh"),
                new[] { "-v", prefix, "-d", _agent.Root + "/logs", "-c", _agent.Root + "/cache-small", "-b", "none", "--no-fuse", "-M", "64K" }, env);
            Assert.True(launch.ExitCode == 0, launch.ToString());
            string script = Path.Combine(_agent.Root, "leaky-small.py");
            File.WriteAllText(script, $"import numpy\nopen('{DistPackages}/numpy/version.py').read()\n");
            env["PYTHONPATH"] = prefix + DistPackages;
            env["LD_PRELOAD"] = null;
            env["LD_AUDIT"] = null;
            ProcResult r = Harness.Run(Copper, new[] { "verify", "-v", prefix, "--", Harness.Python, "-S", script }, env, timeoutMs: 180_000);
            Assert.True(r.ExitCode == 1, r.ToString());
            // numpy's extension modules are far above 64K.
            string[] byShim = LeakLines(r.Stdout, "by the shim");
            Assert.Contains(byShim, l => l.StartsWith($"{DistPackages}/numpy/core: ", StringComparison.Ordinal) && l.Contains("_multiarray_umath", StringComparison.Ordinal));
            Assert.Equal(new[] { $"{DistPackages}/numpy" }, LeakLines(r.Stdout, "by the command's own paths").Select(l => l[..l.IndexOf(':')]));
        }
        finally
        {
            Harness.Run(Path.Combine(Harness.Bin, "stop_copper.sh"), new[] { "-v", prefix }, env);
        }
    }

    [Fact]
    public void NoAgentAndBadUsageHaveTheirOwnStatus()
    {
        string nowhere = Path.Combine(_agent.Root, "no-agent-here");
        ProcResult none = Harness.Run(Copper, new[] { "verify", "-v", nowhere, "--", "/bin/true" }, _agent.Env);
        Assert.True(none.ExitCode == 3, none.ToString());
        Assert.Contains($"no agent serves {nowhere}", none.Stderr);

        // An agent that died and left its directory behind: named, and still "no agent".
        string dead = Path.Combine(_agent.Root, "dead-agent");
        Directory.CreateDirectory(Path.Combine(_agent.Root, "run", Places.PrefixHash(dead)));
        ProcResult stale = Harness.Run(Copper, new[] { "verify", "-v", dead, "--", "/bin/true" }, _agent.Env);
        Assert.True(stale.ExitCode == 3, stale.ToString());
        Assert.Contains("does not answer", stale.Stderr);

        ProcResult noCommand = Harness.Run(Copper, new[] { "verify", "-v", _agent.Prefix, "--" }, _agent.Env);
        Assert.True(noCommand.ExitCode == 2, noCommand.ToString());
        ProcResult badOption = Harness.Run(Copper, new[] { "verify", "--frobnicate", "--", "/bin/true" }, _agent.Env);
        Assert.True(badOption.ExitCode == 2, badOption.ToString());
        Assert.Contains("copper verify [-v PREFIX]", badOption.Stderr);
    }
}
