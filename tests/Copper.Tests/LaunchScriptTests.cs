// launch_copper.sh / stop_copper.sh as a user runs them: eval the exports, import through
// Copper, stop leaves nothing behind, launch again works, bad options fail clearly.
using Xunit;

namespace Copper.Tests;

public class LaunchScriptTests
{
    private static string Launch => Path.Combine(Harness.Bin, "launch_copper.sh");
    private static string Stop => Path.Combine(Harness.Bin, "stop_copper.sh");

    [Fact]
    public void LaunchImportStopAndLaunchAgain()
    {
        string root = Harness.TempDir("launch");
        string prefix = Path.Combine(root, "copper");
        var env = new Dictionary<string, string?> { ["COPPER_RUNTIME_DIR"] = Path.Combine(root, "run") };
        string script = $@"set -e
eval ""$({Launch} -v {prefix} -d {root}/logs -c {root}/cache -s 20)""
LD_PRELOAD=$COPPER_PRELOAD LD_AUDIT=$COPPER_AUDIT PYTHONPATH=$COPPER_PREFIX/usr/lib/python3/dist-packages /usr/bin/python3 -c 'import numpy; print(numpy.__file__)'
test -d {root}/cache/mirror/usr/lib/python3/dist-packages/numpy
{Stop} -v {prefix}
{Stop} -v {prefix}
";
        try
        {
            for (int round = 0; round < 2; round++)
            {
                ProcResult r = Harness.Bash(script, env);
                Assert.True(r.ExitCode == 0, r.ToString());
                Assert.Contains(prefix + "/usr/lib/python3/dist-packages/numpy/__init__.py", r.Stdout);
                Assert.False(Directory.Exists(Path.Combine(root, "cache")), "stop must remove the cache");
                Assert.Empty(Directory.Exists(Path.Combine(root, "run")) ? Directory.GetFileSystemEntries(Path.Combine(root, "run"), "*.sock", SearchOption.AllDirectories) : Array.Empty<string>());
                ProcResult ps = Harness.Run("pgrep", new[] { "-f", "copper-agent --prefix " + prefix });
                Assert.True(ps.ExitCode != 0, "an agent process is left: " + ps.Stdout);
            }
        }
        finally
        {
            Harness.Run(Stop, new[] { "-v", prefix }, env);
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void UnderUmask002EveryMissingLevelOfTheRuntimeAndLogDirectoriesIsPrivate()
    {
        // Group-writable levels above the runtime directory would fail the agents' trust check.
        string root = Harness.TempDir("umask");
        string prefix = Path.Combine(root, "copper");
        string[] runtime = [Path.Combine(root, "a"), Path.Combine(root, "a", "b"), Path.Combine(root, "a", "b", "run")];
        string[] logs = [Path.Combine(root, "l"), Path.Combine(root, "l", "m"), Path.Combine(root, "l", "m", "logs")];
        var env = new Dictionary<string, string?> { ["COPPER_RUNTIME_DIR"] = runtime[^1] };
        try
        {
            ProcResult r = Harness.Bash($"umask 002\n{Launch} -v {prefix} -d {logs[^1]} -s 20 >/dev/null", env);
            Assert.True(r.ExitCode == 0, r.ToString());
            foreach (string d in runtime.Concat(logs))
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(d));
            }
        }
        finally
        {
            Harness.Run(Stop, new[] { "-v", prefix }, env);
            Directory.Delete(root, recursive: true);
        }
    }

    [Theory]
    [InlineData("--no-fuse", false, true)]
    [InlineData("--fuse-only", true, false)]
    [InlineData("", true, true)]
    public void FuseOptionsChooseTheDoors(string option, bool mounted, bool shim)
    {
        string root = Harness.TempDir("fuseopt");
        string prefix = Path.Combine(root, "copper");
        var env = new Dictionary<string, string?> { ["COPPER_RUNTIME_DIR"] = Path.Combine(root, "run") };
        try
        {
            ProcResult r = Harness.Run(Launch, new[] { "-v", prefix, "-d", root + "/logs", "-b", "none", option }.Where(a => a.Length > 0), env);
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal(mounted, r.Stdout.Contains("export COPPER_MOUNT=", StringComparison.Ordinal));
            Assert.Equal(shim, r.Stdout.Contains("export COPPER_PRELOAD=", StringComparison.Ordinal));
            Assert.Equal(mounted, IsMounted(prefix));
            ProcResult stop = Harness.Run(Stop, new[] { "-v", prefix }, env);
            Assert.True(stop.ExitCode == 0, stop.ToString());
            Assert.False(IsMounted(prefix), "stop left the mount");
        }
        finally
        {
            Harness.Run(Stop, new[] { "-v", prefix }, env);
            Directory.Delete(root, recursive: true);
        }
    }

    private static bool IsMounted(string path) => File.ReadAllLines("/proc/mounts").Any(l => l.Split(' ')[1] == path);

    [Fact]
    public void RelaunchWithTheSameOptionsSaysSoAndPrintsTheExports()
    {
        string root = Harness.TempDir("relaunch");
        string prefix = Path.Combine(root, "copper");
        var env = new Dictionary<string, string?> { ["COPPER_RUNTIME_DIR"] = Path.Combine(root, "run") };
        string[] common = ["-v", prefix, "-d", root + "/logs", "-c", root + "/cache", "-b", "none"];
        try
        {
            ProcResult first = Harness.Run(Launch, common.Concat(["-M", "10M", "-l", "6"]), env);
            Assert.True(first.ExitCode == 0, first.ToString());
            int pid = int.Parse(File.ReadAllText(Directory.GetFiles(Path.Combine(root, "run"), "agent.pid", SearchOption.AllDirectories).Single()).Trim());
            // The same options, spelled otherwise (-M in bytes, -l left at its default, -s is
            // not an option of the running agent): the running agent serves this launch.
            ProcResult again = Harness.Run(Launch, common.Concat(["-M", "10485760", "-s", "7"]), env);
            Assert.True(again.ExitCode == 0, again.ToString());
            Assert.Equal(first.Stdout, again.Stdout);
            Assert.Contains($"already running for {prefix} with the same options", again.Stderr);
            Assert.True(Directory.Exists($"/proc/{pid}"), "the running agent was replaced");
        }
        finally
        {
            Harness.Run(Stop, new[] { "-v", prefix }, env);
            Directory.Delete(root, recursive: true);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("-n 2")]
    public void RelaunchWithOtherOptionsNamesThemAndFails(string mode)
    {
        string root = Harness.TempDir("relaunchdiff");
        string prefix = Path.Combine(root, "copper");
        var env = new Dictionary<string, string?> { ["COPPER_RUNTIME_DIR"] = Path.Combine(root, "run") };
        string common = $"{Launch} -v {prefix} -d {root}/logs -b none --no-fuse {mode}";
        try
        {
            ProcResult first = Harness.Bash(common + " -M 10M -l 6", env);
            Assert.True(first.ExitCode == 0, first.ToString());
            ProcResult other = Harness.Bash(common + " -M 1G -l 3", env);
            Assert.Equal(3, other.ExitCode);
            Assert.Equal("", other.Stdout);
            Assert.Contains($"already running for {prefix} with -l 6, -M 10M; this launch asked for -l 3, -M 1G", other.Stderr);
            Assert.Contains($"stop_copper.sh -v {prefix}", other.Stderr);
            // The running agents are untouched and still serve a launch with their options.
            ProcResult same = Harness.Bash(common + " -M 10M", env);
            Assert.True(same.ExitCode == 0, same.ToString());
            Assert.Equal(first.Stdout, same.Stdout);
        }
        finally
        {
            Harness.Run(Stop, new[] { "-v", prefix }, env);
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void LaunchRefusesToMountOverANonEmptyDirectory()
    {
        string root = Harness.TempDir("nonempty");
        string prefix = Path.Combine(root, "copper");
        Directory.CreateDirectory(prefix);
        File.WriteAllText(Path.Combine(prefix, "notes.txt"), "mine\n");
        var env = new Dictionary<string, string?> { ["COPPER_RUNTIME_DIR"] = Path.Combine(root, "run") };
        try
        {
            ProcResult r = Harness.Run(Launch, ["-v", prefix, "-d", root + "/logs", "-b", "none"], env);
            Assert.Equal(1, r.ExitCode);
            Assert.Equal("", r.Stdout);
            Assert.Contains($"{prefix} is not empty", r.Stderr);
            Assert.False(IsMounted(prefix));
            Assert.Equal("mine\n", File.ReadAllText(Path.Combine(prefix, "notes.txt")));
            ProcResult ps = Harness.Run("pgrep", ["-f", "copper-agent --prefix " + prefix]);
            Assert.True(ps.ExitCode != 0, "an agent was started: " + ps.Stdout);
        }
        finally
        {
            Harness.Run(Stop, new[] { "-v", prefix }, env);
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void AgentRefusesToMountOverANonEmptyDirectory()
    {
        string root = Harness.TempDir("nonemptyagent");
        string prefix = Path.Combine(root, "copper");
        Directory.CreateDirectory(prefix);
        File.WriteAllText(Path.Combine(prefix, "notes.txt"), "mine\n");
        string agent = Path.Combine(Harness.Bin, "copper-agent");
        // The agent started directly with --mount: it serves the shim, says why it did not
        // mount, and leaves the directory as it was.
        string script = $"""
            {agent} --prefix {prefix} --runtime-dir {root}/run --cache-dir {root}/cache --log-dir {root}/logs --mount {prefix} 2>{root}/agent.err &
            pid=$!
            for i in $(seq 1 1000); do [[ -e $({agent} --print-socket --prefix {prefix} --runtime-dir {root}/run | sed 's,/agent.sock$,,')/agent.ready ]] && break; sleep 0.02; done
            grep -qF " {prefix} " /proc/mounts && echo MOUNTED
            cat {prefix}/notes.txt
            kill -TERM $pid; wait $pid
            echo "exit $?"
            """;
        try
        {
            ProcResult r = Harness.Bash(script);
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal("mine\nexit 0\n", r.Stdout);
            Assert.Contains($"{prefix} is not empty", File.ReadAllText(Path.Combine(root, "agent.err")));
        }
        finally
        {
            if (IsMounted(prefix))
            {
                Harness.Run("fusermount3", ["-uz", prefix]);
            }
            Directory.Delete(root, recursive: true);
        }
    }

    [Theory]
    [InlineData("-l", "9")]
    [InlineData("-t", "syslog")]
    [InlineData("-T", "0")]
    [InlineData("-M", "lots")]
    [InlineData("-s", "-1")]
    [InlineData("-x", "1")]
    public void BadOptionsFailWithAMessageAndStartNothing(string option, string value)
    {
        string root = Harness.TempDir("badopt");
        try
        {
            var env = new Dictionary<string, string?> { ["COPPER_RUNTIME_DIR"] = Path.Combine(root, "run") };
            ProcResult r = Harness.Run(Launch, new[] { "-v", Path.Combine(root, "copper"), option, value }, env);
            Assert.NotEqual(0, r.ExitCode);
            Assert.Equal("", r.Stdout);
            Assert.False(string.IsNullOrWhiteSpace(r.Stderr));
            Assert.False(Directory.Exists(Path.Combine(root, "run")) && Directory.GetFiles(Path.Combine(root, "run"), "agent.pid", SearchOption.AllDirectories).Length > 0);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
