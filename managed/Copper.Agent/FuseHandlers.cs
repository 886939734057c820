// The entry points libfuse calls (struct fuse_lowlevel_ops). Each handler only takes its
// arguments apart and hands them to FuseSession.Serve with the operation's core (FuseOps) and
// its reply: the one fuse_reply_* call for a core that answered 0. The mount is found from
// the request (fuse_req_userdata), never from a static field.
using System.Runtime.InteropServices;
using static Copper.Agent.Interop.Fuse;
using StatBuf = Copper.Agent.Interop.Libc.StatBuf;

namespace Copper.Agent;

internal static unsafe class FuseHandlers
{
    /// <summary>A struct fuse_lowlevel_ops pointing at these handlers, in native memory (the caller frees it).</summary>
    public static Ops* NewTable()
    {
        Ops* ops = (Ops*)NativeMemory.AllocZeroed((nuint)sizeof(Ops));
        ops->Init = (nint)(delegate* unmanaged<void*, ConnInfo*, void>)&OnInit;
        ops->Lookup = (nint)(delegate* unmanaged<nint, ulong, byte*, void>)&OnLookup;
        ops->Forget = (nint)(delegate* unmanaged<nint, ulong, ulong, void>)&OnForget;
        ops->ForgetMulti = (nint)(delegate* unmanaged<nint, nuint, void*, void>)&OnForgetMulti;
        ops->Getattr = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&OnGetattr;
        ops->Readlink = (nint)(delegate* unmanaged<nint, ulong, void>)&OnReadlink;
        ops->Open = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&OnOpen;
        ops->Read = (nint)(delegate* unmanaged<nint, ulong, nuint, long, FuseFileInfo*, void>)&OnRead;
        ops->Release = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&OnRelease;
        ops->Opendir = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&OnOpendir;
        ops->Readdir = (nint)(delegate* unmanaged<nint, ulong, nuint, long, FuseFileInfo*, void>)&OnReaddir;
        ops->Readdirplus = (nint)(delegate* unmanaged<nint, ulong, nuint, long, FuseFileInfo*, void>)&OnReaddirplus;
        ops->Releasedir = (nint)(delegate* unmanaged<nint, ulong, FuseFileInfo*, void>)&OnReleasedir;
        ops->Statfs = (nint)(delegate* unmanaged<nint, ulong, void>)&OnStatfs;
        ops->Access = (nint)(delegate* unmanaged<nint, ulong, int, void>)&OnAccess;
        // Write side: the first argument is the request, the rest is ignored (System V ABI).
        nint refuse = (nint)(delegate* unmanaged<nint, void>)&OnRefused;
        ops->Setattr = ops->Mknod = ops->Mkdir = ops->Unlink = ops->Rmdir = refuse;
        ops->Symlink = ops->Rename = ops->Link = ops->Write = ops->Create = refuse;
        ops->Setxattr = ops->Removexattr = ops->Fallocate = ops->CopyFileRange = ops->WriteBuf = refuse;
        return ops;
    }

    [UnmanagedCallersOnly]
    private static void OnInit(void* userdata, ConnInfo* conn) => FuseSession.Init(userdata, conn);

    [UnmanagedCallersOnly]
    private static void OnLookup(nint req, ulong parent, byte* name) =>
        FuseSession.Serve(req, FuseOp.Lookup, (parent, (nint)name),
            static (FuseOps o, (ulong Parent, nint Name) i, out EntryParam e) =>
                o.Lookup(i.Parent, MemoryMarshal.CreateReadOnlySpanFromNullTerminated((byte*)i.Name), out e),
            static (nint req, FuseOps o, (ulong, nint) i, EntryParam e) => ReplyEntry(req, &e));

    // The kernel's inode cache let these go: the inode table follows it (FuseInodes).
    [UnmanagedCallersOnly]
    private static void OnForget(nint req, ulong ino, ulong nlookup) =>
        FuseSession.ServeNoReply(req, FuseOp.Forget, (ino, nlookup), static (FuseOps o, (ulong Ino, ulong N) f) => o.Forget(f.Ino, f.N));

    /// <summary><paramref name="forgets"/>: <paramref name="count"/> struct fuse_forget_data { uint64_t ino; uint64_t nlookup; }.</summary>
    [UnmanagedCallersOnly]
    private static void OnForgetMulti(nint req, nuint count, void* forgets) =>
        FuseSession.ServeNoReply(req, FuseOp.Forget, ((nint)forgets, count), static (FuseOps o, (nint At, nuint Count) f) =>
        {
            var data = new ReadOnlySpan<ulong>((void*)f.At, checked((int)f.Count * 2));
            for (int i = 0; i < data.Length; i += 2)
            {
                o.Forget(data[i], data[i + 1]);
            }
        });

    [UnmanagedCallersOnly]
    private static void OnGetattr(nint req, ulong ino, FuseFileInfo* fi) =>
        FuseSession.Serve(req, FuseOp.Getattr, ino,
            static (FuseOps o, ulong ino, out StatBuf st) => o.Getattr(ino, out st),
            static (nint req, FuseOps o, ulong ino, StatBuf st) => ReplyAttr(req, &st, o.Timeout));

    [UnmanagedCallersOnly]
    private static void OnReadlink(nint req, ulong ino) =>
        FuseSession.Serve(req, FuseOp.Readlink, ino,
            static (FuseOps o, ulong ino, out byte[] target) => o.Readlink(ino, out target),
            static (nint req, FuseOps o, ulong ino, byte[] target) =>
            {
                fixed (byte* t = target)
                {
                    ReplyReadlink(req, t);
                }
            });

    [UnmanagedCallersOnly]
    private static void OnOpen(nint req, ulong ino, FuseFileInfo* fi) =>
        FuseSession.Serve(req, FuseOp.Open, (ino, (nint)fi),
            static (FuseOps o, (ulong Ino, nint Fi) i, out FuseOps.Opened opened) => o.Open(i.Ino, ((FuseFileInfo*)i.Fi)->Flags, out opened),
            static (nint req, FuseOps o, (ulong Ino, nint Fi) i, FuseOps.Opened opened) => ReplyOpened(req, o, (FuseFileInfo*)i.Fi, opened));

    [UnmanagedCallersOnly]
    private static void OnRead(nint req, ulong ino, nuint size, long off, FuseFileInfo* fi) =>
        FuseSession.Serve(req, FuseOp.Read, (ino, fi->Fh, size, off),
            static (FuseOps o, (ulong Ino, ulong Fh, nuint Size, long Off) i, out FuseOps.ReadBytes r) => o.Read(i.Ino, i.Fh, i.Size, i.Off, out r),
            static (nint req, FuseOps o, (ulong, ulong, nuint, long) i, FuseOps.ReadBytes r) =>
            {
                fixed (byte* p = r.Buffer)
                {
                    ReplyBuf(req, p, (nuint)r.Count);
                }
                FuseOps.Return(r);
            });

    [UnmanagedCallersOnly]
    private static void OnRelease(nint req, ulong ino, FuseFileInfo* fi) =>
        FuseSession.Serve(req, FuseOp.Release, fi->Fh,
            static (FuseOps o, ulong fh, out byte none) => { none = 0; return o.Release(fh); },
            static (nint req, FuseOps o, ulong fh, byte none) => ReplyErr(req, 0));

    [UnmanagedCallersOnly]
    private static void OnOpendir(nint req, ulong ino, FuseFileInfo* fi) =>
        FuseSession.Serve(req, FuseOp.Opendir, (ino, (nint)fi),
            static (FuseOps o, (ulong Ino, nint Fi) i, out FuseOps.Opened opened) => o.Opendir(i.Ino, out opened),
            static (nint req, FuseOps o, (ulong Ino, nint Fi) i, FuseOps.Opened opened) => ReplyOpened(req, o, (FuseFileInfo*)i.Fi, opened));

    [UnmanagedCallersOnly]
    private static void OnReaddir(nint req, ulong ino, nuint size, long off, FuseFileInfo* fi) => Readdir(req, ino, size, off, fi->Fh, plus: false);

    [UnmanagedCallersOnly]
    private static void OnReaddirplus(nint req, ulong ino, nuint size, long off, FuseFileInfo* fi) => Readdir(req, ino, size, off, fi->Fh, plus: true);

    private static void Readdir(nint req, ulong ino, nuint size, long off, ulong fh, bool plus) =>
        FuseSession.Serve(req, plus ? FuseOp.Readdirplus : FuseOp.Readdir, (req, ino, fh, size, off, plus),
            static (FuseOps o, (nint Req, ulong Ino, ulong Fh, nuint Size, long Off, bool Plus) i, out FuseOps.NativeBytes b) =>
                o.Readdir(i.Req, i.Ino, i.Fh, i.Size, i.Off, i.Plus, out b),
            static (nint req, FuseOps o, (nint, ulong, ulong, nuint, long, bool) i, FuseOps.NativeBytes b) =>
            {
                ReplyBuf(req, (byte*)b.Buffer, b.Count);
                FuseOps.Free(b);
            });

    [UnmanagedCallersOnly]
    private static void OnReleasedir(nint req, ulong ino, FuseFileInfo* fi) =>
        FuseSession.Serve(req, FuseOp.Releasedir, fi->Fh,
            static (FuseOps o, ulong fh, out byte none) => { none = 0; return o.Releasedir(fh); },
            static (nint req, FuseOps o, ulong fh, byte none) => ReplyErr(req, 0));

    [UnmanagedCallersOnly]
    private static void OnStatfs(nint req, ulong ino) =>
        FuseSession.Serve(req, FuseOp.Statfs, ino,
            static (FuseOps o, ulong ino, out StatVfs v) => o.Statfs(out v),
            static (nint req, FuseOps o, ulong ino, StatVfs v) => ReplyStatfs(req, &v));

    [UnmanagedCallersOnly]
    private static void OnAccess(nint req, ulong ino, int mask) =>
        FuseSession.Serve(req, FuseOp.Access, (ino, mask),
            static (FuseOps o, (ulong Ino, int Mask) i, out byte none) => { none = 0; return o.Access(i.Ino, i.Mask); },
            static (nint req, FuseOps o, (ulong, int) i, byte none) => ReplyErr(req, 0));

    [UnmanagedCallersOnly]
    private static void OnRefused(nint req) =>
        FuseSession.Serve(req, FuseOp.Refused, 0,
            static (FuseOps o, int unused, out byte none) => { none = 0; return FuseOps.Refuse(); },
            static (nint req, FuseOps o, int unused, byte none) => ReplyErr(req, 0));

    /// <summary>
    /// Replies to an open or opendir with its handle; when the opener was interrupted the reply
    /// does not arrive, no release will come, and the handle is let go.
    /// </summary>
    private static void ReplyOpened(nint req, FuseOps o, FuseFileInfo* fi, FuseOps.Opened opened)
    {
        fi->Fh = opened.Fh;
        fi->Bits |= opened.Bits;
        if (ReplyOpen(req, fi) != 0)
        {
            o.Abandon(opened.Fh);
        }
    }
}
