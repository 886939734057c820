// The node's cache: metadata answers (negative ones included), directory listings,
// symlink targets, and file data materialized once in the node-local mirror. Concurrent
// misses for one key wait for a single upstream request (coalescing). The job's view of
// the file system is a snapshot: the first answer for a path stands for the agent's life.
// Copper's own failures (negative statuses other than "too big") are not kept, so a later
// request may succeed.
using System.Collections.Concurrent;
using System.Text;
using Copper.Interop;
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

internal sealed partial class NodeCache
{
    private readonly IUpstream _upstream;
    private readonly Counters _counters;
    private readonly ILogger _log;
    private readonly long _maxBytes;
    // The answers kept, within the metadata's bound (NodeCache.Metadata.cs).
    private readonly MetaMap<string, StatAnswer> _stat;
    private readonly MetaMap<string, StatAnswer> _lstat;
    private readonly MetaMap<string, LinkAnswer> _links;
    private readonly MetaMap<(string, int), int> _access;
    private readonly MetaMap<string, DirAnswer> _dirs;
    private readonly ConcurrentDictionary<string, HashSet<string>> _dirNames = new(StringComparer.Ordinal);
    private readonly MetaMap<string, OpenAnswer> _open;
    private readonly ConcurrentDictionary<string, Transfer> _transfers = new(StringComparer.Ordinal);

    public NodeCache(IUpstream upstream, Counters counters, ILogger log, string mirrorRoot, long maxBytes)
    {
        _upstream = upstream;
        _counters = counters;
        _log = log;
        MirrorRoot = mirrorRoot;
        _maxBytes = maxBytes;
        _meta = new MetaBound(counters) { Over = SweepMetadata };
        _stat = NewMetaMap<string, StatAnswer>(StringComparer.Ordinal);
        _lstat = NewMetaMap<string, StatAnswer>(StringComparer.Ordinal);
        _links = NewMetaMap<string, LinkAnswer>(StringComparer.Ordinal);
        _access = NewMetaMap<(string, int), int>();
        _dirs = NewMetaMap<string, DirAnswer>(StringComparer.Ordinal, ListingWeight);
        _open = NewMetaMap<string, OpenAnswer>(StringComparer.Ordinal);
        InitMetadata();
    }

    public string MirrorRoot { get; }

    public long MaxBytes => _maxBytes;

    /// <summary>Most bytes the mirror holds (files counted in whole 4 KiB blocks, as they occupy them).</summary>
    public long Budget { get; init; } = long.MaxValue;

    /// <summary>
    /// True on an agent with children: a file being fetched keeps its encoded chunks while in
    /// flight (files up to <see cref="PipelineLimit"/>), so children get chunk i while chunk i+1
    /// is still arriving here.
    /// </summary>
    public bool Pipelines { get; set; }

    /// <summary>Largest file relayed chunk by chunk while in flight; larger ones are relayed once complete.</summary>
    public long PipelineLimit { get; set; } = 256L << 20;

    /// <summary>The transfer of <paramref name="path"/> in progress here, if any.</summary>
    public Transfer? InFlight(string path) => _transfers.TryGetValue(path, out Transfer? t) ? t : null;

    public Task<StatAnswer> StatAsync(string path, bool follow, CancellationToken ct)
    {
        if (AbsentFromParentListing(path) is int absent and not 0)
        {
            _counters.Hit();
            return Task.FromResult(new StatAnswer(absent, default));
        }
        return GetOrFetch(follow ? _stat : _lstat, path, p => _upstream.StatAsync(p, follow, ct), a => a.Status >= 0);
    }

    public Task<LinkAnswer> ReadLinkAsync(string path, CancellationToken ct)
    {
        if (AbsentFromParentListing(path) is int absent and not 0)
        {
            _counters.Hit();
            return Task.FromResult(new LinkAnswer(absent, []));
        }
        return GetOrFetch(_links, path, p => _upstream.ReadLinkAsync(p, ct), a => a.Status >= 0);
    }

    public Task<int> AccessAsync(string path, int mode, CancellationToken ct) =>
        GetOrFetch(_access, (path, mode), k => _upstream.AccessAsync(k.Item1, k.Item2, ct), s => s >= 0);

    public Task<DirAnswer> ListDirAsync(string path, CancellationToken ct) =>
        GetOrFetch(_dirs, path, async p =>
        {
            DirAnswer answer = await _upstream.ListDirAsync(p, ct);
            if (answer.Status == 0)
            {
                var names = new HashSet<string>(answer.Entries.Count, StringComparer.Ordinal);
                foreach (DirEntry e in answer.Entries)
                {
                    names.Add(PathBytes.Decode(e.Name));
                }
                _dirNames[p] = names;
            }
            return answer;
        }, a => a.Status >= 0);

    public Task<OpenAnswer> OpenAsync(string path, CancellationToken ct)
    {
        if (AbsentFromParentListing(path) is int absent and not 0)
        {
            _counters.Hit();
            return Task.FromResult(new OpenAnswer(absent, 0, default, []));
        }
        TouchMirrored(path);
        // "Too big" stands when the file is larger than -M or the budget; not when the mirror is
        // full of open files for now.
        return GetOrFetch(_open, path, p => MaterializeAsync(p, ct), a => a.Status >= 0 || (a.Status == Protocol.StatusTooBig && !a.NoRoomNow));
    }

    /// <summary>
    /// The lstat of <paramref name="path"/> if this node already has it (for an entry that is not
    /// a symlink, its stat is the same); <see cref="Protocol.StatusFallback"/> if not. Never fetches.
    /// </summary>
    public int PeekLstat(string path, byte direntType, out CopperStat st)
    {
        const byte DtUnknown = 0, DtLnk = 10;
        st = default;
        if (_lstat.TryGetValue(path, out Task<StatAnswer>? l) && l.IsCompletedSuccessfully && l.Result.Status >= 0)
        {
            st = l.Result.St;
            return l.Result.Status;
        }
        if (direntType is DtUnknown or DtLnk)
        {
            return Protocol.StatusFallback;
        }
        if (_stat.TryGetValue(path, out Task<StatAnswer>? f) && f.IsCompletedSuccessfully && f.Result.Status == 0)
        {
            st = f.Result.St;
            return 0;
        }
        // A materialized file was stat'ed when it was fetched.
        if (_open.TryGetValue(path, out Task<OpenAnswer>? o) && o.IsCompletedSuccessfully && o.Result is { Status: 0, Kind: OpenKind.File })
        {
            st = o.Result.St;
            return 0;
        }
        return Protocol.StatusFallback;
    }

    /// <summary>True if this node holds the listing of <paramref name="path"/> (an answer, maybe an error).</summary>
    public bool HasListing(string path) =>
        _dirs.TryGetValue(path, out Task<DirAnswer>? d) && d.IsCompletedSuccessfully;

    /// <summary>True if the file at <paramref name="path"/> is materialized in the mirror. Never fetches.</summary>
    public bool PeekMaterialized(string path) =>
        _open.TryGetValue(path, out Task<OpenAnswer>? o) && o.IsCompletedSuccessfully && o.Result is { Status: 0, Kind: OpenKind.File };

    /// <summary>The node-local path standing for a real path (the mirror keeps real paths' shape).</summary>
    public string LocalPathOf(string path) => path == "/" ? MirrorRoot : MirrorRoot + path;

    /// <summary>
    /// What the parent's listing says of <paramref name="path"/> without asking anyone: 0 (in it,
    /// or no listing), ENOENT (not in it), or ENAMETOOLONG for a name longer than NAME_MAX bytes,
    /// which the file system would refuse before looking.
    /// </summary>
    private int AbsentFromParentListing(string path)
    {
        if (path == "/")
        {
            return 0;
        }
        int slash = path.LastIndexOf('/');
        string parent = slash == 0 ? "/" : path[..slash];
        string name = path[(slash + 1)..];
        if (!_dirNames.TryGetValue(parent, out var names) || names.Contains(name))
        {
            return 0;
        }
        return PathBytes.ByteCount(name) > NameMax ? Interop.Libc.ENAMETOOLONG : Interop.Libc.ENOENT;
    }

    /// <summary>
    /// The bytes just materialized are the version <paramref name="st"/> describes (the root
    /// stat'ed the descriptor it read). If the file changed since this node answered its stat,
    /// the path's metadata becomes that version's, so size and bytes never come from two
    /// versions; clients that see the OPEN reply replace what they cached the same way.
    /// </summary>
    /// <returns>True when an answer of another version was replaced.</returns>
    private bool AdoptVersion(string path, in CopperStat st)
    {
        var fresh = Task.FromResult(new StatAnswer(0, st));
        bool changed = false;
        if (!_stat.TryGetValue(path, out Task<StatAnswer>? s) || !s.IsCompletedSuccessfully || s.Result.Status != 0 || !SameVersion(s.Result.St, st))
        {
            changed = s is { IsCompletedSuccessfully: true } && s.Result.Status == 0;
            _stat[path] = fresh;
        }
        // A symlink's own lstat stays; a regular file's is its stat.
        if (_lstat.TryGetValue(path, out Task<StatAnswer>? l) && l.IsCompletedSuccessfully && l.Result.Status == 0
            && (l.Result.St.Mode & 0xF000) == Interop.Libc.S_IFREG && !SameVersion(l.Result.St, st))
        {
            changed = true;
            _lstat[path] = fresh;
        }
        return changed;
    }

    private static bool SameVersion(in CopperStat a, in CopperStat b) =>
        a.Dev == b.Dev && a.Ino == b.Ino && a.Size == b.Size && a.MtimeSec == b.MtimeSec && a.MtimeNsec == b.MtimeNsec
        && a.CtimeSec == b.CtimeSec && a.CtimeNsec == b.CtimeNsec;

    /// <summary>NAME_MAX: the longest name a Linux file system accepts, in bytes.</summary>
    private const int NameMax = 255;

    private async ValueTask<OpenAnswer> MaterializeAsync(string path, CancellationToken ct)
    {
        string local = LocalPathOf(path);
        Transfer? transfer = Pipelines ? new Transfer(PipelineLimit) : null;
        if (transfer != null)
        {
            _transfers[path] = transfer;
        }
        // Room in the budget is made once the size is known, before a byte is written; a file
        // that cannot fit is still relayed to children waiting for it, but not kept here.
        var sink = new MirrorSink(local, transfer, Budget, Budget == long.MaxValue ? null : Reserve);
        int outcome = Protocol.StatusFallback;
        try
        {
            FetchAnswer fetched = await _upstream.FetchAsync(path, _maxBytes, sink, ct);
            await sink.CloseAsync();
            if (fetched.Status == 0 && sink.NoRoom is { } noRoom)
            {
                outcome = 0;
                if (noRoom)
                {
                    LogNoRoom(_log, path, fetched.St.Size);
                }
                return new OpenAnswer(Protocol.StatusTooBig, 0, fetched.St, []) { NoRoomNow = noRoom };
            }
            if (fetched.Status != 0)
            {
                outcome = fetched.Status;
                return new OpenAnswer(fetched.Status, 0, fetched.St, []);
            }
            if (fetched.Kind == OpenKind.Dir)
            {
                MirrorFiles.CreateDirectory(local);
                outcome = 0;
                return new OpenAnswer(0, OpenKind.Dir, fetched.St, PathBytes.Encode(local));
            }
            if (sink.TempPath == null)
            {
                // An upstream that says "file" must have sent one (even an empty one).
                return new OpenAnswer(Protocol.StatusFallback, 0, fetched.St, []);
            }
            // Keep the real mode (so exec works) minus set-id bits, readable by the owner, and the
            // real times (Python compares a .pyc with its source's mtime), then publish atomically.
            MirrorFiles.Check(Interop.Libc.Chmod(sink.TempPath, (int)((fetched.St.Mode & 0x1FF) | 0x100)), "chmod", sink.TempPath);
            SetTimes(sink.TempPath, fetched.St);
            MirrorFiles.Check(Interop.Libc.Rename(sink.TempPath, local), "rename", local);
            sink.TempPath = null;
            if (sink.Charged is long charged)
            {
                Mirrored(path, charged, Charge(fetched.St.Size));
                sink.Charged = null;
            }
            _counters.Mirrored(fetched.St.Size);
            bool changed = AdoptVersion(path, fetched.St);
            outcome = 0;
            return new OpenAnswer(0, OpenKind.File, fetched.St, PathBytes.Encode(local), changed);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogMaterializeFailed(_log, path, ex.Message);
            return new OpenAnswer(Protocol.StatusFallback, 0, default, []);
        }
        finally
        {
            await sink.CloseAsync();
            if (sink.TempPath != null)
            {
                Interop.Libc.Unlink(sink.TempPath);
            }
            if (sink.Charged is long unused)
            {
                Release(unused);
            }
            if (transfer != null)
            {
                transfer.Finish(outcome);
                _transfers.TryRemove(new KeyValuePair<string, Transfer>(path, transfer));
            }
        }
    }

    /// <summary>Writes a fetched file into a temporary file next to its mirror place, and feeds the transfer.</summary>
    private sealed class MirrorSink(string local, Transfer? transfer, long budget, Func<long, bool>? reserve) : IFetchSink
    {
        private FileStream? _stream;

        public string? TempPath { get; set; }

        /// <summary>Bytes taken from the budget for this file, until it is in the mirror or given back.</summary>
        public long? Charged { get; set; }

        /// <summary>Not kept here: false when larger than the budget, true when the budget is taken by files in use.</summary>
        public bool? NoRoom { get; private set; }

        public ValueTask BeginAsync(CopperStat st, long size, CancellationToken ct)
        {
            if (reserve != null)
            {
                long charge = Charge(size);
                if (charge > budget)
                {
                    NoRoom = false;
                }
                else if (!reserve(charge))
                {
                    NoRoom = true;
                }
                else
                {
                    Charged = charge;
                }
            }
            if (NoRoom != null)
            {
                transfer?.Begin(st, size);
                return ValueTask.CompletedTask;
            }
            string dir = Path.GetDirectoryName(local)!;
            MirrorFiles.CreateDirectory(dir);
            string temp = Path.Combine(dir, ".copper-tmp-" + Guid.NewGuid().ToString("N"));
            _stream = MirrorFiles.CreateNew(temp);
            TempPath = temp;
            if (size > 0)
            {
                _stream.SetLength(size);
            }
            transfer?.Begin(st, size);
            return ValueTask.CompletedTask;
        }

        public async ValueTask ChunkAsync(ReadOnlyMemory<byte> raw, WireChunk? wire, CancellationToken ct)
        {
            if (_stream != null)
            {
                await _stream.WriteAsync(raw, ct);
            }
            if (transfer is { Streaming: true })
            {
                transfer.Add(wire ?? ChunkCodec.Encode(raw.Span));
            }
        }

        public async ValueTask CloseAsync()
        {
            if (_stream != null)
            {
                FileStream s = _stream;
                _stream = null;
                await s.DisposeAsync();
            }
        }
    }

    private static unsafe void SetTimes(string file, in CopperStat st)
    {
        Interop.Libc.Timespec* times = stackalloc Interop.Libc.Timespec[2];
        times[0] = new Interop.Libc.Timespec { Sec = st.AtimeSec, Nsec = st.AtimeNsec };
        times[1] = new Interop.Libc.Timespec { Sec = st.MtimeSec, Nsec = st.MtimeNsec };
        Interop.Libc.Utimensat(-100 /* AT_FDCWD */, file, times, 0);
    }

    private async Task<T> GetOrFetch<TKey, T>(MetaMap<TKey, T> map, TKey key, Func<TKey, ValueTask<T>> fetch, Func<T, bool> keep)
        where TKey : notnull
    {
        if (map.TryGetValue(key, out Task<T>? existing))
        {
            if (existing.IsCompletedSuccessfully)
            {
                _counters.Hit();
            }
            else
            {
                _counters.Coalesced();
            }
            return await existing;
        }
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Task<T> winner = map.GetOrAdd(key, tcs.Task);
        if (winner != tcs.Task)
        {
            _counters.Coalesced();
            return await winner;
        }
        _counters.Miss();
        try
        {
            T value = await fetch(key);
            if (!keep(value))
            {
                map.TryRemove(key, tcs.Task);
            }
            else
            {
                map.Settle(value);
            }
            tcs.SetResult(value);
            return value;
        }
        catch (Exception ex)
        {
            map.TryRemove(key, tcs.Task);
            tcs.SetException(ex);
            throw;
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "no room in the mirror's budget for {Path} ({Size} bytes; the rest is open): served from the real path")]
    private static partial void LogNoRoom(ILogger logger, string path, long size);

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not materialize {Path}: {Reason}")]
    private static partial void LogMaterializeFailed(ILogger logger, string path, string reason);
}

/// <summary>
/// A file on its way into this node's mirror, as seen by children waiting for it: the header
/// once known, then the encoded chunks as they arrive, then the outcome.
/// </summary>
internal sealed class Transfer(long streamLimit)
{
    private readonly Lock _lock = new();
    private readonly List<WireChunk> _chunks = [];
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<bool> _header = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _done;

    /// <summary>Completes with true when the file streams (header known, chunks follow), false otherwise.</summary>
    public Task<bool> Header => _header.Task;

    public bool Streaming { get; private set; }

    public CopperStat St { get; private set; }

    public long Size { get; private set; }

    /// <summary>0 when every chunk arrived; otherwise why the transfer stopped.</summary>
    public int Status { get; private set; }

    public void Begin(CopperStat st, long size)
    {
        St = st;
        Size = size;
        Streaming = size <= streamLimit;
        _header.TrySetResult(Streaming);
    }

    public void Add(WireChunk chunk)
    {
        TaskCompletionSource old;
        lock (_lock)
        {
            _chunks.Add(chunk);
            old = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        old.TrySetResult();
    }

    public void Finish(int status)
    {
        TaskCompletionSource old;
        lock (_lock)
        {
            if (_done)
            {
                return;
            }
            _done = true;
            Status = status;
            old = _changed;
        }
        _header.TrySetResult(false);
        old.TrySetResult();
    }

    /// <summary>Chunk <paramref name="index"/> once it is here; null when the transfer ended before it.</summary>
    public async ValueTask<WireChunk?> GetAsync(int index, CancellationToken ct)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (index < _chunks.Count)
                {
                    return _chunks[index];
                }
                if (_done)
                {
                    return null;
                }
                wait = _changed.Task;
            }
            await wait.WaitAsync(ct);
        }
    }
}

/// <summary>
/// The mirror's file operations, by the bytes a path stands for (<see cref="PathBytes"/>): a
/// real name that is not UTF-8 keeps its exact bytes in the mirror, where .NET's file APIs
/// would re-encode it (two such names could then collide).
/// </summary>
internal static class MirrorFiles
{
    /// <summary>Creates <paramref name="dir"/> and what is missing above it.</summary>
    public static void CreateDirectory(string dir)
    {
        if (Interop.Libc.Mkdir(dir, 0x1ED /* 0755 */) == 0 || Interop.Libc.Errno == Interop.Libc.EEXIST)
        {
            return;
        }
        if (Interop.Libc.Errno != Interop.Libc.ENOENT || Path.GetDirectoryName(dir) is not { } up || up == dir)
        {
            throw new IOException($"cannot create {dir} (errno {Interop.Libc.Errno})");
        }
        CreateDirectory(up);
        Check(Interop.Libc.Mkdir(dir, 0x1ED) == 0 || Interop.Libc.Errno == Interop.Libc.EEXIST ? 0 : -1, "mkdir", dir);
    }

    /// <summary>A new file (exclusive, mode 0600) to write.</summary>
    public static FileStream CreateNew(string path)
    {
        int fd = Interop.Libc.Open(path, Interop.Libc.O_WRONLY | Interop.Libc.O_CREAT | Interop.Libc.O_EXCL | Interop.Libc.O_CLOEXEC, 0x180);
        Check(fd, "create", path);
        return new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true), FileAccess.Write, 1 << 16);
    }

    /// <summary>
    /// Removes <paramref name="dir"/> and everything below it, by the bytes of each name (.NET's
    /// recursive delete cannot name what is not UTF-8, and would leave the cache behind).
    /// Symlinks are removed, never followed. Best effort: what cannot go stays.
    /// </summary>
    public static void DeleteTree(string dir)
    {
        const byte DtDir = 4, DtUnknown = 0;
        DirAnswer listing = RealFileSystem.List(dir);
        if (listing.Status == 0)
        {
            foreach (DirEntry e in listing.Entries)
            {
                string child = (dir == "/" ? "/" : dir + "/") + PathBytes.Decode(e.Name);
                bool isDir = e.Type == DtDir
                    || (e.Type == DtUnknown && RealFileSystem.Stat(child, follow: false) is { Status: 0 } st && (st.St.Mode & 0xF000) == Interop.Libc.S_IFDIR);
                if (isDir)
                {
                    DeleteTree(child);
                }
                else
                {
                    Interop.Libc.Unlink(child);
                }
            }
        }
        Interop.Libc.Rmdir(dir);
    }

    public static void Check(int rc, string what, string path)
    {
        if (rc < 0)
        {
            throw new IOException($"{what} {path} failed (errno {Interop.Libc.Errno})");
        }
    }
}
