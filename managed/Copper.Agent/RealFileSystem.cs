// The real file system's answers at a path, through libc (paths go to the kernel byte for
// byte through PathMarshaller; .NET's File and Directory APIs would re-encode a name that is
// not UTF-8). Shared by the tree root's upstream (LocalFileSystemUpstream, which counts them)
// and by the mount's fallback (NodeCacheBackend, which asks where Copper could not answer).
using System.Runtime.InteropServices;
using Copper.Interop;

namespace Copper.Agent;

internal static class RealFileSystem
{
    public static StatAnswer Stat(string path, bool follow)
    {
        int rc = follow ? Interop.Libc.Stat(path, out Interop.Libc.StatBuf buf) : Interop.Libc.Lstat(path, out buf);
        return rc == 0 ? new StatAnswer(0, Interop.Libc.ToCopper(buf)) : new StatAnswer(Interop.Libc.Errno, default);
    }

    public static unsafe LinkAnswer ReadLink(string path)
    {
        byte[] buf = new byte[Protocol.MaxPath];
        nint n;
        fixed (byte* p = buf)
        {
            n = Interop.Libc.ReadLink(path, p, buf.Length);
        }
        return n < 0 ? new LinkAnswer(Interop.Libc.Errno, []) : new LinkAnswer(0, buf.AsSpan(0, (int)n).ToArray());
    }

    public static int Access(string path, int mode) => Interop.Libc.Access(path, mode) == 0 ? 0 : Interop.Libc.Errno;

    /// <summary>The entries of the directory at <paramref name="path"/>, without "." and "..".</summary>
    public static unsafe DirAnswer List(string path)
    {
        nint dir = Interop.Libc.OpenDir(path);
        if (dir == 0)
        {
            return new DirAnswer(Interop.Libc.Errno, []);
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
                    return err != 0 ? new DirAnswer(err, []) : new DirAnswer(0, entries);
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
    }
}
