// Paths arrive already stripped of the prefix, but the agent trusts no client: it decodes,
// checks and normalizes them again, so `..` can never climb above the real root.
using System.Buffers;
using System.Text;
using Copper.Interop;

namespace Copper.Agent;

internal static class PathPolicy
{
    /// <summary>Returns 0 and the normalized absolute path, or a status for the reply.</summary>
    public static int TryDecode(ReadOnlySequence<byte> raw, out string path)
    {
        path = "/";
        if (raw.Length >= Protocol.MaxPath)
        {
            return Interop.Libc.ENAMETOOLONG;
        }
        if (raw.Length == 0)
        {
            return Interop.Libc.ENOENT;
        }
        byte[] bytes = raw.ToArray();
        if (bytes[0] != (byte)'/' || Array.IndexOf(bytes, (byte)0) >= 0)
        {
            return Interop.Libc.EINVAL;
        }
        // Bytes that are not UTF-8 are kept as they are (PathBytes), so such names are served too.
        string text = PathBytes.Decode(bytes);
        path = Normalize(text);
        return 0;
    }

    /// <summary>Lexical normalization (one definition: <see cref="Places.Normalize"/>).</summary>
    public static string Normalize(string path) => Places.Normalize(path);

    /// <summary>
    /// Strips <paramref name="prefix"/> (or a simulated node's "prefix.n&lt;k&gt;") from a normalized
    /// path, as often as it leads it: PREFIX/PREFIX/etc is /etc, as through the mount.
    /// </summary>
    public static string StripOwnPrefix(string path, string prefix)
    {
        while (true)
        {
            if (!path.StartsWith(prefix, StringComparison.Ordinal))
            {
                return path;
            }
            int end = prefix.Length;
            if (end + 2 < path.Length && path[end] == '.' && path[end + 1] == 'n' && char.IsAsciiDigit(path[end + 2]))
            {
                end += 2;
                while (end < path.Length && char.IsAsciiDigit(path[end]))
                {
                    end++;
                }
            }
            if (end == path.Length)
            {
                return "/";
            }
            if (path[end] != '/')
            {
                return path;
            }
            path = path[end..];
        }
    }
}
