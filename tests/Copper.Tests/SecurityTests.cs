// Issue 9, item 1, as two real local users: an attacker who knows the victim's uid and
// prefix plants what Copper would use (a socket directory with a fake agent, a cache
// directory with a mirror) before the victim launches. Copper must refuse both, say why,
// and the victim's Python must import the real module.
using Copper.Interop;
using Xunit;

namespace Copper.Tests;

public sealed class SecurityTests : IDisposable
{
    private const string Module = "copper_secmod";
    private readonly string _root;
    private readonly string _evil;
    private readonly string _prefix;
    private readonly string _pkgs;
    private readonly int _victim = LocalUsers.Ensure("copper-victim");
    private readonly int _attacker = LocalUsers.Ensure("copper-attacker");

    public SecurityTests()
    {
        CleanVictimTmp();
        _root = Harness.TempDir("sec");
        _evil = Harness.TempDir("evil");
        _prefix = Path.Combine(_root, "copper");
        _pkgs = Path.Combine(_root, "pkgs");
        Directory.CreateDirectory(_pkgs);
        File.WriteAllText(Path.Combine(_pkgs, Module + ".py"), "print('the real module')\n");
        File.WriteAllText(Path.Combine(_evil, Module + ".py"), "print('EVIL CODE RAN AS', __import__('os').getuid())\n");
        Harness.Run("chown", new[] { "-R", $"{_victim}:{_victim}", _root });
        Harness.Run("chmod", new[] { "-R", "a+rX", _root });
        Harness.Run("chown", new[] { "-R", $"{_attacker}:{_attacker}", _evil });
        Harness.Run("chmod", new[] { "-R", "a+rX", _evil });
    }

    public void Dispose()
    {
        AsVictim($"{LocalUsers.Install}/bin/stop_copper.sh -v {_prefix}");
        Harness.Run("pkill", new[] { "-KILL", "-u", "copper-attacker" });
        Harness.Run("pkill", new[] { "-KILL", "-u", "copper-victim" });
        CleanVictimTmp();
        Directory.Delete(_root, recursive: true);
        Directory.Delete(_evil, recursive: true);
    }

    private void CleanVictimTmp()
    {
        foreach (string d in new[] { "copper-run-", "copper-cache-", "copper-logs-" })
        {
            Harness.Run("rm", new[] { "-rf", $"/tmp/{d}{_victim}" });
        }
    }

    private string Hash => Protocol.Fnv1a64(_prefix).ToString("x16");

    private ProcResult AsVictim(string script) => LocalUsers.Run(_victim, "copper-victim", script);

    private ProcResult AsAttacker(string script) => LocalUsers.Run(_attacker, "copper-attacker", script);

    /// <summary>The victim imports the module through the prefix with the shim loaded.</summary>
    private ProcResult VictimImports() => AsVictim(
        $"LD_PRELOAD={LocalUsers.Install}/lib/libcopper-preload.so COPPER_PREFIX={_prefix} PYTHONPATH={_prefix}{_pkgs} PYTHONDONTWRITEBYTECODE=1 {Harness.Python} -c 'import {Module}'");

    private ProcResult VictimLaunches() => AsVictim(
        $"{LocalUsers.Install}/bin/launch_copper.sh -v {_prefix} -d {_root}/logs --no-fuse -s 15");

    [Fact]
    public void FakeAgentInAPlantedSocketDirectoryIsNeverUsed()
    {
        string sockDir = $"/tmp/copper-run-{_victim}/{Hash}";
        string ready = Path.Combine(_evil, "ready");
        var fake = new System.Diagnostics.ProcessStartInfo("setpriv") { UseShellExecute = false, RedirectStandardError = true };
        foreach (string a in new[] { $"--reuid={_attacker}", $"--regid={_attacker}", "--clear-groups", Harness.Python, Harness.Program("fake_agent.py"), Path.Combine(sockDir, Protocol.SocketName), Module + ".py", Path.Combine(_evil, Module + ".py"), _evil, ready })
        {
            fake.ArgumentList.Add(a);
        }
        ProcResult plant = AsAttacker($"mkdir -p -m 0777 {sockDir} && chmod 0777 /tmp/copper-run-{_victim} {sockDir}");
        Assert.True(plant.ExitCode == 0, plant.ToString());
        using var p = System.Diagnostics.Process.Start(fake)!;
        try
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            while (!File.Exists(ready) && sw.ElapsedMilliseconds < 20_000)
            {
                Thread.Sleep(20);
            }
            Assert.True(File.Exists(ready), "the fake agent did not start");

            ProcResult launch = VictimLaunches();
            Assert.True(launch.ExitCode != 0, "launch must refuse a runtime directory another user owns:\n" + launch);
            Assert.Contains($"/tmp/copper-run-{_victim}", launch.Stderr);

            ProcResult r = VictimImports();
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal("the real module", r.Stdout.Trim());
            Assert.Contains("copper: not using the agent", r.Stderr);

            // The copper tool does not believe it either.
            ProcResult stats = AsVictim($"{LocalUsers.Install}/bin/copper stats -v {_prefix}");
            Assert.Contains($"runs as uid {_attacker}, not as you", stats.Stdout + stats.Stderr);
        }
        finally
        {
            p.Kill();
            p.WaitForExit();
        }
    }

    [Fact]
    public void PlantedCacheDirectoryIsRefusedAndNeverServed()
    {
        string mirrorPkgs = $"/tmp/copper-cache-{_victim}/{Hash}/mirror{_pkgs}";
        ProcResult plant = AsAttacker($"mkdir -p -m 0777 {mirrorPkgs} && chmod -R 0777 /tmp/copper-cache-{_victim}");
        Assert.True(plant.ExitCode == 0, plant.ToString());

        ProcResult launch = VictimLaunches();
        ProcResult first = VictimImports();
        // After the victim's launch (and first import), the attacker swaps the mirrored copy.
        AsAttacker($"cp {_evil}/{Module}.py {mirrorPkgs}/.x && mv -f {mirrorPkgs}/.x {mirrorPkgs}/{Module}.py");
        ProcResult second = VictimImports();

        Assert.True(launch.ExitCode != 0, "launch must refuse a cache directory another user owns:\n" + launch);
        Assert.Contains($"/tmp/copper-cache-{_victim}", launch.Stderr);
        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.Equal("the real module", first.Stdout.Trim());
        Assert.True(second.ExitCode == 0, second.ToString());
        Assert.Equal("the real module", second.Stdout.Trim());
    }

    [Theory]
    [InlineData("cache")]
    [InlineData("logs")]
    [InlineData("mount")]
    public void AgentRefusesEveryDirectoryItWouldUseIfAnotherUserCanReplaceIt(string planted)
    {
        // A private directory inside one the attacker owns can be renamed away and replaced
        // (or, for logs, hold a symlink to the victim's files): what holds it must be the
        // user's, root's, or sticky.
        string shared = Path.Combine(_evil, "shared");
        AsAttacker($"mkdir -m 0777 {shared}");
        string cache = planted == "cache" ? $"{shared}/cache" : $"{_root}/cache";
        string logs = planted == "logs" ? $"{shared}/logs" : $"{_root}/logs";
        string mount = planted == "mount" ? $" --mount {shared}/mnt" : "";
        ProcResult r = AsVictim($"timeout 5 {LocalUsers.Install}/bin/copper-agent --prefix {_prefix} --runtime-dir {_root}/run --cache-dir {cache} --log-dir {logs}{mount}");
        if (planted == "mount")
        {
            // The shim still gets its agent; programs without it do not get a mount there.
            Assert.Contains($"not mounting {shared}/mnt", r.Stderr);
            Assert.DoesNotContain($" {shared}/mnt ", File.ReadAllText("/proc/mounts"));
        }
        else
        {
            Assert.Equal(1, r.ExitCode);
            Assert.Contains("refusing to start", r.Stderr);
            Assert.Contains(shared, r.Stderr);
            Assert.False(File.Exists(Path.Combine(_root, "run", Hash, Protocol.SocketName)));
            Assert.False(File.Exists(Path.Combine(shared, "logs", "copper-stats.0.json")));
        }
    }
}

/// <summary>Real local users for tests that need more than root, and a copy of out/ they can run.</summary>
public static class LocalUsers
{
    private static readonly Lazy<string> InstallDir = new(() =>
    {
        // The repository may sit in a directory other users cannot enter (/root).
        string dir = Path.Combine("/tmp", "copper-test-install-" + Environment.ProcessId);
        Harness.Run("rm", new[] { "-rf", dir });
        Directory.CreateDirectory(dir);
        ProcResult r = Harness.Run("cp", new[] { "-a", Harness.Bin, Harness.Lib, dir });
        if (r.ExitCode != 0)
        {
            throw new InvalidOperationException(r.ToString());
        }
        Harness.Run("chmod", new[] { "-R", "a+rX", dir });
        Harness.Run("chmod", new[] { "0755", dir });
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Harness.Run("rm", new[] { "-rf", dir });
        return dir;
    });

    public static string Install => InstallDir.Value;

    /// <summary>Creates the user if missing (system account, no home, no login shell); returns its uid.</summary>
    public static int Ensure(string name)
    {
        if (Harness.Run("id", new[] { "-u", name }).ExitCode != 0)
        {
            ProcResult add = Harness.Run("useradd", new[] { "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name });
            if (add.ExitCode != 0 && Harness.Run("id", new[] { "-u", name }).ExitCode != 0)
            {
                throw new InvalidOperationException(add.ToString());
            }
        }
        return int.Parse(Harness.Run("id", new[] { "-u", name }).Stdout.Trim());
    }

    /// <summary>Runs a bash script as the user, with a clean login-like environment.</summary>
    public static ProcResult Run(int uid, string name, string script, int timeoutMs = 120_000) =>
        Harness.Run("setpriv", new[] { $"--reuid={uid}", $"--regid={uid}", "--clear-groups", "/usr/bin/env", "-i", $"USER={name}", $"LOGNAME={name}", "HOME=/tmp", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "/bin/bash", "-c", script }, new Dictionary<string, string?>(), timeoutMs);
}
