// Files relayed to children: a file on its way into this node's mirror is relayed chunk by
// chunk as it arrives (Transfer); once it is here, its encoded chunks are kept for a while
// (the newest RelayKeepBytes of them), so a child that asks a little later (every child of a
// replay asks for every file, and children of one parent rarely ask at the same instant) gets
// the chunks as they came: LZ4-compressed once where the file system was read, never
// decompressed and compressed again at each level. A child that asks after they are dropped
// gets the mirror's copy, compressed for it.
using System.Collections.Concurrent;

namespace Copper.Agent;

internal sealed partial class NodeCache
{
    private readonly ConcurrentDictionary<string, Transfer> _finished = new(StringComparer.Ordinal);
    private readonly Queue<(string Path, Transfer Transfer)> _finishedOrder = new(); // protected by _finishedLock
    private readonly Lock _finishedLock = new();
    private long _finishedBytes; // protected by _finishedLock

    /// <summary>Most encoded bytes of finished transfers kept for relaying.</summary>
    public long RelayKeepBytes { get; init; } = 64L << 20;

    /// <summary>
    /// The transfer of <paramref name="path"/> in progress here, or a finished one whose chunks
    /// are still kept (then complete, of the version this node materialized), if any.
    /// </summary>
    public Transfer? InFlight(string path) =>
        _transfers.TryGetValue(path, out Transfer? t) || _finished.TryGetValue(path, out t) ? t : null;

    /// <summary>Keeps the chunks of a transfer that completed (the file is in the mirror), dropping the oldest kept.</summary>
    private void KeepFinished(string path, Transfer transfer)
    {
        long bytes = transfer.WireBytes;
        if (!transfer.Streaming || bytes > RelayKeepBytes)
        {
            return;
        }
        lock (_finishedLock)
        {
            _finished[path] = transfer;
            _finishedOrder.Enqueue((path, transfer));
            _finishedBytes += bytes;
            while (_finishedBytes > RelayKeepBytes && _finishedOrder.TryDequeue(out var old))
            {
                _finishedBytes -= old.Transfer.WireBytes;
                // A newer transfer of the same path stays.
                _finished.TryRemove(new KeyValuePair<string, Transfer>(old.Path, old.Transfer));
            }
        }
    }
}
