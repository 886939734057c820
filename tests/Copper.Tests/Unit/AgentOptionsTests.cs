// copper-agent's command line (AgentOptions.Parse, docs/agent-contract.md): defaults, each
// option's accepted and refused values, the prefix rules, and the places derived from them.
using System.Globalization;
using Copper.Agent;
using Copper.Interop;
using Xunit;
using Libc = Copper.Agent.Interop.Libc;

namespace Copper.Tests.Unit;

public sealed class AgentOptionsTests : IDisposable
{
    private const string Prefix = "/tmp/alice/copper";
    private static readonly string Uid = Libc.GetUid().ToString(CultureInfo.InvariantCulture);
    private static readonly string Hash = Protocol.Fnv1a64(Prefix).ToString("x16");

    private readonly string? _runtimeDir = Environment.GetEnvironmentVariable("COPPER_RUNTIME_DIR");
    private readonly string? _tmpDir = Environment.GetEnvironmentVariable("TMPDIR");

    public AgentOptionsTests()
    {
        // The defaults come from the environment: start each test from a known one.
        Environment.SetEnvironmentVariable("COPPER_RUNTIME_DIR", null);
        Environment.SetEnvironmentVariable("TMPDIR", null);
    }

    public void Dispose()
    {
        Environment.SetEnvironmentVariable("COPPER_RUNTIME_DIR", _runtimeDir);
        Environment.SetEnvironmentVariable("TMPDIR", _tmpDir);
    }

    private static AgentOptions Good(params string[] args)
    {
        AgentOptions? o = AgentOptions.Parse(args, out string error);
        Assert.True(o != null, error);
        Assert.Equal("", error);
        return o;
    }

    private static string Bad(params string[] args)
    {
        Assert.Null(AgentOptions.Parse(args, out string error));
        Assert.NotEqual("", error);
        return error;
    }

    [Fact]
    public void DefaultsAreThoseOfTheContract()
    {
        AgentOptions o = Good("--prefix", Prefix);
        Assert.Equal(Prefix, o.Prefix);
        Assert.Equal("/tmp/copper-run-" + Uid, o.RuntimeDir);
        Assert.Equal("/tmp/copper-logs-" + Uid, o.LogDir);
        Assert.Null(o.CacheDir);
        Assert.Equal(6, o.LogLevel);
        Assert.False(o.LogToStdout);
        Assert.Equal(10L * 1024 * 1024, o.MaxCacheableBytes);
        Assert.Equal(1, o.Trees);
        Assert.Equal(0, o.Node);
        Assert.False(o.NodeFromRank);
        Assert.False(o.PrintSocket);
        Assert.False(o.Mpi);
        Assert.Equal(0, o.Fanout);
        Assert.Equal(5, o.ParentTimeoutSeconds);
        Assert.Null(o.PfsTraceDir);
        Assert.Null(o.Mount);
        Assert.Null(o.EffectiveMount);
        Assert.Equal(3600, o.FuseTimeoutSeconds);
        Assert.Equal(60, o.IdleTimeoutSeconds);
        Assert.Equal($"/tmp/copper-run-{Uid}/{Hash}", o.NodeDir);
        Assert.Equal($"/tmp/copper-run-{Uid}/{Hash}/{Protocol.SocketName}", o.SocketPath);
        Assert.Equal($"/tmp/copper-cache-{Uid}/{Hash}", o.EffectiveCacheDir);
    }

    [Fact]
    public void TheEnvironmentMovesTheRuntimeAndCacheDefaults()
    {
        Environment.SetEnvironmentVariable("COPPER_RUNTIME_DIR", "/run/user/1000/copper");
        Environment.SetEnvironmentVariable("TMPDIR", "/local/scratch");
        AgentOptions o = Good("--prefix", Prefix);
        Assert.Equal("/run/user/1000/copper", o.RuntimeDir);
        Assert.Equal($"/local/scratch/copper-cache-{Uid}/{Hash}", o.EffectiveCacheDir);
        Assert.Equal("/elsewhere", Good("--prefix", Prefix, "--runtime-dir", "/elsewhere").RuntimeDir);
    }

    [Fact]
    public void FreeValuedOptionsAreTakenAsGiven()
    {
        AgentOptions o = Good("--prefix", Prefix, "--runtime-dir", "/r", "--cache-dir", "/c", "--log-dir", "/l",
            "--pfs-trace-dir", "/t", "--print-socket", "--mpi");
        Assert.Equal("/r", o.RuntimeDir);
        Assert.Equal("/c", o.CacheDir);
        Assert.Equal("/c", o.EffectiveCacheDir);
        Assert.Equal("/l", o.LogDir);
        Assert.Equal("/t", o.PfsTraceDir);
        Assert.True(o.PrintSocket);
        Assert.True(o.Mpi);
        Assert.Equal($"/r/{Hash}/agent.sock", o.SocketPath);
    }

    [Theory]
    [InlineData("1", 1)]
    [InlineData("6", 6)]
    [InlineData("3", 3)]
    public void LogLevelAccepts1To6(string value, int level) =>
        Assert.Equal(level, Good("--prefix", Prefix, "--log-level", value).LogLevel);

    [Theory]
    [InlineData("file", false)]
    [InlineData("file_and_stdout", true)]
    [InlineData("stdout_and_file", true)]
    public void LogTypeSaysWhetherToWriteStdoutToo(string value, bool stdout) =>
        Assert.Equal(stdout, Good("--prefix", Prefix, "--log-type", value).LogToStdout);

    [Theory]
    [InlineData("1", 1L)]
    [InlineData("5368709120", 5L << 30)]
    public void MaxCacheableBytesAcceptsAPositiveCount(string value, long bytes) =>
        Assert.Equal(bytes, Good("--prefix", Prefix, "--max-cacheable-bytes", value).MaxCacheableBytes);

    [Fact]
    public void TreesFanoutAndTimeoutsAreParsed()
    {
        AgentOptions o = Good("--prefix", Prefix, "--trees", "4", "--fanout", "2", "--parent-timeout", "0.5",
            "--fuse-timeout", "0", "--idle-timeout", "2.25");
        Assert.Equal(4, o.Trees);
        Assert.Equal(2, o.Fanout);
        Assert.Equal(0.5, o.ParentTimeoutSeconds);
        Assert.Equal(0, o.FuseTimeoutSeconds);
        Assert.Equal(2.25, o.IdleTimeoutSeconds);
        Assert.Equal(1024, Good("--prefix", Prefix, "--fanout", "1024").Fanout);
    }

    [Theory]
    [InlineData("--log-level", "0")]
    [InlineData("--log-level", "7")]
    [InlineData("--log-level", "+3")]
    [InlineData("--log-level", "debug")]
    [InlineData("--log-type", "stdout")]
    [InlineData("--log-type", "File")]
    [InlineData("--max-cacheable-bytes", "0")]
    [InlineData("--max-cacheable-bytes", "-5")]
    [InlineData("--max-cacheable-bytes", "10M")]
    [InlineData("--max-cacheable-bytes", "")]
    [InlineData("--trees", "0")]
    [InlineData("--trees", "two")]
    [InlineData("--node", "-1")]
    [InlineData("--node", "ranks")]
    [InlineData("--fanout", "1")]
    [InlineData("--fanout", "1025")]
    [InlineData("--parent-timeout", "0")]
    [InlineData("--parent-timeout", "-1")]
    [InlineData("--parent-timeout", "1e3")]
    [InlineData("--mount", "relative/dir")]
    [InlineData("--fuse-timeout", "-1")]
    [InlineData("--fuse-timeout", "1h")]
    [InlineData("--idle-timeout", "0")]
    [InlineData("--idle-timeout", "-2")]
    public void ABadValueIsRefusedByName(string option, string value)
    {
        Assert.Equal($"bad value for {option}: '{value}'", Bad("--prefix", Prefix, option, value));
    }

    [Fact]
    public void AnOptionWithoutItsValueIsRefused()
    {
        Assert.Equal("option --trees needs a value", Bad("--prefix", Prefix, "--trees"));
        Assert.Equal("option --prefix needs a value", Bad("--prefix"));
    }

    [Theory]
    [InlineData("--bogus")]
    [InlineData("-p")]
    [InlineData("--Prefix")]
    [InlineData("prefix")]
    public void AnUnknownOptionIsRefused(string option)
    {
        Assert.Equal($"unknown option {option}", Bad("--prefix", Prefix, option, "x"));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("/")]
    [InlineData("tmp/alice/copper")]
    [InlineData("/tmp/alice/copper/")]
    public void ThePrefixMustBeAnAbsolutePathWithoutATrailingSlash(string? prefix)
    {
        string error = prefix == null ? Bad("--trees", "2") : Bad("--prefix", prefix);
        Assert.StartsWith("--prefix must be an absolute path", error);
    }

    [Fact]
    public void AOneLetterPrefixIsEnough() => Assert.Equal("/c", Good("--prefix", "/c").Prefix);

    [Fact]
    public void TheNodeFromTheRankNeedsMpi()
    {
        Assert.Equal("--node rank needs --mpi", Bad("--prefix", Prefix, "--node", "rank"));
        AgentOptions o = Good("--prefix", Prefix, "--node", "rank", "--mpi");
        Assert.True(o.NodeFromRank);
        Assert.Equal(0, o.Node);
    }

    [Fact]
    public void ASimulatedNodeGetsItsOwnSocketDirectoryAndCache()
    {
        AgentOptions o = Good("--prefix", Prefix, "--runtime-dir", "/r", "--node", "3");
        Assert.Equal(3, o.Node);
        Assert.Equal($"/r/{Hash}.n3/agent.sock", o.SocketPath);
        Assert.Equal($"/tmp/copper-cache-{Uid}/{Hash}.n3", o.EffectiveCacheDir);
    }

    [Fact]
    public void TheMountLosesItsTrailingSlashAndANodeFromTheRankGetsItsOwn()
    {
        Assert.Equal("/mnt/copper", Good("--prefix", Prefix, "--mount", "/mnt/copper/").Mount);

        AgentOptions o = Good("--prefix", Prefix, "--mount", "/mnt/copper", "--cache-dir", "/c", "--node", "rank", "--mpi");
        Assert.Equal("/mnt/copper", o.EffectiveMount);
        Assert.Equal("/c.n0", o.EffectiveCacheDir);
        o.Node = 2;
        Assert.Equal("/mnt/copper.n2", o.EffectiveMount);
        Assert.Equal("/c.n2", o.EffectiveCacheDir);

        // A node given by number (one agent per machine) keeps the names it was given.
        AgentOptions fixedNode = Good("--prefix", Prefix, "--mount", "/mnt/copper", "--cache-dir", "/c", "--node", "2");
        Assert.Equal("/mnt/copper", fixedNode.EffectiveMount);
        Assert.Equal("/c", fixedNode.EffectiveCacheDir);
    }

    [Fact]
    public void ASocketPathThatDoesNotFitSunPathIsRefused()
    {
        // <runtime dir>/<16 hex digits>/agent.sock must stay under 108 bytes with its NUL.
        string fits = "/" + new string('r', 78);
        Assert.Equal(107, Good("--prefix", Prefix, "--runtime-dir", fits).SocketPath.Length);
        string tooLong = "/" + new string('r', 79);
        Assert.StartsWith("socket path too long for a Unix socket: " + tooLong + "/", Bad("--prefix", Prefix, "--runtime-dir", tooLong));
        Assert.StartsWith("socket path too long", Bad("--prefix", Prefix, "--runtime-dir", "/" + new string('r', 76), "--node", "3"));
    }
}
