// The mount's session with libfuse3 (the low-level API, as libfuse's passthrough_ll.c uses
// it): loads the library, mounts, runs the session loop on libfuse's threads, unmounts. Each
// session is its own object: libfuse hands it back to every callback as the request's
// userdata (a GCHandle given to fuse_session_new), so a process may hold several mounts.
// Serve is the one guard every request goes through: it counts the request, runs its core,
// and turns an exception into EIO, so each request gets exactly one reply.
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using static Copper.Agent.Interop.Fuse;

namespace Copper.Agent;

/// <summary>The FUSE requests a mount counts, by kind (for `copper stats`).</summary>
internal enum FuseOp
{
    Lookup, Getattr, Readlink, Open, Read, Release, Opendir, Readdir, Readdirplus, Releasedir,
    Statfs, Access, Forget, Refused,
}

internal sealed unsafe partial class FuseSession : IDisposable
{
    private const int EIO = 5;

    private readonly ILogger _log;

    /// <summary>Requests served, by <see cref="FuseOp"/> (Interlocked).</summary>
    private readonly long[] _requests = new long[Enum.GetValues<FuseOp>().Length];

    /// <summary>Set once by <see cref="Mount"/>, before the native session exists.</summary>
    private FuseOps? _ops;

    /// <summary>This object as libfuse's userdata: allocated by <see cref="Mount"/>, freed once no callback can come.</summary>
    private GCHandle _self;

    /// <summary>The struct fuse_session*: set by <see cref="Mount"/> before the loop starts, cleared by <see cref="Dispose"/>.</summary>
    private nint _handle;

    /// <summary>The struct fuse_lowlevel_ops given to libfuse: owned here, freed with <see cref="_self"/>.</summary>
    private Ops* _table;

    private Thread? _loop;

    public FuseSession(ILogger log)
    {
        _log = log;
    }

    /// <summary>The core of a request: 0 or a positive errno, and its result. Never replies.</summary>
    public delegate int Core<TIn, TOut>(FuseOps ops, TIn input, out TOut output);

    /// <summary>The reply to a request whose core answered 0: exactly one fuse_reply_* call.</summary>
    public delegate void Reply<TIn, TOut>(nint req, FuseOps ops, TIn input, TOut output);

    /// <summary>
    /// Mounts <paramref name="mountPoint"/> and serves <paramref name="ops"/> there on libfuse's
    /// threads; throws when it cannot (no libfuse3, no /dev/fuse, a mount point with entries).
    /// </summary>
    public void Mount(FuseOps ops, string mountPoint)
    {
        Load();
        Directory.CreateDirectory(mountPoint);
        RefuseToHide(mountPoint);
        _ops = ops;
        _table = FuseHandlers.NewTable();
        // As root (a node daemon), other users may use the mount too: default_permissions makes
        // the kernel check every access against the real modes, as on the real file system.
        string opts = "ro,default_permissions,fsname=copper,subtype=copper" + (Interop.Libc.GetUid() == 0 ? ",allow_other" : "");
        string[] argv = ["copper-agent", "-o", opts];
        byte** av = (byte**)NativeMemory.AllocZeroed((nuint)(sizeof(nint) * (argv.Length + 1)));
        for (int i = 0; i < argv.Length; i++)
        {
            av[i] = CString(argv[i]);
        }
        var args = new Args { Argc = argv.Length, Argv = av, Allocated = 0 };
        _self = GCHandle.Alloc(this);
        _handle = SessionNew(&args, _table, (nuint)sizeof(Ops), (void*)GCHandle.ToIntPtr(_self));
        if (_handle == 0)
        {
            Release();
            throw new InvalidOperationException("fuse_session_new failed");
        }
        byte* mp = CString(mountPoint);
        int rc = SessionMount(_handle, mp);
        NativeMemory.Free(mp);
        if (rc != 0)
        {
            SessionDestroy(_handle);
            _handle = 0;
            Release();
            throw new InvalidOperationException($"cannot mount {mountPoint} (is /dev/fuse usable, the directory empty and not mounted?)");
        }
        nint session = _handle;
        _loop = new Thread(() =>
        {
            var cfg = new LoopConfig { CloneFd = 0, MaxIdleThreads = 10 };
            SessionLoopMt(session, &cfg);
        })
        { IsBackground = true, Name = "copper-fuse" };
        _loop.Start();
    }

    /// <summary>Unmounts and stops the loop; the session is gone when this returns.</summary>
    public void Dispose()
    {
        if (_handle == 0)
        {
            return;
        }
        SessionExit(_handle);
        SessionUnmount(_handle);
        bool stopped = _loop?.Join(TimeSpan.FromSeconds(5)) ?? true;
        SessionDestroy(_handle);
        _handle = 0;
        if (stopped)
        {
            // A loop thread still running could yet call in: then the userdata and the table stay.
            Release();
        }
    }

    /// <summary>FUSE requests served, by operation.</summary>
    public void DescribeTo(System.Text.Json.Utf8JsonWriter w)
    {
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
        w.WriteNumber("fuse_inodes", _ops?.Inodes ?? 0);
    }

    /// <summary>Tells the kernel to drop the attributes it cached for <paramref name="ino"/> (the bytes changed).</summary>
    public void ForgetAttributes(ulong ino)
    {
        nint h = _handle;
        if (h != 0)
        {
            NotifyInvalInode(h, ino, -1, 0);
        }
    }

    /// <summary>
    /// The one guard: counts the request, runs its core, and replies exactly once: the core's
    /// errno, or <paramref name="reply"/> when it answered 0, or EIO when it threw.
    /// </summary>
    public static void Serve<TIn, TOut>(nint req, FuseOp op, TIn input, Core<TIn, TOut> core, Reply<TIn, TOut> reply)
    {
        FuseSession? s = Of(ReqUserdata(req));
        if (s?._ops is not FuseOps ops)
        {
            ReplyErr(req, EIO);
            return;
        }
        Interlocked.Increment(ref s._requests[(int)op]);
        int err;
        TOut output;
        try
        {
            err = core(ops, input, out output);
        }
        catch (Exception ex)
        {
            LogCallbackFailed(s._log, op.ToString(), ex.Message);
            err = EIO;
            output = default!;
        }
        try
        {
            if (err != 0)
            {
                ReplyErr(req, err > 0 ? err : EIO);
            }
            else
            {
                reply(req, ops, input, output);
            }
        }
        catch (Exception ex)
        {
            // Replies do not throw; should one, the request is not answered twice, and no
            // exception may cross into libfuse.
            LogCallbackFailed(s._log, op.ToString(), ex.Message);
        }
    }

    /// <summary>A request that takes no reply (forget): counted, done, then let go.</summary>
    public static void ServeNoReply<TIn>(nint req, FuseOp op, TIn input, Action<FuseOps, TIn> core)
    {
        if (Of(ReqUserdata(req)) is { } s)
        {
            Interlocked.Increment(ref s._requests[(int)op]);
            if (s._ops is FuseOps ops)
            {
                try
                {
                    core(ops, input);
                }
                catch (Exception ex)
                {
                    // No exception may cross into libfuse; the request still gets its ReplyNone.
                    LogCallbackFailed(s._log, op.ToString(), ex.Message);
                }
            }
        }
        ReplyNone(req);
    }

    /// <summary>The init callback: libfuse passes the userdata itself.</summary>
    public static void Init(void* userdata, ConnInfo* conn)
    {
        FuseSession? s = Of((nint)userdata);
        try
        {
            s?._ops?.Init(conn);
        }
        catch (Exception ex)
        {
            LogCallbackFailed(s!._log, "init", ex.Message);
        }
    }

    private static FuseSession? Of(nint userdata) =>
        userdata == 0 ? null : GCHandle.FromIntPtr(userdata).Target as FuseSession;

    private void Release()
    {
        if (_self.IsAllocated)
        {
            _self.Free();
        }
        NativeMemory.Free(_table);
        _table = null;
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

    /// <summary>The NUL-terminated bytes <paramref name="s"/> stands for, in native memory.</summary>
    private static byte* CString(string s)
    {
        byte[] b = PathBytes.Encode(s);
        byte* p = (byte*)NativeMemory.Alloc((nuint)b.Length + 1);
        b.CopyTo(new Span<byte>(p, b.Length));
        p[b.Length] = 0;
        return p;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "FUSE {Op} failed: {Reason}")]
    private static partial void LogCallbackFailed(ILogger logger, string op, string reason);
}
