// What the agent checks before it uses a directory (DESIGN decision 12): predictable paths
// in /tmp are reachable by every local user, so a runtime, socket, cache or mirror directory
// someone else created (or could replace) must never be used. The shim applies the same
// rule (native/common/client.c, copper_dir_trusted) before it talks to an agent or opens a
// file in its mirror.
namespace Copper.Agent;

internal static class DirectoryTrust
{
    private const uint S_IFMT = 0xF000;
    private const uint S_IFLNK = 0xA000;
    private const uint S_ISVTX = 0x200;
    private const uint GroupOrOtherWrite = 0x12; // S_IWGRP | S_IWOTH

    /// <summary>
    /// Null when <paramref name="dir"/> is a directory (not a symlink) owned by this user with
    /// no group or other write bit, and every directory above it is owned by this user or root
    /// and not writable by others unless sticky; otherwise why not.
    /// </summary>
    public static string? Check(string dir)
    {
        uint me = Interop.Libc.GetUid();
        string path = Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir));
        if (Interop.Libc.Lstat(path, out Interop.Libc.StatBuf st) != 0)
        {
            return $"{path} cannot be examined (errno {Interop.Libc.Errno})";
        }
        if ((st.Mode & S_IFMT) != Interop.Libc.S_IFDIR)
        {
            return $"{path} is not a directory";
        }
        if (st.Uid != me)
        {
            return $"{path} is owned by uid {st.Uid}, not by uid {me}";
        }
        if ((st.Mode & GroupOrOtherWrite) != 0)
        {
            return $"{path} is writable by group or others (mode {Convert.ToString(st.Mode & 0xFFF, 8)})";
        }
        for (string? up = Path.GetDirectoryName(path); up != null; up = Path.GetDirectoryName(up))
        {
            bool ok = Interop.Libc.Lstat(up, out st) == 0;
            if (ok && (st.Mode & S_IFMT) == S_IFLNK && (st.Uid == 0 || st.Uid == me))
            {
                ok = Interop.Libc.Stat(up, out st) == 0;
            }
            if (!ok)
            {
                return $"{up} cannot be examined (errno {Interop.Libc.Errno})";
            }
            if ((st.Mode & S_IFMT) != Interop.Libc.S_IFDIR || (st.Uid != 0 && st.Uid != me)
                || ((st.Mode & GroupOrOtherWrite) != 0 && (st.Mode & S_ISVTX) == 0))
            {
                return $"{up} (uid {st.Uid}, mode {Convert.ToString(st.Mode & 0xFFF, 8)}) lets another user replace what is below it";
            }
        }
        return null;
    }

    /// <summary>Creates <paramref name="dir"/> (and what is missing above it) private to this user, then checks it.</summary>
    public static string? EnsurePrivate(string dir)
    {
        try
        {
            // One level at a time: Directory.CreateDirectory gives the mode only to the last
            // directory, and a missing one above it (the default cache root
            // /tmp/copper-cache-<uid>) would let other users list what is below.
            var missing = new Stack<string>();
            for (string? d = Path.GetFullPath(dir); d != null && !Directory.Exists(d); d = Path.GetDirectoryName(d))
            {
                missing.Push(d);
            }
            while (missing.TryPop(out string? d))
            {
                Directory.CreateDirectory(d, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return $"{dir} cannot be created: {ex.Message}";
        }
        return Check(dir);
    }

    /// <summary>
    /// The check for a mount point: created if missing and checked like the others; a dead FUSE
    /// mount there (a killed agent's, ENOTCONN) cannot be examined, so the directory holding it
    /// must pass instead.
    /// </summary>
    public static string? CheckMountPoint(string mountPoint)
    {
        const int ENOTCONN = 107;
        if (Interop.Libc.Lstat(mountPoint, out _) != 0 && Interop.Libc.Errno == ENOTCONN)
        {
            return Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(mountPoint)) is { } up ? Check(up) : null;
        }
        return EnsurePrivate(mountPoint);
    }
}
