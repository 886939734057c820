// The mount's operations, one core per FUSE request: each returns 0 or a positive errno and
// its result, and never replies (the handlers in FuseHandlers.cs reply, exactly once). The
// job's view of the file system is a snapshot, so the kernel may cache everything: entries,
// attributes and negative lookups live for the whole timeout, files keep their page cache
// (keep_cache), listings are cached (cache_readdir), and once the kernel offers, open and
// opendir are skipped altogether (no-open). Every write-side request answers EROFS. What the
// backend answers is final: it falls back to the real file system itself (IFuseBackend).
using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Copper.Interop;
using Microsoft.Win32.SafeHandles;
using static Copper.Agent.Interop.Fuse;

namespace Copper.Agent;

internal sealed unsafe class FuseOps : IDisposable
{
    private const int EIO = 5, ENOENT = 2, EROFS = 30, EISDIR = 21, EBADF = 9, ENOSYS = 38, W_OK = 2;
    private const int O_ACCMODE = 3, O_TRUNC = 0x200;
    private const byte DtDir = 4;

    private readonly IFuseBackend _fs;
    private readonly FuseInodes _inodes = new();
    private readonly Action<ulong> _forgetAttributes;
    private readonly Action<long>? _onRead;

    /// <summary>
    /// Open files (SafeFileHandle, owned here) and directories (DirHandle) by fh: added by
    /// open/opendir, removed by release/releasedir or when the open's reply did not arrive.
    /// </summary>
    private readonly ConcurrentDictionary<ulong, object> _handles = new();

    /// <summary>The last fh given (Interlocked).</summary>
    private long _lastFh;

    /// <summary>Inodes whose attributes the kernel was told to forget: once each.</summary>
    private readonly ConcurrentDictionary<ulong, byte> _staleTold = new();

    /// <summary>Set by <see cref="Init"/>, before the kernel sends any other request.</summary>
    private volatile bool _noOpen, _noOpendir;

    /// <param name="forgetAttributes">Tells the kernel to drop the attributes it cached for an inode.</param>
    /// <param name="kernelCaching">See <see cref="FuseMount.Start"/>.</param>
    public FuseOps(IFuseBackend fs, Action<ulong> forgetAttributes, double timeout, bool kernelCaching, Action<long>? onRead)
    {
        _fs = fs;
        _forgetAttributes = forgetAttributes;
        KernelCaching = kernelCaching;
        Timeout = kernelCaching ? timeout : 0;
        _onRead = onRead;
    }

    public bool KernelCaching { get; }

    /// <summary>How long the kernel keeps entries, attributes and negative lookups, in seconds.</summary>
    public double Timeout { get; }

    /// <summary>An open directory: its entries ("." and ".." first) with their inode numbers.</summary>
    private sealed record DirHandle((byte[] Name, ulong Ino, byte Type, string? Child)[] Entries);

    /// <summary>What an open or opendir gives the kernel: the handle and the fuse_file_info bits.</summary>
    public readonly record struct Opened(ulong Fh, uint Bits);

    /// <summary>Bytes read into a buffer from the shared pool (given back by <see cref="Return"/>).</summary>
    public readonly record struct ReadBytes(byte[] Buffer, int Count);

    /// <summary>A reply buffer of native memory (freed by <see cref="Free"/>).</summary>
    public readonly record struct NativeBytes(nint Buffer, nuint Count);

    /// <summary>
    /// The kernel offers to stop sending open/release (and opendir/releasedir): with the job's
    /// snapshot there is nothing to do on them, so once the first open answers ENOSYS every later
    /// open of any file is free, and the page cache and directory cache are kept. Symlink targets
    /// are cached by the kernel too. Without kernel caching the kernel is offered nothing.
    /// </summary>
    public void Init(ConnInfo* conn)
    {
        if (!KernelCaching)
        {
            return;
        }
        _noOpen = (conn->Capable & CapNoOpenSupport) != 0;
        _noOpendir = (conn->Capable & CapNoOpendirSupport) != 0;
        if ((conn->Capable & CapCacheSymlinks) != 0)
        {
            conn->Want |= CapCacheSymlinks;
        }
    }

    /// <summary>An entry, or (0 with inode 0) a negative entry the kernel remembers for the timeout.</summary>
    public int Lookup(ulong parent, ReadOnlySpan<byte> name, out EntryParam e)
    {
        e = new EntryParam { EntryTimeout = Timeout, AttrTimeout = Timeout };
        if (!_inodes.TryGetPath(parent, out string? dir))
        {
            return ENOENT;
        }
        string path = FuseInodes.Child(dir, PathBytes.Decode(name));
        StatAnswer a = _fs.Lstat(path);
        if (a.Status == ENOENT)
        {
            return 0;
        }
        if (a.Status != 0)
        {
            return Errno(a.Status);
        }
        e.Ino = _inodes.Ref(path);
        e.Attr = Interop.Libc.FromCopper(a.St, e.Ino);
        return 0;
    }

    /// <summary>The kernel dropped <paramref name="lookups"/> lookups of <paramref name="ino"/> (FORGET).</summary>
    public void Forget(ulong ino, ulong lookups) => _inodes.Forget(ino, lookups);

    /// <summary>Inodes the kernel holds now.</summary>
    public int Inodes => _inodes.Count;

    public int Getattr(ulong ino, out Interop.Libc.StatBuf st)
    {
        st = default;
        if (!_inodes.TryGetPath(ino, out string? path))
        {
            return ENOENT;
        }
        StatAnswer a = _fs.Lstat(path);
        if (a.Status != 0)
        {
            return Errno(a.Status);
        }
        st = Interop.Libc.FromCopper(a.St, ino);
        return 0;
    }

    /// <summary>The link's target, NUL-terminated.</summary>
    public int Readlink(ulong ino, out byte[] target)
    {
        target = [];
        if (!_inodes.TryGetPath(ino, out string? path))
        {
            return ENOENT;
        }
        LinkAnswer a = _fs.ReadLink(path);
        if (a.Status != 0)
        {
            return Errno(a.Status);
        }
        target = new byte[a.Target.Length + 1];
        a.Target.CopyTo(target, 0);
        return 0;
    }

    /// <summary>A handle on the file to read; ENOSYS in no-open mode (reads then come with fh 0).</summary>
    public int Open(ulong ino, int flags, out Opened opened)
    {
        opened = default;
        if ((flags & O_ACCMODE) != 0 || (flags & O_TRUNC) != 0)
        {
            return EROFS;
        }
        if (_noOpen)
        {
            int known = FileOf(ino, out _);
            return known != 0 ? known : ENOSYS;
        }
        int err = OpenByInode(ino, out SafeFileHandle? h);
        if (err != 0)
        {
            return err;
        }
        ulong fh = (ulong)Interlocked.Increment(ref _lastFh);
        _handles[fh] = h!;
        opened = new Opened(fh, KernelCaching ? KeepCache : 0);
        return 0;
    }

    /// <summary>The reply to an open or opendir did not arrive (the opener was interrupted): no release will come.</summary>
    public void Abandon(ulong fh)
    {
        if (_handles.TryRemove(fh, out object? o) && o is IDisposable d)
        {
            d.Dispose();
        }
    }

    /// <summary>Up to <paramref name="size"/> bytes (at most 4 MiB) at <paramref name="off"/>; fh 0 in no-open mode.</summary>
    public int Read(ulong ino, ulong fh, nuint size, long off, out ReadBytes read)
    {
        read = default;
        SafeFileHandle? opened = null;
        SafeFileHandle h;
        if (fh == 0)
        {
            // No-open mode: the file by inode, opened for this read only.
            int err = OpenByInode(ino, out opened);
            if (err != 0)
            {
                return err;
            }
            h = opened!;
        }
        else if (_handles.TryGetValue(fh, out object? o) && o is SafeFileHandle held)
        {
            h = held;
        }
        else
        {
            return EBADF;
        }
        using SafeFileHandle? owned = opened;
        int want = (int)Math.Min(size, 4u << 20);
        byte[] buf = ArrayPool<byte>.Shared.Rent(Math.Max(want, 1));
        try
        {
            int n = RandomAccess.Read(h, buf.AsSpan(0, want), off);
            _onRead?.Invoke(n);
            read = new ReadBytes(buf, n);
            return 0;
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buf);
            throw;
        }
    }

    public static void Return(ReadBytes read) => ArrayPool<byte>.Shared.Return(read.Buffer);

    public int Release(ulong fh)
    {
        Abandon(fh);
        return 0;
    }

    /// <summary>The directory's listing, held until releasedir; ENOSYS in no-opendir mode (readdir then comes with fh 0).</summary>
    public int Opendir(ulong ino, out Opened opened)
    {
        opened = default;
        int err = ListByInode(ino, out DirHandle? d);
        if (err != 0)
        {
            return err;
        }
        if (_noOpendir)
        {
            return ENOSYS;
        }
        ulong fh = (ulong)Interlocked.Increment(ref _lastFh);
        _handles[fh] = d!;
        opened = new Opened(fh, KernelCaching ? KeepCache | CacheReaddir : 0);
        return 0;
    }

    /// <summary>
    /// The entries from <paramref name="off"/> on that fit in <paramref name="size"/> bytes, as
    /// libfuse lays them out for <paramref name="req"/>. With <paramref name="plus"/>, attributes
    /// only for entries this node already knows: the kernel treats inode 0 as "no attributes",
    /// and nothing is fetched for them.
    /// </summary>
    public int Readdir(nint req, ulong ino, ulong fh, nuint size, long off, bool plus, out NativeBytes reply)
    {
        reply = default;
        DirHandle? d;
        if (fh == 0)
        {
            int err = ListByInode(ino, out d);
            if (err != 0)
            {
                return err;
            }
        }
        else if (!_handles.TryGetValue(fh, out object? o) || (d = o as DirHandle) == null)
        {
            return EBADF;
        }
        byte* buf = (byte*)NativeMemory.Alloc(size == 0 ? 1 : size);
        try
        {
            nuint used = 0;
            for (long i = Math.Max(off, 0); i < d!.Entries.Length; i++)
            {
                (byte[] name, ulong eino, byte type, string? child) = d.Entries[i];
                byte[] z = new byte[name.Length + 1];
                name.CopyTo(z, 0);
                nuint need;
                ulong counted = 0;
                fixed (byte* zn = z)
                {
                    if (plus)
                    {
                        var e = new EntryParam { EntryTimeout = Timeout, AttrTimeout = Timeout };
                        if (child != null && _fs.PeekLstat(child, type, out CopperStat st) == 0)
                        {
                            // The kernel counts a lookup for each entry with attributes ("." and ".." have none).
                            counted = _inodes.Ref(child);
                            e.Ino = counted;
                            e.Attr = Interop.Libc.FromCopper(st, counted);
                        }
                        else
                        {
                            e.Attr.Ino = eino;
                            e.Attr.Mode = (uint)type << 12;
                        }
                        need = AddDirentryPlus(req, buf + used, size - used, zn, &e, i + 1);
                    }
                    else
                    {
                        var st = new Interop.Libc.StatBuf { Ino = eino, Mode = (uint)type << 12 };
                        need = AddDirentry(req, buf + used, size - used, zn, &st, i + 1);
                    }
                }
                if (need > size - used)
                {
                    if (counted != 0)
                    {
                        // Not sent: the kernel will not count it.
                        _inodes.Forget(counted, 1);
                    }
                    break;
                }
                used += need;
            }
            reply = new NativeBytes((nint)buf, used);
            return 0;
        }
        catch
        {
            NativeMemory.Free(buf);
            throw;
        }
    }

    public static void Free(NativeBytes bytes) => NativeMemory.Free((void*)bytes.Buffer);

    public int Releasedir(ulong fh)
    {
        _handles.TryRemove(fh, out _);
        return 0;
    }

    /// <summary>The backend's file system, read-only; a neutral answer when it cannot be asked.</summary>
    public int Statfs(out StatVfs v)
    {
        if (Statvfs(_fs.StatfsPath, out v) != 0)
        {
            v = new StatVfs { Bsize = 4096, Frsize = 4096, Namemax = 255 };
        }
        v.Flag |= ST_RDONLY;
        return 0;
    }

    public int Access(ulong ino, int mask)
    {
        if ((mask & W_OK) != 0)
        {
            return EROFS;
        }
        return _inodes.TryGetPath(ino, out string? path) ? Errno(_fs.Access(path, mask)) : ENOENT;
    }

    /// <summary>Every write-side request.</summary>
    public static int Refuse() => EROFS;

    /// <summary>Closes the files still open (after the session has stopped).</summary>
    public void Dispose()
    {
        foreach (ulong fh in _handles.Keys)
        {
            Abandon(fh);
        }
    }

    /// <summary>0 stays 0; a backend status that is not an errno (a backend must not give one) is EIO.</summary>
    private static int Errno(int status) => status >= 0 ? status : EIO;

    /// <summary>The file to read for <paramref name="ino"/>: the backend's answer (0 or an errno).</summary>
    private int FileOf(ulong ino, out string? file)
    {
        file = null;
        if (!_inodes.TryGetPath(ino, out string? path))
        {
            return ENOENT;
        }
        OpenAnswer a = _fs.Open(path);
        ForgetStaleAttributes(ino, a);
        if (a.Status != 0)
        {
            return Errno(a.Status);
        }
        if (a.Kind == OpenKind.Dir)
        {
            return EISDIR;
        }
        file = PathBytes.Decode(a.LocalPath);
        return 0;
    }

    /// <summary>
    /// The file changed after the kernel was given its attributes: tell it to ask again (only the
    /// attributes, so no page lock is taken inside a request), so the size it clips reads at
    /// becomes the size of the bytes served. Once per inode.
    /// </summary>
    private void ForgetStaleAttributes(ulong ino, OpenAnswer a)
    {
        if (a.Changed && _staleTold.TryAdd(ino, 0))
        {
            _forgetAttributes(ino);
        }
    }

    /// <summary>
    /// Opens the file to read for <paramref name="ino"/>. A mirror copy evicted between the answer
    /// and the open is gone (ENOENT): the next answer materializes it again, or names the real file.
    /// </summary>
    private int OpenByInode(ulong ino, out SafeFileHandle? h)
    {
        h = null;
        for (int attempt = 0; ; attempt++)
        {
            int err = FileOf(ino, out string? file);
            if (err != 0)
            {
                return err;
            }
            err = OpenRead(file!, out h);
            if (err != ENOENT || attempt == 1)
            {
                return err;
            }
        }
    }

    /// <summary>
    /// Opens <paramref name="file"/> for reading by the bytes it stands for (File.OpenHandle would
    /// re-encode a name that is not UTF-8). 0 or an errno.
    /// </summary>
    private static int OpenRead(string file, out SafeFileHandle? h)
    {
        int fd = Interop.Libc.Open(file, Interop.Libc.O_RDONLY | Interop.Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            h = null;
            return Interop.Libc.Errno;
        }
        h = new SafeFileHandle(fd, ownsHandle: true);
        return 0;
    }

    /// <summary>The entries of the directory at <paramref name="ino"/>, with "." and ".." first.</summary>
    private int ListByInode(ulong ino, out DirHandle? d)
    {
        d = null;
        if (!_inodes.TryGetPath(ino, out string? path))
        {
            return ENOENT;
        }
        DirAnswer a = _fs.List(path);
        if (a.Status != 0)
        {
            return Errno(a.Status);
        }
        var entries = new (byte[], ulong, byte, string?)[a.Entries.Count + 2];
        entries[0] = ("."u8.ToArray(), ino, DtDir, null);
        entries[1] = (".."u8.ToArray(), _inodes.Peek(FuseInodes.Parent(path)), DtDir, null);
        for (int i = 0; i < a.Entries.Count; i++)
        {
            DirEntry e = a.Entries[i];
            string child = FuseInodes.Child(path, PathBytes.Decode(e.Name));
            entries[i + 2] = (e.Name, _inodes.Peek(child), e.Type, child);
        }
        d = new DirHandle(entries);
        return 0;
    }
}
