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

internal sealed record OpenAnswer(int Status, OpenKind Kind, CopperStat St, byte[] LocalPath);

internal sealed partial class NodeCache
{
    private readonly IUpstream _upstream;
    private readonly Counters _counters;
    private readonly ILogger _log;
    private readonly long _maxBytes;
    private readonly ConcurrentDictionary<string, Task<StatAnswer>> _stat = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Task<StatAnswer>> _lstat = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Task<LinkAnswer>> _links = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string, int), Task<int>> _access = new();
    private readonly ConcurrentDictionary<string, Task<DirAnswer>> _dirs = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, HashSet<string>> _dirNames = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Task<OpenAnswer>> _open = new(StringComparer.Ordinal);

    public NodeCache(IUpstream upstream, Counters counters, ILogger log, string mirrorRoot, long maxBytes)
    {
        _upstream = upstream;
        _counters = counters;
        _log = log;
        MirrorRoot = mirrorRoot;
        _maxBytes = maxBytes;
    }

    public string MirrorRoot { get; }

    public long MaxBytes => _maxBytes;

    public Task<StatAnswer> StatAsync(string path, bool follow, CancellationToken ct)
    {
        if (AbsentFromParentListing(path))
        {
            _counters.Hit();
            return Task.FromResult(new StatAnswer(Interop.Libc.ENOENT, default));
        }
        return GetOrFetch(follow ? _stat : _lstat, path, p => _upstream.StatAsync(p, follow, ct), a => a.Status >= 0);
    }

    public Task<LinkAnswer> ReadLinkAsync(string path, CancellationToken ct)
    {
        if (AbsentFromParentListing(path))
        {
            _counters.Hit();
            return Task.FromResult(new LinkAnswer(Interop.Libc.ENOENT, []));
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
                    names.Add(Encoding.UTF8.GetString(e.Name));
                }
                _dirNames[p] = names;
            }
            return answer;
        }, a => a.Status >= 0);

    public Task<OpenAnswer> OpenAsync(string path, CancellationToken ct)
    {
        if (AbsentFromParentListing(path))
        {
            _counters.Hit();
            return Task.FromResult(new OpenAnswer(Interop.Libc.ENOENT, 0, default, []));
        }
        return GetOrFetch(_open, path, p => MaterializeAsync(p, ct), a => a.Status >= 0 || a.Status == Protocol.StatusTooBig);
    }

    /// <summary>The node-local path standing for a real path (the mirror keeps real paths' shape).</summary>
    public string LocalPathOf(string path) => path == "/" ? MirrorRoot : MirrorRoot + path;

    private bool AbsentFromParentListing(string path)
    {
        if (path == "/")
        {
            return false;
        }
        int slash = path.LastIndexOf('/');
        string parent = slash == 0 ? "/" : path[..slash];
        return _dirNames.TryGetValue(parent, out var names) && !names.Contains(path[(slash + 1)..]);
    }

    private async ValueTask<OpenAnswer> MaterializeAsync(string path, CancellationToken ct)
    {
        string local = LocalPathOf(path);
        string? temp = null;
        try
        {
            FetchAnswer fetched = await _upstream.FetchAsync(path, _maxBytes, () =>
            {
                Directory.CreateDirectory(Path.GetDirectoryName(local)!);
                temp = Path.Combine(Path.GetDirectoryName(local)!, ".copper-tmp-" + Guid.NewGuid().ToString("N"));
                return new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
            }, ct);
            if (fetched.Status != 0)
            {
                return new OpenAnswer(fetched.Status, 0, fetched.St, []);
            }
            if (fetched.Kind == OpenKind.Dir)
            {
                Directory.CreateDirectory(local);
                return new OpenAnswer(0, OpenKind.Dir, fetched.St, Encoding.UTF8.GetBytes(local));
            }
            // Keep the real mode (so exec works) minus set-id bits, readable by the owner, and the
            // real times (Python compares a .pyc with its source's mtime), then publish atomically.
            var mode = (UnixFileMode)((fetched.St.Mode & 0x1FF) | 0x100);
            File.SetUnixFileMode(temp!, mode);
            SetTimes(temp!, fetched.St);
            File.Move(temp!, local, overwrite: true);
            temp = null;
            return new OpenAnswer(0, OpenKind.File, fetched.St, Encoding.UTF8.GetBytes(local));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogMaterializeFailed(_log, path, ex.Message);
            return new OpenAnswer(Protocol.StatusFallback, 0, default, []);
        }
        finally
        {
            if (temp != null)
            {
                try
                {
                    File.Delete(temp);
                }
                catch (IOException)
                {
                }
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

    private async Task<T> GetOrFetch<TKey, T>(ConcurrentDictionary<TKey, Task<T>> map, TKey key, Func<TKey, ValueTask<T>> fetch, Func<T, bool> keep)
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
                map.TryRemove(key, out _);
            }
            tcs.SetResult(value);
            return value;
        }
        catch (Exception ex)
        {
            map.TryRemove(key, out _);
            tcs.SetException(ex);
            throw;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not materialize {Path}: {Reason}")]
    private static partial void LogMaterializeFailed(ILogger logger, string path, string reason);
}
