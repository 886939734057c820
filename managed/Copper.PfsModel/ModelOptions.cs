// copper-pfs-model's command line: SRC --mount DIR [--service-us N] [--metadata-servers N]
// [--bandwidth-mbps N] [--model-stats FILE] [--per-path].
using System.Globalization;

namespace Copper.PfsModel;

internal sealed class ModelOptions
{
    private ModelOptions(string source, string mount)
    {
        Source = source;
        Mount = mount;
    }

    /// <summary>The directory the model serves (absolute).</summary>
    public string Source { get; }

    /// <summary>Where it is mounted (absolute, no trailing '/').</summary>
    public string Mount { get; }

    /// <summary>Service time of each metadata operation, in microseconds.</summary>
    public double ServiceMicros { get; private set; } = 200;

    /// <summary>
    /// How many metadata operations are served at once (a PFS's metadata servers, or one
    /// server's service threads); the rest wait their turn.
    /// </summary>
    public int MetadataServers { get; private set; } = 1;

    /// <summary>Data bandwidth in MB/s (10^6 bytes); 0: unlimited.</summary>
    public double BandwidthMBps { get; private set; }

    /// <summary>Where the counts are written, or null.</summary>
    public string? Stats { get; private set; }

    /// <summary>Whether the counts are also kept per path (ops_by_path in the stats).</summary>
    public bool PerPath { get; private set; }

    /// <summary>Parses <paramref name="args"/>; returns null and an error message on bad input.</summary>
    public static ModelOptions? Parse(string[] args, out string error)
    {
        string? source = null, mount = null, stats = null;
        double serviceMicros = 200, bandwidth = 0;
        int servers = 1;
        bool perPath = false;
        error = "";
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (!a.StartsWith("--", StringComparison.Ordinal))
            {
                if (source != null)
                {
                    error = $"one SRC only ('{source}', then '{a}')";
                    return null;
                }
                source = a;
                continue;
            }
            if (a == "--per-path")
            {
                perPath = true;
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
                case "--mount" when v.StartsWith('/') && v.TrimEnd('/').Length > 0:
                    mount = v.TrimEnd('/');
                    break;
                case "--service-us" when double.TryParse(v, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double us) && us >= 0:
                    serviceMicros = us;
                    break;
                case "--metadata-servers" when int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n is >= 1 and <= 4096:
                    servers = n;
                    break;
                case "--bandwidth-mbps" when double.TryParse(v, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double bw) && bw >= 0:
                    bandwidth = bw;
                    break;
                case "--model-stats":
                    stats = v;
                    break;
                case "--mount" or "--service-us" or "--metadata-servers" or "--bandwidth-mbps":
                    error = $"bad value for {a}: '{v}'";
                    return null;
                default:
                    error = $"unknown option {a}";
                    return null;
            }
        }
        if (source == null || !source.StartsWith('/'))
        {
            error = source == null ? "SRC is missing" : $"SRC must be an absolute path: '{source}'";
            return null;
        }
        if (mount == null)
        {
            error = "--mount DIR is missing";
            return null;
        }
        return new ModelOptions(source, mount) { ServiceMicros = serviceMicros, MetadataServers = servers, BandwidthMBps = bandwidth, Stats = stats, PerPath = perPath };
    }
}
