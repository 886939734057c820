// IUpstream over the real file system: what a tree root (or a lone node) does.
// Every real operation is counted by kind, so `copper stats` can show PFS traffic.
using System.Runtime.InteropServices;
using Copper.Interop;

namespace Copper.Agent;

internal sealed class LocalFileSystemUpstream : IUpstream
{
    private readonly Counters _counters;

    public LocalFileSystemUpstream(Counters counters) => _counters = counters;

    public ValueTask<StatAnswer> StatAsync(string path, bool follow, CancellationToken ct)
    {
        Interop.Libc.StatBuf buf;
        int rc;
        if (follow)
        {
            _counters.Pfs(PfsOp.Stat);
            rc = Interop.Libc.Stat(path, out buf);
        }
        else
        {
            _counters.Pfs(PfsOp.Lstat);
            rc = Interop.Libc.Lstat(path, out buf);
        }
        return ValueTask.FromResult(rc == 0
            ? new StatAnswer(0, Interop.Libc.ToCopper(buf))
            : new StatAnswer(Interop.Libc.Errno, default));
    }

    public unsafe ValueTask<LinkAnswer> ReadLinkAsync(string path, CancellationToken ct)
    {
        _counters.Pfs(PfsOp.ReadLink);
        byte[] buf = new byte[Protocol.MaxPath];
        nint n;
        fixed (byte* p = buf)
        {
            n = Interop.Libc.ReadLink(path, p, buf.Length);
        }
        if (n < 0)
        {
            return ValueTask.FromResult(new LinkAnswer(Interop.Libc.Errno, []));
        }
        return ValueTask.FromResult(new LinkAnswer(0, buf.AsSpan(0, (int)n).ToArray()));
    }

    public ValueTask<int> AccessAsync(string path, int mode, CancellationToken ct)
    {
        _counters.Pfs(PfsOp.Access);
        int rc = Interop.Libc.Access(path, mode);
        return ValueTask.FromResult(rc == 0 ? 0 : Interop.Libc.Errno);
    }

    public unsafe ValueTask<DirAnswer> ListDirAsync(string path, CancellationToken ct)
    {
        _counters.Pfs(PfsOp.OpenDir);
        nint dir = Interop.Libc.OpenDir(path);
        if (dir == 0)
        {
            return ValueTask.FromResult(new DirAnswer(Interop.Libc.Errno, []));
        }
        var entries = new List<DirEntry>();
        try
        {
            while (true)
            {
                Marshal.SetLastPInvokeError(0);
                nint ent = Interop.Libc.ReadDir(dir);
                if (ent == 0)
                {
                    int err = Interop.Libc.Errno;
                    if (err != 0)
                    {
                        return ValueTask.FromResult(new DirAnswer(err, []));
                    }
                    break;
                }
                // struct dirent64: u64 d_ino, i64 d_off, u16 d_reclen, u8 d_type, char d_name[].
                byte* p = (byte*)ent;
                ulong ino = *(ulong*)p;
                byte type = p[18];
                var name = new ReadOnlySpan<byte>(p + 19, 256);
                name = name[..name.IndexOf((byte)0)];
                if (name.SequenceEqual("."u8) || name.SequenceEqual(".."u8))
                {
                    continue;
                }
                entries.Add(new DirEntry(name.ToArray(), ino, type));
            }
        }
        finally
        {
            Interop.Libc.CloseDir(dir);
        }
        _counters.Pfs(PfsOp.ReadDir);
        return ValueTask.FromResult(new DirAnswer(0, entries));
    }

    public async ValueTask<FetchAnswer> FetchAsync(string path, long maxBytes, Func<Stream> openDestination, CancellationToken ct)
    {
        _counters.Pfs(PfsOp.Open);
        int fd = Interop.Libc.Open(path, Interop.Libc.O_RDONLY | Interop.Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            return new FetchAnswer(Interop.Libc.Errno, 0, default);
        }
        using var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        if (Interop.Libc.Fstat(fd, out var buf) != 0)
        {
            return new FetchAnswer(Interop.Libc.Errno, 0, default);
        }
        var st = Interop.Libc.ToCopper(buf);
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
        await using (Stream destination = openDestination())
        {
            byte[] chunk = new byte[Math.Clamp(buf.Size, 4096, 1 << 20)];
            long offset = 0;
            while (true)
            {
                int n;
                try
                {
                    n = await RandomAccess.ReadAsync(handle, chunk, offset, ct);
                }
                catch (IOException ex)
                {
                    // A read error is an error, never an empty or short file.
                    return new FetchAnswer(ex.HResult is > 0 and < 4096 ? ex.HResult : 5 /* EIO */, 0, st);
                }
                if (n == 0)
                {
                    break;
                }
                _counters.Pfs(PfsOp.Read);
                _counters.AddPfsBytes(n);
                await destination.WriteAsync(chunk.AsMemory(0, n), ct);
                offset += n;
            }
            if (offset != buf.Size)
            {
                // The file changed under us; let the client read the real path.
                return new FetchAnswer(Protocol.StatusFallback, 0, st);
            }
        }
        return new FetchAnswer(0, OpenKind.File, st);
    }
}
