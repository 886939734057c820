// The mount's inode table: path <-> inode number, for the inodes the kernel holds. A path's
// number is a hash of the path, so it is the same every time the path is given out (a listing's
// d_ino and a later lookup's st_ino agree, and a path forgotten and looked up again keeps its
// number); two paths whose hashes meet while both are held take the next free number. Each
// LOOKUP reply and each READDIRPLUS entry with attributes adds one to the path's lookup count,
// the kernel's FORGET takes its count away, and a path at zero leaves the table: the table
// holds what the kernel's inode cache holds, which the kernel shrinks under memory pressure.
// Paths are the real paths the mount shows ("/" is the mount's root, inode 1, as FUSE
// requires, and is never forgotten).
using System.Collections.Concurrent;
using Copper.Interop;

namespace Copper.Agent;

internal sealed class FuseInodes
{
    public const ulong Root = 1;

    private sealed class Node(string path, ulong ino)
    {
        public readonly string Path = path;
        public readonly ulong Ino = ino;

        /// <summary>Lookups the kernel holds; protected by <see cref="_lock"/>.</summary>
        public ulong Lookups;
    }

    /// <summary>Taken to count, add or remove; never to look a number or a path up.</summary>
    private readonly Lock _lock = new();

    /// <summary>Written only under <see cref="_lock"/>; read without it.</summary>
    private readonly ConcurrentDictionary<string, Node> _byPath = new(StringComparer.Ordinal);

    /// <summary>Written only under <see cref="_lock"/>, before the number is given out; read without it.</summary>
    private readonly ConcurrentDictionary<ulong, Node> _byIno = new();

    public FuseInodes()
    {
        var root = new Node("/", Root) { Lookups = 1 };
        _byPath["/"] = root;
        _byIno[Root] = root;
    }

    /// <summary>Inodes held now (the root included).</summary>
    public int Count => _byIno.Count;

    /// <summary>The path of <paramref name="ino"/>; false for a number the kernel does not hold.</summary>
    public bool TryGetPath(ulong ino, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? path)
    {
        if (_byIno.TryGetValue(ino, out Node? n))
        {
            path = n.Path;
            return true;
        }
        path = null;
        return false;
    }

    /// <summary>
    /// The number of <paramref name="path"/>, given to the kernel now (a LOOKUP reply, a
    /// READDIRPLUS entry with attributes): one more lookup the kernel will FORGET.
    /// </summary>
    public ulong Ref(string path)
    {
        if (path == "/")
        {
            return Root;
        }
        lock (_lock)
        {
            if (_byPath.TryGetValue(path, out Node? n))
            {
                n.Lookups++;
                return n.Ino;
            }
            ulong ino = Hash(path);
            while (_byIno.ContainsKey(ino))
            {
                ino = ino == ulong.MaxValue ? Root + 1 : ino + 1;
            }
            n = new Node(path, ino) { Lookups = 1 };
            _byIno[ino] = n;
            _byPath[path] = n;
            return ino;
        }
    }

    /// <summary>The number to show for <paramref name="path"/> without giving it out (a listing's d_ino).</summary>
    public ulong Peek(string path) => _byPath.TryGetValue(path, out Node? n) ? n.Ino : Hash(path);

    /// <summary>The kernel dropped <paramref name="lookups"/> lookups of <paramref name="ino"/>.</summary>
    public void Forget(ulong ino, ulong lookups)
    {
        if (ino == Root)
        {
            return;
        }
        lock (_lock)
        {
            if (!_byIno.TryGetValue(ino, out Node? n))
            {
                return;
            }
            n.Lookups = lookups >= n.Lookups ? 0 : n.Lookups - lookups;
            if (n.Lookups == 0)
            {
                _byPath.TryRemove(new KeyValuePair<string, Node>(n.Path, n));
                _byIno.TryRemove(new KeyValuePair<ulong, Node>(ino, n));
            }
        }
    }

    /// <summary>A path's own number: never 0 (no inode) or 1 (the root).</summary>
    private static ulong Hash(string path) => Protocol.Fnv1a64(path) is var h && h > Root ? h : h + 2;

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
