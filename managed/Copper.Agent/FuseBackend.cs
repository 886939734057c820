// What a FUSE mount serves: the answers to the questions FuseMount turns kernel requests
// into. The agent's mount is backed by its NodeCache (NodeCacheBackend.cs); the benchmarks'
// PFS model (managed/Copper.PfsModel) links this file and FuseMount.cs and serves a
// passthrough of a real directory.
using Copper.Interop;

namespace Copper.Agent;

internal interface IFuseBackend
{
    /// <summary>The directory whose file system statfs on the mount describes.</summary>
    string StatfsPath { get; }

    StatAnswer Lstat(string path);

    LinkAnswer ReadLink(string path);

    int Access(string path, int mode);

    DirAnswer List(string path);

    /// <summary>The file to read for <paramref name="path"/> (Status 0, Kind File, LocalPath), or why not.</summary>
    OpenAnswer Open(string path);

    /// <summary>The lstat of an entry if already known without asking anyone; StatusFallback if not.</summary>
    int PeekLstat(string path, byte direntType, out CopperStat st);
}
