// Replay of a manifest (DESIGN decision 15): the questions a previous job asked are asked
// again, through this node's cache, before the ranks ask them. Nothing stale can come of it:
// every answer is this job's own (a changed file is fetched as it is now, a vanished one
// answers its error, a listing shows what the directory holds now); the manifest only says
// what to ask. Metadata first (many operations in flight, bounded), then files in first-use
// order. Requests of applications meanwhile coalesce with the replay's (NodeCache), so a
// path already on its way is waited for, never fetched twice.
//
// Down the tree (ReplayTree): the root of tree 0 replays the metadata against the file
// system, then sends the list of what to ask to its children (TreeWire Replay messages);
// each agent relays the list to its own children and replays it through its cache, whose
// upstream is its parent: the answers and the files (LZ4 chunks, pipelined, as for any
// miss) flow down the tree, each level caching and relaying them. Each agent says when it
// is done (ReplayDone, relayed up to the root), and the root says when every node is.
using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using Copper.Interop;
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

/// <summary>One thing to ask again: a path and what was asked of it.</summary>
internal readonly record struct ReplayItem(string Path, Asked Asked, byte AccessModes);

/// <summary>A replay's progress on one node, for `copper stats`.</summary>
internal sealed class ReplayProgress
{
    private long _entries, _done, _bytes, _files, _changed, _vanished, _nodesDone;
    private long _startTicks, _endTicks;

    /// <summary>none, running, done, skipped.</summary>
    public string State { get; set; } = "none";

    public string Message { get; set; } = "";

    public long Entries => Interlocked.Read(ref _entries);

    public long Done => Interlocked.Read(ref _done);

    public long Bytes => Interlocked.Read(ref _bytes);

    public long Changed => Interlocked.Read(ref _changed);

    public long Vanished => Interlocked.Read(ref _vanished);

    public void Start(long entries)
    {
        Interlocked.Exchange(ref _entries, entries);
        Interlocked.Exchange(ref _startTicks, Stopwatch.GetTimestamp());
        State = "running";
    }

    public void Finish()
    {
        Interlocked.Exchange(ref _endTicks, Stopwatch.GetTimestamp());
        State = "done";
    }

    public void EntryDone() => Interlocked.Increment(ref _done);

    public void File(long bytes)
    {
        Interlocked.Increment(ref _files);
        Interlocked.Add(ref _bytes, bytes);
    }

    public void Change() => Interlocked.Increment(ref _changed);

    public void Vanish() => Interlocked.Increment(ref _vanished);

    public void NodesDone(long n) => Interlocked.Exchange(ref _nodesDone, n);

    public double Seconds
    {
        get
        {
            long start = Interlocked.Read(ref _startTicks), end = Interlocked.Read(ref _endTicks);
            return start == 0 ? 0 : (double)((end == 0 ? Stopwatch.GetTimestamp() : end) - start) / Stopwatch.Frequency;
        }
    }

    public void DescribeTo(Utf8JsonWriter w)
    {
        w.WriteString("replay_state", State);
        w.WriteNumber("replay_entries", Entries);
        w.WriteNumber("replay_done", Done);
        w.WriteNumber("replay_files", Interlocked.Read(ref _files));
        w.WriteNumber("replay_bytes", Bytes);
        w.WriteNumber("replay_changed", Changed);
        w.WriteNumber("replay_vanished", Vanished);
        w.WriteNumber("replay_ms", (long)(Seconds * 1000));
        if (Interlocked.Read(ref _nodesDone) > 0)
        {
            w.WriteNumber("replay_nodes_done", Interlocked.Read(ref _nodesDone));
        }
        if (Message.Length > 0)
        {
            w.WriteString("replay_message", Message);
        }
    }
}

/// <summary>Asks a list of questions again through a node's cache, with a bounded number in flight.</summary>
internal sealed class Replayer(NodeCache cache, ReplayProgress progress, int concurrency)
{
    private static readonly AsyncLocal<bool> s_inReplay = new();

    /// <summary>True in the flow of a replay's questions (they travel up flagged, TreeWire.FlagReplay).</summary>
    public static bool InReplay => s_inReplay.Value;

    /// <summary>Marks the current flow as a replay's (until the calling async method returns).</summary>
    public static void MarkReplay() => s_inReplay.Value = true;

    /// <summary>
    /// Replays <paramref name="items"/>: metadata, then files. With <paramref name="recorded"/>
    /// (the root, which has the manifest), each answer is compared with the identity recorded.
    /// </summary>
    public async Task RunAsync(IReadOnlyList<ReplayItem> items, IReadOnlyList<ManifestEntry>? recorded, Func<Task>? afterMetadata, CancellationToken ct)
    {
        progress.Start(items.Count);
        MarkReplay();
        var options = new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = ct };
        await Parallel.ForEachAsync(Enumerable.Range(0, items.Count), options, async (i, token) =>
        {
            ReplayItem it = items[i];
            StatAnswer? fresh = null;
            if ((it.Asked & Asked.Lstat) != 0)
            {
                fresh = await cache.StatAsync(it.Path, follow: false, token);
            }
            if ((it.Asked & Asked.Stat) != 0)
            {
                StatAnswer s = await cache.StatAsync(it.Path, follow: true, token);
                fresh ??= s;
            }
            if ((it.Asked & Asked.ReadLink) != 0)
            {
                await cache.ReadLinkAsync(it.Path, token);
            }
            if ((it.Asked & Asked.List) != 0)
            {
                await cache.ListDirAsync(it.Path, token);
            }
            if ((it.Asked & Asked.Access) != 0)
            {
                for (int mode = 0; mode < 8; mode++)
                {
                    if ((it.AccessModes & (1 << mode)) != 0)
                    {
                        await cache.AccessAsync(it.Path, mode, token);
                    }
                }
            }
            if (recorded != null && fresh is { } f && recorded[i].Error == 0)
            {
                if (f.Status != 0)
                {
                    progress.Vanish();
                }
                else if (!recorded[i].SameIdentity(f.St))
                {
                    progress.Change();
                }
            }
            if ((it.Asked & Asked.Open) == 0)
            {
                progress.EntryDone();
            }
        });
        if (afterMetadata != null)
        {
            await afterMetadata();
        }
        // Files in first-use order: the ones an import needs first arrive first.
        await Parallel.ForEachAsync(Enumerable.Range(0, items.Count).Where(i => (items[i].Asked & Asked.Open) != 0), options, async (i, token) =>
        {
            OpenAnswer a = await cache.OpenAsync(items[i].Path, token);
            if (a is { Status: 0, Kind: OpenKind.File })
            {
                progress.File(a.St.Size);
            }
            // Opened only (no stat asked): the open's answer is the one to compare.
            if (recorded != null && (items[i].Asked & (Asked.Lstat | Asked.Stat)) == 0 && recorded[i].Error == 0)
            {
                if (a.Status > 0)
                {
                    progress.Vanish();
                }
                else if (a.Status == 0 && !recorded[i].SameIdentity(a.St))
                {
                    progress.Change();
                }
            }
            progress.EntryDone();
        });
        progress.Finish();
    }

    /// <summary>What to ask again of a manifest's first <paramref name="max"/> entries.</summary>
    public static List<ReplayItem> ItemsOf(IReadOnlyList<ManifestEntry> entries, int max) =>
        entries.Take(max).Select(e => new ReplayItem(e.Path, e.Asked, e.AccessModes)).ToList();
}

/// <summary>The replay's list as it travels the tree, in batches of about a megabyte.</summary>
internal static class ReplayWire
{
    private const int BatchBytes = 1 << 20;

    /// <summary>
    /// Replay messages: head (aux = batch index, flags bit 0 = last batch, id = item count),
    /// then items, each u8 asked, u8 access modes, u16 path length, the path's bytes.
    /// </summary>
    public static List<byte[]> Encode(IReadOnlyList<ReplayItem> items)
    {
        var batches = new List<byte[]>();
        var body = new MemoryStream();
        Span<byte> head = stackalloc byte[4];
        foreach (ReplayItem it in items)
        {
            byte[] path = PathBytes.Encode(it.Path);
            head[0] = (byte)it.Asked;
            head[1] = it.AccessModes;
            BinaryPrimitives.WriteUInt16LittleEndian(head[2..], (ushort)path.Length);
            body.Write(head);
            body.Write(path);
            if (body.Length >= BatchBytes)
            {
                batches.Add(Batch(body, batches.Count, last: false, items.Count));
                body.SetLength(0);
            }
        }
        batches.Add(Batch(body, batches.Count, last: true, items.Count));
        return batches;
    }

    private static byte[] Batch(MemoryStream body, int index, bool last, int count)
    {
        byte[] m = TreeWire.Message(TreeKind.Replay, 0, 0, 0, index, (ulong)count, (int)body.Length, last ? (byte)1 : (byte)0);
        body.GetBuffer().AsSpan(0, (int)body.Length).CopyTo(m.AsSpan(TreeWire.HeadSize));
        return m;
    }

    /// <summary>Appends a batch's items to <paramref name="into"/>; false when it is malformed.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> body, List<ReplayItem> into)
    {
        while (!body.IsEmpty)
        {
            if (body.Length < 4)
            {
                return false;
            }
            int length = BinaryPrimitives.ReadUInt16LittleEndian(body[2..]);
            if (length == 0 || length > Protocol.MaxPath || body.Length < 4 + length)
            {
                return false;
            }
            // The same rule as a manifest's: a normalized absolute path, nothing that could climb out of the mirror.
            byte[] raw = body.Slice(4, length).ToArray();
            if (PathPolicy.TryDecode(new System.Buffers.ReadOnlySequence<byte>(raw), out string path) != 0 || PathBytes.Decode(raw) != path)
            {
                return false;
            }
            into.Add(new ReplayItem(path, (Asked)body[0], body[1]));
            body = body[(4 + length)..];
        }
        return true;
    }
}

/// <summary>The replay's place in the tree: list down, "done" up (tree 0 carries both).</summary>
internal sealed partial class ReplayTree
{
    private readonly TreePeers _peers;
    private readonly Replayer _replayer;
    private readonly ReplayProgress _progress;
    private readonly CancellationToken _stop;
    private readonly List<byte[]> _batches = [];
    private readonly List<ReplayItem> _items = [];
    private readonly HashSet<int> _nodesDone = [];
    private readonly Lock _lock = new();
    private bool _started;

    public ReplayTree(TreePeers peers, Replayer replayer, ReplayProgress progress, CancellationToken stop)
    {
        _peers = peers;
        _replayer = replayer;
        _progress = progress;
        _stop = stop;
    }

    private int Root => _peers.Topo.Root(0);

    /// <summary>On the root: replays <paramref name="manifest"/> and sends its list down once the metadata is here.</summary>
    public Task RunAtRootAsync(Manifest manifest, int max)
    {
        List<ReplayItem> items = Replayer.ItemsOf(manifest.Entries, max);
        return Task.Run(async () =>
        {
            try
            {
                await _replayer.RunAsync(items, manifest.Entries, () =>
                {
                    foreach (byte[] batch in ReplayWire.Encode(items))
                    {
                        SendToChildren(batch);
                    }
                    return Task.CompletedTask;
                }, _stop);
                Console.Out.WriteLine($"copper-agent: replay at the root done: {_progress.Done} entries ({_progress.Changed} changed, {_progress.Vanished} vanished), {_progress.Bytes} bytes of files, {_progress.Seconds:0.000} s");
                Console.Out.Flush();
                OnDone(_peers.Rank);
            }
            catch (OperationCanceledException)
            {
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                LogReplayFailed(_peers.Log, ex.Message);
                Console.Error.WriteLine($"copper-agent: replay stopped: {ex.Message}");
            }
        });
    }

    /// <summary>On the root: there is nothing to replay; every node is told so through "done".</summary>
    public void NothingToReplay()
    {
        foreach (byte[] batch in ReplayWire.Encode([]))
        {
            SendToChildren(batch);
        }
        OnDone(_peers.Rank);
    }

    /// <summary>A Replay or ReplayDone message (from the progress thread: nothing here blocks).</summary>
    public void OnMessage(int source, in TreeHead h, byte[] m)
    {
        if (h.Kind == TreeKind.ReplayDone)
        {
            OnDone(h.Aux);
            return;
        }
        bool last = (h.Flags & 1) != 0;
        lock (_lock)
        {
            if (_started || h.Aux != _batches.Count || !ReplayWire.TryDecode(m.AsSpan(TreeWire.HeadSize), _items))
            {
                LogBadBatch(_peers.Log, source, h.Aux);
                return;
            }
            _batches.Add(m);
            if (!last)
            {
                return;
            }
            _started = true;
        }
        _ = Task.Run(async () =>
        {
            try
            {
                foreach (byte[] batch in _batches)
                {
                    SendToChildren(batch);
                }
                await _replayer.RunAsync(_items, null, null, _stop);
                OnDone(_peers.Rank);
            }
            catch (OperationCanceledException)
            {
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                LogReplayFailed(_peers.Log, ex.Message);
            }
        });
    }

    /// <summary>
    /// Sends <paramref name="m"/> to every child in tree 0 without waiting for any: a child that
    /// is dead or frozen must not hold the replay of the others (MPI keeps the batches' order
    /// to each child).
    /// </summary>
    private void SendToChildren(byte[] m)
    {
        foreach (int c in _peers.Topo.Children(0, _peers.Rank))
        {
            int child = c;
            _peers.Send(child, m).ContinueWith(
                t => LogSendFailed(_peers.Log, child, t.Exception!.InnerException!.Message),
                CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        }
    }

    /// <summary>Node <paramref name="rank"/> has every entry: counted at the root, else passed up.</summary>
    private void OnDone(int rank)
    {
        if (_peers.Rank != Root)
        {
            int parent = _peers.Topo.Parent(0, _peers.Rank);
            _ = _peers.Send(parent, TreeWire.Message(TreeKind.ReplayDone, 0, 0, 0, rank, 0, 0)).ContinueWith(
                t => _ = _peers.Send(Root, TreeWire.Message(TreeKind.ReplayDone, 0, 0, 0, rank, 0, 0)),
                CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            return;
        }
        int n;
        lock (_lock)
        {
            if (!_nodesDone.Add(rank))
            {
                return;
            }
            n = _nodesDone.Count;
        }
        _progress.NodesDone(n);
        if (n == _peers.Topo.Size)
        {
            Console.Out.WriteLine($"copper-agent: replay done on all {n} nodes");
            Console.Out.Flush();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "replay batch {Index} from rank {Source} is malformed or out of order; dropped")]
    private static partial void LogBadBatch(ILogger logger, int source, int index);

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not send the replay to rank {Child}: {Reason}")]
    private static partial void LogSendFailed(ILogger logger, int child, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "replay stopped: {Reason}")]
    private static partial void LogReplayFailed(ILogger logger, string reason);
}
