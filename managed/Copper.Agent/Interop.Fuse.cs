// libfuse3's low-level API, as the agent uses it: every struct layout the agent shares with
// libfuse, and every import, in one file. FuseLayoutTests compiles the C headers and
// compares each size and offset here with them. Versioned symbols are picked explicitly
// (dlvsym), so the agent binds to the ABI it was written for whatever the default version is.
using System.Runtime.InteropServices;

namespace Copper.Agent;

internal static unsafe partial class Interop
{
    internal static partial class Fuse
    {
        public const string LibraryName = "libfuse3.so.3";

        /// <summary>struct fuse_args.</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct Args
        {
            public int Argc;
            public byte** Argv;
            public int Allocated;
        }

        /// <summary>struct fuse_entry_param.</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct EntryParam
        {
            public ulong Ino;
            public ulong Generation;
            public Libc.StatBuf Attr;
            public double AttrTimeout;
            public double EntryTimeout;
        }

        /// <summary>struct fuse_file_info (bit fields in <see cref="Bits"/>).</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct FuseFileInfo
        {
            public int Flags;
            public uint Bits;
            public uint Padding2;
            public ulong Fh;
            public ulong LockOwner;
            public uint PollEvents;
        }

        /// <summary>struct fuse_conn_info (the fields before reserved[22]).</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct ConnInfo
        {
            public uint ProtoMajor, ProtoMinor, MaxWrite, MaxRead, MaxReadahead, Capable, Want, MaxBackground, CongestionThreshold, TimeGran;
            public fixed uint Reserved[22];
        }

        public const uint CapNoOpenSupport = 1u << 17;
        public const uint CapCacheSymlinks = 1u << 23;
        public const uint CapNoOpendirSupport = 1u << 24;

        public const uint DirectIo = 1u << 1;
        public const uint KeepCache = 1u << 2;
        public const uint CacheReaddir = 1u << 6;

        /// <summary>struct fuse_loop_config as fuse_session_loop_mt@FUSE_3.2 takes it.</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct LoopConfig
        {
            public int CloneFd;
            public uint MaxIdleThreads;
        }

        /// <summary>struct fuse_lowlevel_ops (libfuse 3.x): function pointers in declaration order.</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct Ops
        {
            public nint Init, Destroy, Lookup, Forget, Getattr, Setattr, Readlink, Mknod, Mkdir, Unlink,
                Rmdir, Symlink, Rename, Link, Open, Read, Write, Flush, Release, Fsync, Opendir, Readdir,
                Releasedir, Fsyncdir, Statfs, Setxattr, Getxattr, Listxattr, Removexattr, Access, Create,
                Getlk, Setlk, Bmap, Ioctl, Poll, WriteBuf, RetrieveReply, ForgetMulti, Flock, Fallocate,
                Readdirplus, CopyFileRange, Lseek;
        }

        /// <summary>glibc struct statvfs (x86_64), for fuse_reply_statfs.</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct StatVfs
        {
            public ulong Bsize, Frsize, Blocks, Bfree, Bavail, Files, Ffree, Favail, Fsid, Flag, Namemax;
            public fixed int Spare[6];
        }

        public const ulong ST_RDONLY = 1;

        // Entry points resolved once by Load(): versioned where libfuse has several versions.
        public static delegate* unmanaged<Args*, Ops*, nuint, void*, nint> SessionNew;
        public static delegate* unmanaged<nint, byte*, int> SessionMount;
        public static delegate* unmanaged<nint, LoopConfig*, int> SessionLoopMt;
        public static delegate* unmanaged<nint, void> SessionExit;
        public static delegate* unmanaged<nint, void> SessionUnmount;
        public static delegate* unmanaged<nint, void> SessionDestroy;
        public static delegate* unmanaged<nint, EntryParam*, int> ReplyEntry;
        public static delegate* unmanaged<nint, Libc.StatBuf*, double, int> ReplyAttr;
        public static delegate* unmanaged<nint, int, int> ReplyErr;
        public static delegate* unmanaged<nint, byte*, int> ReplyReadlink;
        public static delegate* unmanaged<nint, FuseFileInfo*, int> ReplyOpen;
        public static delegate* unmanaged<nint, byte*, nuint, int> ReplyBuf;
        public static delegate* unmanaged<nint, StatVfs*, int> ReplyStatfs;
        public static delegate* unmanaged<nint, void> ReplyNone;
        public static delegate* unmanaged<nint, byte*, nuint, byte*, Libc.StatBuf*, long, nuint> AddDirentry;
        public static delegate* unmanaged<nint, byte*, nuint, byte*, EntryParam*, long, nuint> AddDirentryPlus;
        public static delegate* unmanaged<nint, ulong, long, long, int> NotifyInvalInode;

        /// <summary>fuse_req_userdata: the userdata given to fuse_session_new, for the request's session.</summary>
        public static delegate* unmanaged<nint, nint> ReqUserdata;

        [LibraryImport("libc", EntryPoint = "dlvsym")]
        private static partial nint DlVSym(nint handle, byte* symbol, byte* version);

        [LibraryImport("libc", EntryPoint = "statvfs", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        public static partial int Statvfs(string path, out StatVfs buf);

        private static nint Sym(nint lib, string name, string version)
        {
            byte[] n = System.Text.Encoding.ASCII.GetBytes(name + "\0");
            byte[] v = System.Text.Encoding.ASCII.GetBytes(version + "\0");
            fixed (byte* pn = n)
            fixed (byte* pv = v)
            {
                nint p = DlVSym(lib, pn, pv);
                return p != 0 ? p : throw new EntryPointNotFoundException($"{name}@{version} not in {LibraryName}");
            }
        }

        /// <summary>Loads libfuse3 and resolves every entry point; throws when it cannot.</summary>
        public static void Load()
        {
            nint lib = NativeLibrary.Load(LibraryName);
            SessionNew = (delegate* unmanaged<Args*, Ops*, nuint, void*, nint>)Sym(lib, "fuse_session_new", "FUSE_3.0");
            SessionMount = (delegate* unmanaged<nint, byte*, int>)Sym(lib, "fuse_session_mount", "FUSE_3.0");
            SessionLoopMt = (delegate* unmanaged<nint, LoopConfig*, int>)Sym(lib, "fuse_session_loop_mt", "FUSE_3.2");
            SessionExit = (delegate* unmanaged<nint, void>)Sym(lib, "fuse_session_exit", "FUSE_3.0");
            SessionUnmount = (delegate* unmanaged<nint, void>)Sym(lib, "fuse_session_unmount", "FUSE_3.0");
            SessionDestroy = (delegate* unmanaged<nint, void>)Sym(lib, "fuse_session_destroy", "FUSE_3.0");
            ReplyEntry = (delegate* unmanaged<nint, EntryParam*, int>)Sym(lib, "fuse_reply_entry", "FUSE_3.0");
            ReplyAttr = (delegate* unmanaged<nint, Libc.StatBuf*, double, int>)Sym(lib, "fuse_reply_attr", "FUSE_3.0");
            ReplyErr = (delegate* unmanaged<nint, int, int>)Sym(lib, "fuse_reply_err", "FUSE_3.0");
            ReplyReadlink = (delegate* unmanaged<nint, byte*, int>)Sym(lib, "fuse_reply_readlink", "FUSE_3.0");
            ReplyOpen = (delegate* unmanaged<nint, FuseFileInfo*, int>)Sym(lib, "fuse_reply_open", "FUSE_3.0");
            ReplyBuf = (delegate* unmanaged<nint, byte*, nuint, int>)Sym(lib, "fuse_reply_buf", "FUSE_3.0");
            ReplyStatfs = (delegate* unmanaged<nint, StatVfs*, int>)Sym(lib, "fuse_reply_statfs", "FUSE_3.0");
            ReplyNone = (delegate* unmanaged<nint, void>)Sym(lib, "fuse_reply_none", "FUSE_3.0");
            AddDirentry = (delegate* unmanaged<nint, byte*, nuint, byte*, Libc.StatBuf*, long, nuint>)Sym(lib, "fuse_add_direntry", "FUSE_3.0");
            AddDirentryPlus = (delegate* unmanaged<nint, byte*, nuint, byte*, EntryParam*, long, nuint>)Sym(lib, "fuse_add_direntry_plus", "FUSE_3.0");
            NotifyInvalInode = (delegate* unmanaged<nint, ulong, long, long, int>)Sym(lib, "fuse_lowlevel_notify_inval_inode", "FUSE_3.0");
            ReqUserdata = (delegate* unmanaged<nint, nint>)Sym(lib, "fuse_req_userdata", "FUSE_3.0");
        }
    }
}
