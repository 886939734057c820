// The mirror's budget: materialized files are charged in whole blocks, and before a file is
// materialized the least recently used ones that no process has open are removed until it
// fits. Metadata stays; an evicted file is materialized again on its next open. A process
// that has a file open (or mapped) keeps it: unlinking would not free its space anyway.
using System.Text;

namespace Copper.Agent;

internal sealed partial class NodeCache
{
    private const long Block = 4096;
    private readonly Lock _mirrorLock = new();
    private readonly Lock _evictLock = new();
    private readonly LinkedList<(string Path, long Bytes)> _lru = new();
    private readonly Dictionary<string, LinkedListNode<(string Path, long Bytes)>> _lruNodes = new(StringComparer.Ordinal);
    private long _mirrorBytes;

    /// <summary>Bytes the mirror holds or has reserved for files on their way in.</summary>
    public long MirrorBytes
    {
        get
        {
            lock (_mirrorLock)
            {
                return _mirrorBytes;
            }
        }
    }

    private static long Charge(long size) => size <= 0 ? 0 : (size + Block - 1) / Block * Block;

    /// <summary>Makes room for <paramref name="charge"/> bytes and takes it; false when even evicting every file not in use would not.</summary>
    private bool Reserve(long charge)
    {
        if (TryTake(charge))
        {
            return true;
        }
        lock (_evictLock)
        {
            if (TryTake(charge))
            {
                return true;
            }
            HashSet<string> inUse = MirrorFilesInUse();
            while (true)
            {
                string victim;
                long bytes;
                lock (_mirrorLock)
                {
                    if (_mirrorBytes + charge <= Budget)
                    {
                        Take(charge);
                        return true;
                    }
                    LinkedListNode<(string Path, long Bytes)>? n = _lru.First;
                    while (n != null && inUse.Contains(LocalPathOf(n.Value.Path)))
                    {
                        n = n.Next;
                    }
                    if (n == null)
                    {
                        return false;
                    }
                    (victim, bytes) = n.Value;
                    _lru.Remove(n);
                    _lruNodes.Remove(victim);
                }
                // The copy goes before its answer: a new materialization of the path can only
                // start once the answer is gone, so it never races this unlink. Its bytes are
                // free for others only once it is gone from the disk.
                Interop.Libc.Unlink(LocalPathOf(victim));
                _open.TryRemove(victim, out _);
                Release(bytes);
                _counters.Evicted(bytes);
            }
        }
    }

    private bool TryTake(long charge)
    {
        lock (_mirrorLock)
        {
            if (_mirrorBytes + charge > Budget)
            {
                return false;
            }
            Take(charge);
            return true;
        }
    }

    private void Take(long charge)
    {
        _mirrorBytes += charge;
        _counters.MirrorSize(_mirrorBytes);
    }

    private void Release(long charge)
    {
        if (charge == 0)
        {
            return;
        }
        lock (_mirrorLock)
        {
            _mirrorBytes -= charge;
            _counters.MirrorSize(_mirrorBytes);
        }
    }

    /// <summary><paramref name="path"/> is in the mirror now, <paramref name="actual"/> bytes where <paramref name="reserved"/> were taken.</summary>
    private void Mirrored(string path, long reserved, long actual)
    {
        lock (_mirrorLock)
        {
            _mirrorBytes += actual - reserved;
            _counters.MirrorSize(_mirrorBytes);
            if (_lruNodes.Remove(path, out var old))
            {
                _lru.Remove(old);
                _mirrorBytes -= old.Value.Bytes;
            }
            _lruNodes[path] = _lru.AddLast((path, actual));
        }
    }

    /// <summary>An open of <paramref name="path"/>: its copy, if any, is now the most recently used.</summary>
    private void TouchMirrored(string path)
    {
        if (Budget == long.MaxValue)
        {
            return;
        }
        lock (_mirrorLock)
        {
            if (_lruNodes.TryGetValue(path, out var n) && n != _lru.Last)
            {
                _lru.Remove(n);
                _lru.AddLast(n);
            }
        }
    }

    /// <summary>
    /// The mirror files some process this user can see has open or mapped (/proc/PID/fd and
    /// /proc/PID/maps), this agent included (a copy being relayed to a child).
    /// </summary>
    private HashSet<string> MirrorFilesInUse()
    {
        var inUse = new HashSet<string>(StringComparer.Ordinal);
        string root = MirrorRoot + "/";
        IEnumerable<string> pids;
        try
        {
            pids = Directory.EnumerateDirectories("/proc").ToList();
        }
        catch (IOException)
        {
            return inUse;
        }
        foreach (string proc in pids)
        {
            string name = Path.GetFileName(proc);
            if (name.Length == 0 || !char.IsAsciiDigit(name[0]))
            {
                continue;
            }
            try
            {
                foreach (string fd in Directory.EnumerateFileSystemEntries(proc + "/fd"))
                {
                    string? target = ReadLink(fd);
                    if (target != null && target.StartsWith(root, StringComparison.Ordinal))
                    {
                        inUse.Add(target);
                    }
                }
                foreach (string line in File.ReadLines(proc + "/maps"))
                {
                    int at = line.IndexOf(root, StringComparison.Ordinal);
                    if (at > 0)
                    {
                        inUse.Add(line[at..]);
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Gone meanwhile, or another user's: not ours to see (and it cannot read our mirror).
            }
        }
        return inUse;
    }

    private static unsafe string? ReadLink(string link)
    {
        byte* buf = stackalloc byte[4096];
        nint n = Interop.Libc.ReadLink(link, buf, 4096);
        return n <= 0 ? null : PathBytes.Decode(new ReadOnlySpan<byte>(buf, (int)n));
    }
}
