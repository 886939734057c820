// Every name derived from a prefix, computed once for C# (the agent and the `copper` command);
// native/common/config.c and path.c are the C side, and a test (NamesParityTests) checks that
// both give the same answers on tricky inputs. Paths are lexical: `..` is clamped at `/`.
using System.Globalization;

namespace Copper.Interop;

public static class Places
{
    /// <summary>
    /// Lexical normalization of an absolute path: collapses `//` and `.`, `..` clamped at `/`,
    /// no trailing `/` (copper_normalize in native/common/path.c).
    /// </summary>
    public static string Normalize(string path)
    {
        var parts = new List<string>();
        foreach (string part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (part == ".")
            {
                continue;
            }
            if (part == "..")
            {
                if (parts.Count > 0)
                {
                    parts.RemoveAt(parts.Count - 1);
                }
                continue;
            }
            parts.Add(part);
        }
        return "/" + string.Join('/', parts);
    }

    /// <summary>$COPPER_RUNTIME_DIR, else /tmp/copper-run-&lt;uid&gt;.</summary>
    public static string RuntimeDir(uint uid) =>
        Environment.GetEnvironmentVariable("COPPER_RUNTIME_DIR") is { Length: > 0 } r
            ? r
            : "/tmp/copper-run-" + uid.ToString(CultureInfo.InvariantCulture);

    /// <summary>16 lowercase hex digits of FNV-1a-64 of the normalized prefix.</summary>
    public static string PrefixHash(string prefix) =>
        Protocol.Fnv1a64(Normalize(prefix)).ToString("x16", CultureInfo.InvariantCulture);

    /// <summary>A node's directory name: the prefix hash, with ".n&lt;node&gt;" for node k &gt; 0.</summary>
    public static string NodeDirName(string prefix, int node) =>
        PrefixHash(prefix) + (node > 0 ? ".n" + node.ToString(CultureInfo.InvariantCulture) : "");

    /// <summary>&lt;runtime dir&gt;/&lt;hash&gt;[.n&lt;node&gt;]: the node's socket directory.</summary>
    public static string NodeDir(string runtimeDir, string prefix, int node) =>
        Path.Combine(runtimeDir, NodeDirName(prefix, node));

    /// <summary>Where the agent of a prefix and node listens.</summary>
    public static string SocketPath(string runtimeDir, string prefix, int node) =>
        Path.Combine(NodeDir(runtimeDir, prefix, node), Protocol.SocketName);
}
