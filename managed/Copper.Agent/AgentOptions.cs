// copper-agent's command line (docs/agent-contract.md) and the places derived from it.
using System.Globalization;
using Copper.Interop;

namespace Copper.Agent;

internal sealed class AgentOptions
{
    public string Prefix { get; private set; } = "";
    public string RuntimeDir { get; private set; } = "";
    public string? CacheDir { get; private set; }
    public int LogLevel { get; private set; } = 6;
    public bool LogToStdout { get; private set; }
    public string LogDir { get; private set; } = "";
    public long MaxCacheableBytes { get; private set; } = 10L * 1024 * 1024;
    public int Trees { get; private set; } = 1;

    /// <summary>--cache-budget in bytes; 0 when given as a percentage or not at all.</summary>
    public long CacheBudgetBytes { get; private set; }

    /// <summary>--cache-budget as a percentage of the cache file system's size; 0 when not.</summary>
    public int CacheBudgetPercent { get; private set; }

    /// <summary>--max-meta-entries: most metadata entries the node keeps (long.MaxValue: no bound, given as 0).</summary>
    public long MaxMetaEntries { get; private set; } = DefaultMaxMetaEntries;

    /// <summary>About 0.5 GB of the agent's memory at the bytes an entry takes (README, "the budget").</summary>
    public const long DefaultMaxMetaEntries = 1_000_000;

    /// <summary>Without --cache-budget: this share of the cache file system's free space at start.</summary>
    public const int DefaultBudgetPercentOfFree = 25;
    public int Node { get; set; }
    public bool PrintSocket { get; private set; }
    public bool Mpi { get; private set; }
    public bool NodeFromRank { get; private set; }
    public int Fanout { get; private set; }
    public double ParentTimeoutSeconds { get; private set; } = 5;
    public string? PfsTraceDir { get; private set; }
    public string? Mount { get; private set; }
    public double FuseTimeoutSeconds { get; private set; } = 3600;
    public double IdleTimeoutSeconds { get; private set; } = LocalServer.DefaultIdleTimeout.TotalSeconds;

    /// <summary>The job's manifest: replayed at start when it exists, this job's record merged into it at stop.</summary>
    public string? Manifest { get; private set; }

    /// <summary>File-system operations the replay keeps in flight at once.</summary>
    public int ReplayConcurrency { get; private set; } = 32;

    /// <summary>Most manifest entries replayed (the first ones, in first-use order).</summary>
    public int ReplayMaxEntries { get; private set; } = 200_000;

    /// <summary>This node's mount point: --mount, with ".n&lt;node&gt;" for simulated node k &gt; 0.</summary>
    public string? EffectiveMount => Mount == null ? null
        : Node > 0 && NodeFromRank ? Mount + ".n" + Node.ToString(CultureInfo.InvariantCulture) : Mount;

    public string NodeDir => Places.NodeDir(RuntimeDir, Prefix, Node);

    public string SocketPath => Places.SocketPath(RuntimeDir, Prefix, Node);

    public string EffectiveCacheDir => CacheDir is { } c
        ? (NodeFromRank ? c + ".n" + Node.ToString(CultureInfo.InvariantCulture) : c)
        : Path.Combine(
        Environment.GetEnvironmentVariable("TMPDIR") is { Length: > 0 } t ? t : "/tmp",
        "copper-cache-" + Interop.Libc.GetUid().ToString(CultureInfo.InvariantCulture),
        Path.GetFileName(NodeDir));

    /// <summary>
    /// The mirror's budget in bytes for a mirror in <paramref name="dir"/>: --cache-budget, a
    /// percentage of its file system's size, or by default a share of that file system's free
    /// space now (a node-local /tmp is often memory: the rest stays for the application).
    /// </summary>
    public long CacheBudgetFor(string dir)
    {
        if (CacheBudgetBytes > 0)
        {
            return CacheBudgetBytes;
        }
        if (Interop.Fuse.Statvfs(dir, out Interop.Fuse.StatVfs v) != 0)
        {
            throw new IOException($"statvfs {dir} failed (errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()})");
        }
        ulong unit = v.Frsize != 0 ? v.Frsize : v.Bsize;
        ulong bytes = CacheBudgetPercent > 0
            ? v.Blocks * unit / 100 * (ulong)CacheBudgetPercent
            : v.Bavail * unit / 100 * DefaultBudgetPercentOfFree;
        return (long)Math.Min(Math.Max(bytes, 1UL), long.MaxValue);
    }

    /// <summary>Parses <paramref name="args"/>; returns null and an error message on bad input.</summary>
    public static AgentOptions? Parse(string[] args, out string error)
    {
        var o = new AgentOptions();
        string uid = Interop.Libc.GetUid().ToString(CultureInfo.InvariantCulture);
        o.RuntimeDir = Places.RuntimeDir(Interop.Libc.GetUid());
        o.LogDir = "/tmp/copper-logs-" + uid;
        error = "";
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a is "--print-socket" or "--mpi")
            {
                o.PrintSocket |= a == "--print-socket";
                o.Mpi |= a == "--mpi";
                continue;
            }
            if (i + 1 >= args.Length)
            {
                error = $"option {a} needs a value";
                return null;
            }
            string v = args[++i];
            switch (a)
            {
                case "--prefix":
                    o.Prefix = v;
                    break;
                case "--runtime-dir":
                    o.RuntimeDir = v;
                    break;
                case "--cache-dir":
                    o.CacheDir = v;
                    break;
                case "--log-dir":
                    o.LogDir = v;
                    break;
                case "--log-level" when int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int l) && l is >= 1 and <= 6:
                    o.LogLevel = l;
                    break;
                case "--log-type" when v is "file" or "file_and_stdout" or "stdout_and_file":
                    o.LogToStdout = v != "file";
                    break;
                case "--max-cacheable-bytes" when long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out long m) && m > 0:
                    o.MaxCacheableBytes = m;
                    break;
                case "--cache-budget" when v.EndsWith('%') && int.TryParse(v[..^1], NumberStyles.None, CultureInfo.InvariantCulture, out int pc) && pc is >= 1 and <= 100:
                    o.CacheBudgetPercent = pc;
                    o.CacheBudgetBytes = 0;
                    break;
                case "--cache-budget" when long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out long cb) && cb > 0:
                    o.CacheBudgetBytes = cb;
                    o.CacheBudgetPercent = 0;
                    break;
                case "--max-meta-entries" when long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out long me) && (me == 0 || me >= 16):
                    o.MaxMetaEntries = me == 0 ? long.MaxValue : me;
                    break;
                case "--trees" when int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int t) && t > 0:
                    o.Trees = t;
                    break;
                case "--node" when v == "rank":
                    o.NodeFromRank = true;
                    break;
                case "--node" when int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int n):
                    o.Node = n;
                    break;
                case "--fanout" when int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int f) && f is >= 2 and <= 1024:
                    o.Fanout = f;
                    break;
                case "--parent-timeout" when double.TryParse(v, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double pt) && pt > 0:
                    o.ParentTimeoutSeconds = pt;
                    break;
                case "--pfs-trace-dir":
                    o.PfsTraceDir = v;
                    break;
                case "--mount" when v.StartsWith('/'):
                    o.Mount = v.TrimEnd('/');
                    break;
                case "--fuse-timeout" when double.TryParse(v, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double ft) && ft >= 0:
                    o.FuseTimeoutSeconds = ft;
                    break;
                case "--idle-timeout" when double.TryParse(v, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double it) && it > 0:
                    o.IdleTimeoutSeconds = it;
                    break;
                case "--manifest" when v.StartsWith('/'):
                    o.Manifest = v;
                    break;
                case "--replay-concurrency" when int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int rc) && rc is >= 1 and <= 1024:
                    o.ReplayConcurrency = rc;
                    break;
                case "--replay-max-entries" when int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int rm):
                    o.ReplayMaxEntries = rm;
                    break;
                case "--manifest" or "--replay-concurrency" or "--replay-max-entries":
                    error = $"bad value for {a}: '{v}'";
                    return null;
                case "--cache-budget" or "--max-meta-entries" or "--idle-timeout" or "--log-level" or "--log-type" or "--max-cacheable-bytes" or "--trees" or "--node" or "--fanout" or "--parent-timeout" or "--mount" or "--fuse-timeout":
                    error = $"bad value for {a}: '{v}'";
                    return null;
                default:
                    error = $"unknown option {a}";
                    return null;
            }
        }
        if (o.Prefix.Length < 2 || o.Prefix[0] != '/' || o.Prefix.EndsWith('/'))
        {
            error = "--prefix must be an absolute path without a trailing '/', e.g. /tmp/$USER/copper";
            return null;
        }
        if (o.NodeFromRank && !o.Mpi)
        {
            error = "--node rank needs --mpi";
            return null;
        }
        if (o.SocketPath.Length >= 108)
        {
            error = $"socket path too long for a Unix socket: {o.SocketPath}";
            return null;
        }
        return o;
    }
}
