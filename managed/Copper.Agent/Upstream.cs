// The "fetch from upstream" seam. The node cache asks an IUpstream for anything it does
// not hold. On a tree's root (and on a single node) that is the real file system; in the
// MPI tree it is the parent agent. The cache and the local server do not know which.
using Copper.Interop;

namespace Copper.Agent;

/// <summary>Outcome of a fetch: for a regular file within the size cap, the bytes went to the sink.</summary>
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
    /// goes to <paramref name="sink"/> (Begin, then its chunks in order); anything else falls back.
    /// </summary>
    ValueTask<FetchAnswer> FetchAsync(string path, long maxBytes, IFetchSink sink, CancellationToken ct);
}

/// <summary>Receives a regular file's bytes from an upstream, in order.</summary>
internal interface IFetchSink
{
    ValueTask BeginAsync(CopperStat st, long size, CancellationToken ct);

    /// <summary>
    /// One chunk. <paramref name="raw"/> is valid only during the call. <paramref name="wire"/> is the
    /// chunk's encoded form when the upstream already has it (a parent's chunk as received), so a
    /// node relays it without encoding again.
    /// </summary>
    ValueTask ChunkAsync(ReadOnlyMemory<byte> raw, WireChunk? wire, CancellationToken ct);
}
