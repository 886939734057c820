// IUpstream over the real file system: what a tree root (or a lone node) does.
// Every real operation is counted by kind, so `copper stats` can show PFS traffic, and
// recorded by path for the job's manifest (Manifest.cs) when the agent keeps one.
using Copper.Interop;

namespace Copper.Agent;

internal sealed class LocalFileSystemUpstream : IUpstream
{
    private readonly Counters _counters;
    private readonly PfsTrace? _trace;
    private readonly string[] _own;

    /// <summary>Where each question asked of the file system is recorded (a manifest's source), or null.</summary>
    public ManifestRecorder? Recorder { get; set; }

    /// <param name="prefix">
    /// The Copper prefix and the agent's mount point: a real path below it (or below a
    /// simulated node's PREFIX.n&lt;k&gt;) is Copper's own view, which is the real path with that
    /// prefix stripped. Resolving it through the kernel would enter the agent's own mount, once
    /// per level, until every FUSE worker waits on itself.
    /// </param>
    public LocalFileSystemUpstream(Counters counters, PfsTrace? trace = null, params string?[] prefix)
    {
        _counters = counters;
        _trace = trace;
        _own = prefix.OfType<string>().Distinct().ToArray();
    }

    private string Real(string path)
    {
        string before;
        do
        {
            before = path;
            foreach (string p in _own)
            {
                path = PathPolicy.StripOwnPrefix(path, p);
            }
        }
        while (!ReferenceEquals(before, path));
        return path;
    }

    private void Count(PfsOp op, string path)
    {
        _counters.Pfs(op);
        _trace?.Write(op, path);
    }

    public ValueTask<StatAnswer> StatAsync(string path, bool follow, CancellationToken ct)
    {
        path = Real(path);
        Count(follow ? PfsOp.Stat : PfsOp.Lstat, path);
        StatAnswer a = RealFileSystem.Stat(path, follow);
        Recorder?.Record(path, follow ? Asked.Stat : Asked.Lstat, a.Status, a.St);
        return ValueTask.FromResult(a);
    }

    public ValueTask<LinkAnswer> ReadLinkAsync(string path, CancellationToken ct)
    {
        path = Real(path);
        Count(PfsOp.ReadLink, path);
        LinkAnswer a = RealFileSystem.ReadLink(path);
        Recorder?.Record(path, Asked.ReadLink, a.Status);
        return ValueTask.FromResult(a);
    }

    public ValueTask<int> AccessAsync(string path, int mode, CancellationToken ct)
    {
        path = Real(path);
        Count(PfsOp.Access, path);
        int status = RealFileSystem.Access(path, mode);
        Recorder?.Record(path, Asked.Access, status, accessMode: mode);
        return ValueTask.FromResult(status);
    }

    public ValueTask<DirAnswer> ListDirAsync(string path, CancellationToken ct)
    {
        path = Real(path);
        Count(PfsOp.OpenDir, path);
        DirAnswer a = RealFileSystem.List(path);
        Recorder?.Record(path, Asked.List, a.Status);
        if (a.Status == 0)
        {
            Count(PfsOp.ReadDir, path);
        }
        return ValueTask.FromResult(a);
    }

    public async ValueTask<FetchAnswer> FetchAsync(string path, long maxBytes, IFetchSink sink, CancellationToken ct)
    {
        path = Real(path);
        Count(PfsOp.Open, path);
        int fd = Interop.Libc.Open(path, Interop.Libc.O_RDONLY | Interop.Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            int errno = Interop.Libc.Errno;
            Recorder?.Record(path, Asked.Open, errno);
            return new FetchAnswer(errno, 0, default);
        }
        using var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        if (Interop.Libc.Fstat(fd, out var buf) != 0)
        {
            return new FetchAnswer(Interop.Libc.Errno, 0, default);
        }
        var st = Interop.Libc.ToCopper(buf);
        Recorder?.Record(path, Asked.Open, 0, st);
        uint type = buf.Mode & Interop.Libc.S_IFMT;
        if (type == Interop.Libc.S_IFDIR)
        {
            return new FetchAnswer(0, OpenKind.Dir, st);
        }
        if (type != Interop.Libc.S_IFREG)
        {
            return new FetchAnswer(Protocol.StatusFallback, 0, st);
        }
        if (buf.Size > maxBytes)
        {
            return new FetchAnswer(Protocol.StatusTooBig, 0, st);
        }
        await sink.BeginAsync(st, buf.Size, ct);
        byte[] chunk = new byte[Math.Clamp(buf.Size, 4096, ChunkCodec.ChunkBytes)];
        long offset = 0;
        bool eof = false;
        while (!eof)
        {
            // Fill a whole chunk (a short read is not the end of the file).
            int filled = 0;
            while (filled < chunk.Length)
            {
                int n;
                try
                {
                    n = await RandomAccess.ReadAsync(handle, chunk.AsMemory(filled), offset + filled, ct);
                }
                catch (IOException ex)
                {
                    // A read error is an error, never an empty or short file.
                    return new FetchAnswer(ex.HResult is > 0 and < 4096 ? ex.HResult : 5 /* EIO */, 0, st);
                }
                if (n == 0)
                {
                    eof = true;
                    break;
                }
                _counters.Pfs(PfsOp.Read);
                _counters.AddPfsBytes(n);
                filled += n;
            }
            if (filled > 0)
            {
                await sink.ChunkAsync(chunk.AsMemory(0, filled), null, ct);
                offset += filled;
            }
        }
        if (offset != buf.Size)
        {
            // The file changed under us; let the client read the real path.
            return new FetchAnswer(Protocol.StatusFallback, 0, st);
        }
        return new FetchAnswer(0, OpenKind.File, st);
    }
}

/// <summary>Optional record of every real file-system operation ("op\tpath" lines), for tests and audits.</summary>
internal sealed class PfsTrace : IDisposable
{
    private readonly StreamWriter _writer;
    private readonly Lock _lock = new();

    public PfsTrace(string file)
    {
        _writer = new StreamWriter(new FileStream(file, FileMode.Create, FileAccess.Write, FileShare.Read)) { AutoFlush = true };
    }

    public void Write(PfsOp op, string path)
    {
        lock (_lock)
        {
            _writer.Write(op.ToString().ToLowerInvariant());
            _writer.Write('\t');
            _writer.Write(path);
            _writer.Write('\n');
        }
    }

    public void Dispose() => _writer.Dispose();
}
