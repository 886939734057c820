// What a FUSE mount serves: the answers to the questions the mount's operations (FuseOps.cs)
// turn kernel requests into. The agent's mount is backed by its NodeCache (NodeCacheBackend.cs,
// which also holds the fallback to the real file system); the benchmarks' PFS model
// (managed/Copper.PfsModel) links this file and the mount's files and serves a passthrough of
// a real directory.
using Copper.Interop;

namespace Copper.Agent;

/// <summary>
/// Every status is 0 or a positive errno, the answer the mount gives: a backend resolves its own
/// failures (falls back) before answering. The one exception is <see cref="PeekLstat"/>.
/// </summary>
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
