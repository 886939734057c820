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

    [Theory]
    [InlineData("--no-fuse", false, true)]
    [InlineData("--fuse-only", true, false)]
    [InlineData("", true, true)]
    public void FuseOptionsChooseTheDoors(string option, bool mounted, bool shim)
    {
        string root = Harness.TempDir("fuseopt");
        string prefix = Path.Combine(root, "copper");
        var env = new Dictionary<string, string?> { ["COPPER_RUNTIME_DIR"] = Path.Combine(root, "run") };
        static bool IsMounted(string p) => File.ReadAllLines("/proc/mounts").Any(l => l.Split(' ')[1] == p);
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
