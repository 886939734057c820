// The "fetch from upstream" seam. The node cache asks an IUpstream for anything it does
// not hold. On a tree's root (and on a single node) that is the real file system; in the
// MPI tree it is the parent agent. The cache and the local server do not know which.
using Copper.Interop;

namespace Copper.Agent;

internal readonly record struct StatAnswer(int Status, CopperStat St);

internal sealed record LinkAnswer(int Status, byte[] Target);

internal readonly record struct DirEntry(byte[] Name, ulong Ino, byte Type);

internal sealed record DirAnswer(int Status, IReadOnlyList<DirEntry> Entries);

/// <summary>Outcome of a fetch: for a regular file within the size cap, the bytes were written to the destination.</summary>
internal readonly record struct FetchAnswer(int Status, OpenKind Kind, CopperStat St);

internal interface IUpstream
{
    ValueTask<StatAnswer> StatAsync(string path, bool follow, CancellationToken ct);

    ValueTask<LinkAnswer> ReadLinkAsync(string path, CancellationToken ct);

    ValueTask<int> AccessAsync(string path, int mode, CancellationToken ct);

    ValueTask<DirAnswer> ListDirAsync(string path, CancellationToken ct);

    /// <summary>
    /// Opens <paramref name="path"/> (following symlinks). A directory answers Kind=Dir; a regular
    /// file larger than <paramref name="maxBytes"/> answers StatusTooBig; a regular file within it
    /// is copied into the stream <paramref name="openDestination"/> returns; anything else falls back.
    /// </summary>
    ValueTask<FetchAnswer> FetchAsync(string path, long maxBytes, Func<Stream> openDestination, CancellationToken ct);
}
