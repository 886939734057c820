// Every libc call the agent makes, in one place (dotnet/runtime's Interop.* shape).
// errno is read through Marshal.GetLastPInvokeError right after each call.
using System.Runtime.InteropServices;
using Copper.Interop;

namespace Copper.Agent;

internal static partial class Interop
{
    internal static partial class Libc
    {
        private const string Lib = "libc";

        internal const int O_RDONLY = 0;
        internal const int O_CLOEXEC = 0x80000;
        internal const int EINVAL = 22;
        internal const int ENOENT = 2;
        internal const int ENAMETOOLONG = 36;
        internal const uint S_IFMT = 0xF000;
        internal const uint S_IFDIR = 0x4000;
        internal const uint S_IFREG = 0x8000;

        /// <summary>x86_64 glibc struct stat (144 bytes).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct StatBuf
        {
            public ulong Dev;
            public ulong Ino;
            public ulong Nlink;
            public uint Mode;
            public uint Uid;
            public uint Gid;
            public int Pad0;
            public ulong Rdev;
            public long Size;
            public long Blksize;
            public long Blocks;
            public long AtimeSec;
            public long AtimeNsec;
            public long MtimeSec;
            public long MtimeNsec;
            public long CtimeSec;
            public long CtimeNsec;
            public long Reserved0;
            public long Reserved1;
            public long Reserved2;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct Timespec
        {
            public long Sec;
            public long Nsec;
        }

        [LibraryImport(Lib, EntryPoint = "stat", StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller), SetLastError = true)]
        internal static partial int Stat(string path, out StatBuf buf);

        [LibraryImport(Lib, EntryPoint = "lstat", StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller), SetLastError = true)]
        internal static partial int Lstat(string path, out StatBuf buf);

        [LibraryImport(Lib, EntryPoint = "fstat", SetLastError = true)]
        internal static partial int Fstat(int fd, out StatBuf buf);

        [LibraryImport(Lib, EntryPoint = "open", StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller), SetLastError = true)]
        internal static partial int Open(string path, int flags, int mode);

        internal const int EFD_CLOEXEC = 0x80000;
        internal const int EFD_NONBLOCK = 0x800;
        internal const short POLLIN = 1;

        [StructLayout(LayoutKind.Sequential)]
        internal struct PollFd
        {
            public int Fd;
            public short Events;
            public short Revents;
        }

        internal const int PR_SET_TIMERSLACK = 29;

        [LibraryImport(Lib, EntryPoint = "prctl")]
        internal static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

        [LibraryImport(Lib, EntryPoint = "eventfd", SetLastError = true)]
        internal static partial int EventFd(uint initval, int flags);

        [LibraryImport(Lib, EntryPoint = "write", SetLastError = true)]
        internal static unsafe partial nint Write(int fd, byte* buf, nint count);

        /// <summary>ppoll(2): waits for <paramref name="fds"/> at most <paramref name="timeout"/> (nanosecond resolution).</summary>
        [LibraryImport(Lib, EntryPoint = "ppoll", SetLastError = true)]
        internal static unsafe partial int PPoll(PollFd* fds, nuint nfds, Timespec* timeout, void* sigmask);

        [LibraryImport(Lib, EntryPoint = "close", SetLastError = true)]
        internal static partial int Close(int fd);

        [LibraryImport(Lib, EntryPoint = "read", SetLastError = true)]
        internal static unsafe partial nint Read(int fd, byte* buf, nint count);

        [LibraryImport(Lib, EntryPoint = "access", StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller), SetLastError = true)]
        internal static partial int Access(string path, int mode);

        [LibraryImport(Lib, EntryPoint = "readlink", StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller), SetLastError = true)]
        internal static unsafe partial nint ReadLink(string path, byte* buf, nint size);

        [LibraryImport(Lib, EntryPoint = "opendir", StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller), SetLastError = true)]
        internal static partial nint OpenDir(string path);

        [LibraryImport(Lib, EntryPoint = "readdir64", SetLastError = true)]
        internal static partial nint ReadDir(nint dir);

        [LibraryImport(Lib, EntryPoint = "closedir", SetLastError = true)]
        internal static partial int CloseDir(nint dir);

        [LibraryImport(Lib, EntryPoint = "utimensat", StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller), SetLastError = true)]
        internal static unsafe partial int Utimensat(int dirfd, string path, Timespec* times, int flags);

        // Paths go through PathMarshaller: the bytes a path string stands for, not a re-encoding.
        [LibraryImport(Lib, EntryPoint = "mkdir", StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller), SetLastError = true)]
        internal static partial int Mkdir(string path, int mode);

        [LibraryImport(Lib, EntryPoint = "rename", StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller), SetLastError = true)]
        internal static partial int Rename(string from, string to);

        [LibraryImport(Lib, EntryPoint = "chmod", StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller), SetLastError = true)]
        internal static partial int Chmod(string path, int mode);

        [LibraryImport(Lib, EntryPoint = "unlink", StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller), SetLastError = true)]
        internal static partial int Unlink(string path);

        [LibraryImport(Lib, EntryPoint = "rmdir", StringMarshalling = StringMarshalling.Custom, StringMarshallingCustomType = typeof(PathMarshaller), SetLastError = true)]
        internal static partial int Rmdir(string path);

        internal const int O_WRONLY = 1;
        internal const int O_CREAT = 0x40;
        internal const int O_EXCL = 0x80;
        internal const int EEXIST = 17;

        [LibraryImport(Lib, EntryPoint = "getuid")]
        internal static partial uint GetUid();

        internal const int RLIMIT_NOFILE = 7;

        [StructLayout(LayoutKind.Sequential)]
        internal struct Rlimit
        {
            public ulong Cur;
            public ulong Max;
        }

        [LibraryImport(Lib, EntryPoint = "getrlimit", SetLastError = true)]
        internal static partial int GetRlimit(int resource, out Rlimit limit);

        [LibraryImport(Lib, EntryPoint = "setrlimit", SetLastError = true)]
        internal static partial int SetRlimit(int resource, in Rlimit limit);

        internal static int Errno => Marshal.GetLastPInvokeError();

        /// <summary>A struct stat for <paramref name="s"/>, with inode number <paramref name="ino"/> (the FUSE mount's own).</summary>
        internal static StatBuf FromCopper(in CopperStat s, ulong ino) => new()
        {
            Dev = s.Dev,
            Ino = ino,
            Nlink = s.Nlink,
            Mode = s.Mode,
            Uid = s.Uid,
            Gid = s.Gid,
            Rdev = s.Rdev,
            Size = s.Size,
            Blksize = s.Blksize,
            Blocks = s.Blocks,
            AtimeSec = s.AtimeSec,
            AtimeNsec = s.AtimeNsec,
            MtimeSec = s.MtimeSec,
            MtimeNsec = s.MtimeNsec,
            CtimeSec = s.CtimeSec,
            CtimeNsec = s.CtimeNsec,
        };

        internal static CopperStat ToCopper(in StatBuf s) => new()
        {
            Dev = s.Dev,
            Ino = s.Ino,
            Nlink = s.Nlink,
            Mode = s.Mode,
            Uid = s.Uid,
            Gid = s.Gid,
            Rdev = s.Rdev,
            Size = s.Size,
            Blksize = s.Blksize,
            Blocks = s.Blocks,
            AtimeSec = s.AtimeSec,
            AtimeNsec = s.AtimeNsec,
            MtimeSec = s.MtimeSec,
            MtimeNsec = s.MtimeNsec,
            CtimeSec = s.CtimeSec,
            CtimeNsec = s.CtimeNsec,
        };
    }
}
