// The mount's inode table: path <-> inode number. The job's view is a snapshot, so a path
// keeps its number for the agent's life and nothing is ever forgotten (the kernel's FORGET
// needs no bookkeeping). Paths are the real paths the mount shows ("/" is the mount's root,
// inode 1, as FUSE requires).
using System.Collections.Concurrent;

namespace Copper.Agent;

internal sealed class FuseInodes
{
    public const ulong Root = 1;

    /// <summary>Taken to give a path its number; never to look one up.</summary>
    private readonly Lock _assign = new();

    /// <summary>Written only under <see cref="_assign"/>, after <see cref="_pathOf"/>; read without it.</summary>
    private readonly ConcurrentDictionary<string, ulong> _inoOf = new(StringComparer.Ordinal);

    /// <summary>Written only under <see cref="_assign"/>, so a number is in it before anyone is given it; read without it.</summary>
    private readonly ConcurrentDictionary<ulong, string> _pathOf = new();

    /// <summary>The last number given; protected by <see cref="_assign"/>.</summary>
    private ulong _last = Root;

    public FuseInodes()
    {
        _pathOf[Root] = "/";
        _inoOf["/"] = Root;
    }

    /// <summary>The path of <paramref name="ino"/>; false for a number this table never gave.</summary>
    public bool TryGetPath(ulong ino, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? path) =>
        _pathOf.TryGetValue(ino, out path);

    /// <summary>The number of <paramref name="path"/>, given now if it has none: one number per path, ever.</summary>
    public ulong InoOf(string path)
    {
        if (_inoOf.TryGetValue(path, out ulong ino))
        {
            return ino;
        }
        lock (_assign)
        {
            if (_inoOf.TryGetValue(path, out ino))
            {
                return ino;
            }
            ino = ++_last;
            _pathOf[ino] = path;
            _inoOf[path] = ino;
            return ino;
        }
    }

    /// <summary>The path of <paramref name="name"/> in <paramref name="dir"/>, "." and ".." resolved lexically.</summary>
    public static string Child(string dir, string name) =>
        name switch
        {
            "." => dir,
            ".." => Parent(dir),
            _ => (dir == "/" ? "/" : dir + "/") + name,
        };

    /// <summary>The directory above <paramref name="dir"/> ("/" above "/").</summary>
    public static string Parent(string dir) =>
        dir.LastIndexOf('/') is var i && i > 0 ? dir[..i] : "/";
}
