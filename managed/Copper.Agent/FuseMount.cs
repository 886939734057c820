// The agent's second door: the prefix mounted read-only with libfuse3's low-level API,
// served from the same NodeCache (so the same tree) as the shim. The job's view of the
// file system is a snapshot, so the kernel may cache everything: entries, attributes and
// negative lookups live for the whole timeout, files keep their page cache (keep_cache),
// and directory listings are cached too (cache_readdir). Every write-side operation
// answers EROFS. Each callback replies exactly once and never lets an exception escape.
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Copper.Interop;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using static Copper.Agent.Interop.Fuse;

namespace Copper.Agent;

internal sealed unsafe partial class FuseMount : IDisposable
{
    private const int EIO = 5, ENOENT = 2, EROFS = 30, EISDIR = 21, ENOTDIR = 20, EBADF = 9, W_OK = 2;
    private const byte DtDir = 4;

    private static FuseMount? s_mount;

    private readonly IFuseBackend _fs;
    private readonly ILogger _log;
    private readonly bool _kernelCaching;
    private readonly double _timeout;
    private readonly Action<long>? _onRead;
    private readonly ConcurrentDictionary<string, ulong> _inoOf = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<ulong, string> _pathOf = new();
    private readonly ConcurrentDictionary<ulong, object> _handles = new();
    private readonly long[] _requests = new long[Enum.GetValues<FuseOp>().Length];
    private long _nextIno = 1;
    private long _nextFh;
    private nint _session;
    private readonly ConcurrentDictionary<ulong, byte> _staleTold = new();
    private Thread? _loop;
    private Ops* _ops;
    private volatile bool _noOpen;
    private volatile bool _noOpendir;

    private FuseMount(IFuseBackend fs, ILogger log, string mountPoint, double timeout, bool kernelCaching, Action<long>? onRead)
    {
        _fs = fs;
        _log = log;
        MountPoint = mountPoint;
        _kernelCaching = kernelCaching;
        _timeout = kernelCaching ? timeout : 0;
        _onRead = onRead;
        _inoOf["/"] = 1;
        _pathOf[1] = "/";
    }

    internal enum FuseOp
    {
        Lookup, Getattr, Readlink, Open, Read, Release, Opendir, Readdir, Readdirplus, Releasedir,
        Statfs, Access, Forget, Refused,
    }

    public string MountPoint { get; }

    /// <summary>FUSE requests served, by operation (for `copper stats`).</summary>
    public void DescribeTo(System.Text.Json.Utf8JsonWriter w)
    {
        w.WriteString("fuse_mount", MountPoint);
        w.WriteStartObject("fuse_requests");
        long total = 0;
        foreach (FuseOp op in Enum.GetValues<FuseOp>())
        {
            long n = Interlocked.Read(ref _requests[(int)op]);
            total += n;
            w.WriteNumber(op.ToString().ToLowerInvariant(), n);
        }
        w.WriteNumber("total", total);
        w.WriteEndObject();
    }

    /// <summary>
    /// Throws when <paramref name="mountPoint"/> holds entries: a mount over them would hide them
    /// from everyone on the node. A mount left there by a killed agent cannot be listed
    /// (ENOTCONN) and is mounted over, as before.
    /// </summary>
    private static void RefuseToHide(string mountPoint)
    {
        string[] entries;
        try
        {
            entries = Directory.EnumerateFileSystemEntries(mountPoint).Take(1000).ToArray();
        }
        catch (UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"{mountPoint} cannot be listed: it may hold files a mount would hide");
        }
        catch (IOException)
        {
            return;
        }
        if (entries.Length > 0)
        {
            string count = entries.Length switch { 1 => "1 entry", 1000 => "1000 entries or more", int n => $"{n} entries" };
            throw new InvalidOperationException(
                $"{mountPoint} is not empty ({count}, e.g. '{Path.GetFileName(entries[0])}'): mounting there would hide them; use a new or empty directory");
        }
    }

    /// <summary>
    /// Mounts <paramref name="mountPoint"/> and serves it on libfuse's threads. With
    /// <paramref name="kernelCaching"/> the kernel keeps entries, attributes and negative lookups
    /// for <paramref name="timeout"/> seconds, and file pages and listings (keep_cache, no-open);
    /// without it the kernel caches nothing and every client operation reaches the backend (the
    /// benchmarks' PFS model). <paramref name="onRead"/> hears the bytes of each read served.
    /// </summary>
    public static FuseMount Start(IFuseBackend fs, ILogger log, string mountPoint, double timeout, bool kernelCaching = true, Action<long>? onRead = null)
    {
        if (s_mount != null)
        {
            throw new InvalidOperationException("one FUSE mount per agent");
        }
        Load();
        Directory.CreateDirectory(mountPoint);
        RefuseToHide(mountPoint);
        var m = new FuseMount(fs, log, mountPoint, timeout, kernelCaching, onRead);
        m._ops = (Ops*)NativeMemory.AllocZeroed((nuint)sizeof(Ops));
        m._ops->Init = (nint)(delegate* unmanaged<void*, ConnInfo*, void>)&OnInit;
        m._ops->Lookup = (nint)(delegate* unmanaged<nint, ulong, byte*, void>)&OnLookup;
        m._ops->Forget = (nint)(delegate* unmanaged<nint, ulong, ulong, void>)&OnForget;
        m._ops->ForgetMulti = (nint)(delegate* unmanaged<nint, nuint, void*, void>)&OnForgetMulti;
        m._ops->Getattr = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&OnGetattr;
        m._ops->Readlink = (nint)(delegate* unmanaged<nint, ulong, void>)&OnReadlink;
        m._ops->Open = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&OnOpen;
        m._ops->Read = (nint)(delegate* unmanaged<nint, ulong, nuint, long, FuseFileInfo*, void>)&OnRead;
        m._ops->Release = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&OnRelease;
        m._ops->Opendir = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&OnOpendir;
        m._ops->Readdir = (nint)(delegate* unmanaged<nint, ulong, nuint, long, FuseFileInfo*, void>)&OnReaddir;
        m._ops->Readdirplus = (nint)(delegate* unmanaged<nint, ulong, nuint, long, FuseFileInfo*, void>)&OnReaddirplus;
        m._ops->Releasedir = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&OnReleasedir;
        m._ops->Statfs = (nint)(delegate* unmanaged<nint, ulong, void>)&OnStatfs;
        m._ops->Access = (nint)(delegate* unmanaged<nint, ulong, int, void>)&OnAccess;
        // Write side: the first argument is the request, the rest is ignored (System V ABI).
        nint refuse = (nint)(delegate* unmanaged<nint, void>)&OnRefused;
        m._ops->Setattr = m._ops->Mknod = m._ops->Mkdir = m._ops->Unlink = m._ops->Rmdir = refuse;
        m._ops->Symlink = m._ops->Rename = m._ops->Link = m._ops->Write = m._ops->Create = refuse;
        m._ops->Setxattr = m._ops->Removexattr = m._ops->Fallocate = m._ops->CopyFileRange = m._ops->WriteBuf = refuse;

        // As root (a node daemon), other users may use the mount too: default_permissions makes
        // the kernel check every access against the real modes, as on the real file system.
        string opts = "ro,default_permissions,fsname=copper,subtype=copper" + (Interop.Libc.GetUid() == 0 ? ",allow_other" : "");
        string[] argv = ["copper-agent", "-o", opts];
        byte** av = (byte**)NativeMemory.AllocZeroed((nuint)(sizeof(nint) * (argv.Length + 1)));
        for (int i = 0; i < argv.Length; i++)
        {
            av[i] = Utf8(argv[i]);
        }
        var args = new Args { Argc = argv.Length, Argv = av, Allocated = 0 };
        s_mount = m;
        m._session = SessionNew(&args, m._ops, (nuint)sizeof(Ops), null);
        if (m._session == 0)
        {
            s_mount = null;
            throw new InvalidOperationException("fuse_session_new failed");
        }
        byte* mp = Utf8(mountPoint);
        int rc = SessionMount(m._session, mp);
        NativeMemory.Free(mp);
        if (rc != 0)
        {
            SessionDestroy(m._session);
            s_mount = null;
            throw new InvalidOperationException($"cannot mount {mountPoint} (is /dev/fuse usable, the directory empty and not mounted?)");
        }
        m._loop = new Thread(() =>
        {
            var cfg = new LoopConfig { CloneFd = 0, MaxIdleThreads = 10 };
            SessionLoopMt(m._session, &cfg);
        })
        { IsBackground = true, Name = "copper-fuse" };
        m._loop.Start();
        return m;
    }

    public void Dispose()
    {
        if (_session == 0)
        {
            return;
        }
        SessionExit(_session);
        SessionUnmount(_session);
        _loop?.Join(TimeSpan.FromSeconds(5));
        SessionDestroy(_session);
        _session = 0;
        s_mount = null;
    }

    private static byte* Utf8(string s)
    {
        int n = Encoding.UTF8.GetByteCount(s);
        byte* p = (byte*)NativeMemory.Alloc((nuint)n + 1);
        Encoding.UTF8.GetBytes(s, new Span<byte>(p, n));
        p[n] = 0;
        return p;
    }

    private void Count(FuseOp op) => Interlocked.Increment(ref _requests[(int)op]);

    private ulong InoOf(string path) =>
        _inoOf.GetOrAdd(path, p =>
        {
            ulong ino = (ulong)Interlocked.Increment(ref _nextIno);
            _pathOf[ino] = p;
            return ino;
        });

    private static string Join(string dir, ReadOnlySpan<byte> name) =>
        (dir == "/" ? "/" : dir + "/") + PathBytes.Decode(name);

    private static ReadOnlySpan<byte> CString(byte* p) => MemoryMarshal.CreateReadOnlySpanFromNullTerminated(p);

    private StatAnswer Lstat(string path) => _fs.Lstat(path);

    /// <summary>Runs a callback body: any exception becomes EIO, so the request still gets its one reply.</summary>
    private static void Guard(nint req, FuseOp op, Action<FuseMount> body)
    {
        FuseMount? m = s_mount;
        if (m == null)
        {
            ReplyErr(req, EIO);
            return;
        }
        m.Count(op);
        try
        {
            body(m);
        }
        catch (Exception ex)
        {
            LogCallbackFailed(m._log, op.ToString(), ex.Message);
            ReplyErr(req, EIO);
        }
    }

    /// <summary>
    /// The kernel offers to stop sending open/release (and opendir/releasedir): with the
    /// job's snapshot there is nothing to do on them, so once the first open answers ENOSYS
    /// every later open of any file is free, and the page cache and directory cache are kept.
    /// Symlink targets are cached by the kernel too.
    /// </summary>
    [UnmanagedCallersOnly]
    private static void OnInit(void* userdata, ConnInfo* conn)
    {
        FuseMount? m = s_mount;
        if (m == null)
        {
            return;
        }
        if (!m._kernelCaching)
        {
            return;
        }
        m._noOpen = (conn->Capable & CapNoOpenSupport) != 0;
        m._noOpendir = (conn->Capable & CapNoOpendirSupport) != 0;
        if ((conn->Capable & CapCacheSymlinks) != 0)
        {
            conn->Want |= CapCacheSymlinks;
        }
    }

    [UnmanagedCallersOnly]
    private static void OnLookup(nint req, ulong parent, byte* name)
    {
        string n = PathBytes.Decode(CString(name));
        Guard(req, FuseOp.Lookup, m =>
        {
            if (!m._pathOf.TryGetValue(parent, out string? dir))
            {
                ReplyErr(req, ENOENT);
                return;
            }
            string path = PathPolicyJoin(dir, n);
            StatAnswer a = m.Lstat(path);
            var e = new EntryParam { EntryTimeout = m._timeout, AttrTimeout = m._timeout };
            if (a.Status == ENOENT)
            {
                // A negative entry: the kernel remembers the name is absent for the timeout.
                ReplyEntry(req, &e);
                return;
            }
            if (a.Status != 0)
            {
                ReplyErr(req, a.Status);
                return;
            }
            e.Ino = m.InoOf(path);
            e.Attr = Interop.Libc.FromCopper(a.St, e.Ino);
            ReplyEntry(req, &e);
        });
    }

    private static string PathPolicyJoin(string dir, string name) =>
        name switch
        {
            "." => dir,
            ".." => dir == "/" ? "/" : (dir.LastIndexOf('/') is var i && i > 0 ? dir[..i] : "/"),
            _ => (dir == "/" ? "/" : dir + "/") + name,
        };

    [UnmanagedCallersOnly]
    private static void OnForget(nint req, ulong ino, ulong nlookup)
    {
        s_mount?.Count(FuseOp.Forget);
        ReplyNone(req); // inode numbers stay valid for the agent's life (a snapshot)
    }

    [UnmanagedCallersOnly]
    private static void OnForgetMulti(nint req, nuint count, void* forgets)
    {
        s_mount?.Count(FuseOp.Forget);
        ReplyNone(req);
    }

    [UnmanagedCallersOnly]
    private static void OnGetattr(nint req, ulong ino, FuseFileInfo* fi)
    {
        Guard(req, FuseOp.Getattr, m =>
        {
            if (!m._pathOf.TryGetValue(ino, out string? path))
            {
                ReplyErr(req, ENOENT);
                return;
            }
            StatAnswer a = m.Lstat(path);
            if (a.Status != 0)
            {
                ReplyErr(req, a.Status > 0 ? a.Status : EIO);
                return;
            }
            Interop.Libc.StatBuf st = Interop.Libc.FromCopper(a.St, ino);
            ReplyAttr(req, &st, m._timeout);
        });
    }

    [UnmanagedCallersOnly]
    private static void OnReadlink(nint req, ulong ino)
    {
        Guard(req, FuseOp.Readlink, m =>
        {
            if (!m._pathOf.TryGetValue(ino, out string? path))
            {
                ReplyErr(req, ENOENT);
                return;
            }
            LinkAnswer a = m._fs.ReadLink(path);
            if (a.Status != 0)
            {
                ReplyErr(req, a.Status > 0 ? a.Status : EIO);
                return;
            }
            byte[] target = new byte[a.Target.Length + 1];
            a.Target.CopyTo(target, 0);
            fixed (byte* t = target)
            {
                ReplyReadlink(req, t);
            }
        });
    }

    [UnmanagedCallersOnly]
    private static void OnOpen(nint req, ulong ino, FuseFileInfo* fi)
    {
        Guard(req, FuseOp.Open, m =>
        {
            if ((fi->Flags & 3) != 0 || (fi->Flags & 0x200 /* O_TRUNC */) != 0)
            {
                ReplyErr(req, EROFS);
                return;
            }
            if (!m._pathOf.TryGetValue(ino, out string? path))
            {
                ReplyErr(req, ENOENT);
                return;
            }
            OpenAnswer a = m._fs.Open(path);
            m.ForgetStaleAttributes(ino, a);
            if (m._noOpen && a.Status <= 0 && a.Kind != OpenKind.Dir)
            {
                // "No open needed": reads then come with fh 0 and are served by inode.
                ReplyErr(req, 38 /* ENOSYS */);
                return;
            }
            string file;
            if (a.Status == 0 && a.Kind == OpenKind.File)
            {
                file = PathBytes.Decode(a.LocalPath);
            }
            else if (a.Status == 0 && a.Kind == OpenKind.Dir)
            {
                ReplyErr(req, EISDIR);
                return;
            }
            else if (a.Status > 0)
            {
                ReplyErr(req, a.Status);
                return;
            }
            else
            {
                file = path; // larger than -M, or Copper cannot: the real file, as the shim does
            }
            int openErr = OpenRead(file, out SafeFileHandle? h);
            if (openErr != 0 || h == null)
            {
                ReplyErr(req, openErr);
                return;
            }
            ulong fh = (ulong)Interlocked.Increment(ref m._nextFh);
            m._handles[fh] = h;
            fi->Fh = fh;
            if (m._kernelCaching)
            {
                fi->Bits |= KeepCache;
            }
            if (ReplyOpen(req, fi) != 0)
            {
                // The opener was interrupted: no release will come for this handle.
                m._handles.TryRemove(fh, out _);
                h.Dispose();
            }
        });
    }

    [UnmanagedCallersOnly]
    private static void OnRead(nint req, ulong ino, nuint size, long off, FuseFileInfo* fi)
    {
        ulong fh = fi->Fh;
        Guard(req, FuseOp.Read, m =>
        {
            SafeFileHandle? opened = null;
            SafeFileHandle h;
            if (fh == 0)
            {
                // No-open mode: the file by inode, opened for this read only.
                int err = m.OpenByInode(ino, out opened);
                if (err != 0)
                {
                    ReplyErr(req, err);
                    return;
                }
                h = opened!;
            }
            else if (m._handles.TryGetValue(fh, out object? o) && o is SafeFileHandle held)
            {
                h = held;
            }
            else
            {
                ReplyErr(req, EBADF);
                return;
            }
            using SafeFileHandle? owned = opened;
            int want = (int)Math.Min(size, 4u << 20);
            byte[] buf = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Max(want, 1));
            try
            {
                int n = RandomAccess.Read(h, buf.AsSpan(0, want), off);
                m._onRead?.Invoke(n);
                fixed (byte* p = buf)
                {
                    ReplyBuf(req, p, (nuint)n);
                }
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buf);
            }
        });
    }

    [UnmanagedCallersOnly]
    private static void OnRelease(nint req, ulong ino, FuseFileInfo* fi)
    {
        ulong fh = fi->Fh;
        Guard(req, FuseOp.Release, m =>
        {
            if (m._handles.TryRemove(fh, out object? o) && o is IDisposable d)
            {
                d.Dispose();
            }
            ReplyErr(req, 0);
        });
    }

    /// <summary>The node-local copy of inode <paramref name="ino"/> (or the real file when Copper does not cache it).</summary>
    /// <summary>
    /// The file changed after the kernel was given its attributes: tell it to ask again (only the
    /// attributes, so no page lock is taken inside a request), so the size it clips reads at
    /// becomes the size of the bytes served. Once per inode.
    /// </summary>
    private void ForgetStaleAttributes(ulong ino, OpenAnswer a)
    {
        if (a.Changed && _session != 0 && _staleTold.TryAdd(ino, 0))
        {
            NotifyInvalInode(_session, ino, -1, 0);
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

    private int OpenByInode(ulong ino, out SafeFileHandle? h)
    {
        h = null;
        if (!_pathOf.TryGetValue(ino, out string? path))
        {
            return ENOENT;
        }
        OpenAnswer a = _fs.Open(path);
        ForgetStaleAttributes(ino, a);
        if (a.Status > 0)
        {
            return a.Status;
        }
        if (a.Status == 0 && a.Kind == OpenKind.Dir)
        {
            return EISDIR;
        }
        string file = a.Status == 0 ? PathBytes.Decode(a.LocalPath) : path;
        return OpenRead(file, out h);
    }

    /// <summary>The entries of the directory at <paramref name="ino"/>; null with an errno when it cannot be listed.</summary>
    private DirHandle? ListByInode(ulong ino, out int err)
    {
        err = 0;
        if (!_pathOf.TryGetValue(ino, out string? path))
        {
            err = ENOENT;
            return null;
        }
        DirAnswer a = _fs.List(path);
        if (a.Status != 0)
        {
            err = a.Status > 0 ? a.Status : EIO;
            return null;
        }
        string parent = PathPolicyJoin(path, "..");
        var entries = new (byte[], ulong, byte, string?)[a.Entries.Count + 2];
        entries[0] = ("."u8.ToArray(), ino, DtDir, null);
        entries[1] = (".."u8.ToArray(), InoOf(parent), DtDir, null);
        for (int i = 0; i < a.Entries.Count; i++)
        {
            DirEntry e = a.Entries[i];
            string child = Join(path, e.Name);
            entries[i + 2] = (e.Name, InoOf(child), e.Type, child);
        }
        return new DirHandle(path, entries);
    }

    /// <summary>An open directory: its entries ("." and ".." first) with their inode numbers.</summary>
    private sealed record DirHandle(string Path, (byte[] Name, ulong Ino, byte Type, string? Child)[] Entries);

    [UnmanagedCallersOnly]
    private static void OnOpendir(nint req, ulong ino, FuseFileInfo* fi)
    {
        Guard(req, FuseOp.Opendir, m =>
        {
            DirHandle? d = m.ListByInode(ino, out int err);
            if (d == null)
            {
                ReplyErr(req, err);
                return;
            }
            if (m._noOpendir)
            {
                ReplyErr(req, 38 /* ENOSYS: no opendir needed; readdir comes with fh 0 */);
                return;
            }
            ulong fh = (ulong)Interlocked.Increment(ref m._nextFh);
            m._handles[fh] = d;
            fi->Fh = fh;
            if (m._kernelCaching)
            {
                fi->Bits |= KeepCache | CacheReaddir;
            }
            if (ReplyOpen(req, fi) != 0)
            {
                m._handles.TryRemove(fh, out _);
            }
        });
    }

    [UnmanagedCallersOnly]
    private static void OnReaddir(nint req, ulong ino, nuint size, long off, FuseFileInfo* fi) => Readdir(req, ino, size, off, fi->Fh, plus: false);

    [UnmanagedCallersOnly]
    private static void OnReaddirplus(nint req, ulong ino, nuint size, long off, FuseFileInfo* fi) => Readdir(req, ino, size, off, fi->Fh, plus: true);

    private static void Readdir(nint req, ulong ino, nuint size, long off, ulong fh, bool plus)
    {
        Guard(req, plus ? FuseOp.Readdirplus : FuseOp.Readdir, m =>
        {
            DirHandle? d;
            if (fh == 0)
            {
                d = m.ListByInode(ino, out int err);
                if (d == null)
                {
                    ReplyErr(req, err);
                    return;
                }
            }
            else if (!m._handles.TryGetValue(fh, out object? o) || (d = o as DirHandle) == null)
            {
                ReplyErr(req, EBADF);
                return;
            }
            byte* buf = (byte*)NativeMemory.Alloc(size == 0 ? 1 : size);
            try
            {
                nuint used = 0;
                for (long i = Math.Max(off, 0); i < d.Entries.Length; i++)
                {
                    (byte[] name, ulong eino, byte type, string? child) = d.Entries[i];
                    byte[] z = new byte[name.Length + 1];
                    name.CopyTo(z, 0);
                    nuint need;
                    fixed (byte* zn = z)
                    {
                        if (plus)
                        {
                            // Attributes only for entries this node already knows: the kernel
                            // treats ino 0 as "no attributes", and nothing is fetched for them.
                            var e = new EntryParam { EntryTimeout = m._timeout, AttrTimeout = m._timeout };
                            if (child != null && m._fs.PeekLstat(child, type, out CopperStat st) == 0)
                            {
                                e.Ino = eino;
                                e.Attr = Interop.Libc.FromCopper(st, eino);
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
                        break;
                    }
                    used += need;
                }
                ReplyBuf(req, buf, used);
            }
            finally
            {
                NativeMemory.Free(buf);
            }
        });
    }

    [UnmanagedCallersOnly]
    private static void OnReleasedir(nint req, ulong ino, FuseFileInfo* fi)
    {
        ulong fh = fi->Fh;
        Guard(req, FuseOp.Releasedir, m =>
        {
            m._handles.TryRemove(fh, out _);
            ReplyErr(req, 0);
        });
    }

    [UnmanagedCallersOnly]
    private static void OnStatfs(nint req, ulong ino)
    {
        Guard(req, FuseOp.Statfs, m =>
        {
            if (Statvfs(m._fs.StatfsPath, out StatVfs v) != 0)
            {
                v = new StatVfs { Bsize = 4096, Frsize = 4096, Namemax = 255 };
            }
            v.Flag |= ST_RDONLY;
            ReplyStatfs(req, &v);
        });
    }

    [UnmanagedCallersOnly]
    private static void OnAccess(nint req, ulong ino, int mask)
    {
        Guard(req, FuseOp.Access, m =>
        {
            if ((mask & W_OK) != 0)
            {
                ReplyErr(req, EROFS);
                return;
            }
            if (!m._pathOf.TryGetValue(ino, out string? path))
            {
                ReplyErr(req, ENOENT);
                return;
            }
            ReplyErr(req, m._fs.Access(path, mask));
        });
    }

    [UnmanagedCallersOnly]
    private static void OnRefused(nint req)
    {
        s_mount?.Count(FuseOp.Refused);
        ReplyErr(req, EROFS);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "FUSE {Op} failed: {Reason}")]
    private static partial void LogCallbackFailed(ILogger logger, string op, string reason);
}
