// The child side of the agent's place in the MPI tree: as the NodeCache's IUpstream it
// sends each miss to the parent of the path's tree (the same operations and bodies as the
// shim's requests, see Requests.cs), or reads the file system where this agent is that
// tree's root. Files arrive as chunks (TreeWire), written as they come.
//
// Patience: a parent that sends nothing at all for `patience` while a request waits on it
// is taken as gone; the request, and every later one in that tree, is answered from the
// real file system (counted as degraded), never left hanging, until that parent is heard
// again (a link back up: its late replies arrive). Silence is measured from the
// last message of any kind heard from that parent (TreePeers), not from the start of the
// request; parents send keep-alives while they serve (TreeParent).
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Copper.Interop;
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

internal sealed partial class TreeChild(TreePeers peers, LocalFileSystemUpstream local, TimeSpan patience) : IUpstream
{
    private readonly long _patienceTicks = (long)(patience.TotalSeconds * Stopwatch.Frequency);
    private readonly int[] _parentDown = new int[peers.Topo.Trees]; // by tree: 1 while its parent is given up on
    private readonly ConcurrentDictionary<ulong, Channel<byte[]>> _pending = new();
    private readonly LocalFileSystemUpstream _local = local;
    private readonly TreePeers _peers = peers;
    private readonly TimeSpan _patience = patience;
    private long _nextId;
    private int _anyDown; // trees whose parent is given up on now

    /// <summary>True once the parent of <paramref name="tree"/> was given up on.</summary>
    public bool ParentDown(int tree) => Volatile.Read(ref _parentDown[tree]) != 0;

    /// <summary>
    /// Any message from <paramref name="source"/>: a parent given up on that speaks again (a link
    /// that came back, a parent that was only slow) is asked again from now on.
    /// </summary>
    public void Heard(int source)
    {
        if (Volatile.Read(ref _anyDown) == 0)
        {
            return;
        }
        for (int t = 0; t < _parentDown.Length; t++)
        {
            if (Volatile.Read(ref _parentDown[t]) != 0 && _peers.Topo.Parent(t, _peers.Rank) == source
                && Interlocked.Exchange(ref _parentDown[t], 0) != 0)
            {
                Interlocked.Decrement(ref _anyDown);
                LogParentBack(_peers.Log, t, source);
            }
        }
    }

    /// <summary>A reply or chunk from a parent: to the request waiting for it.</summary>
    public void OnReply(in TreeHead h, byte[] m)
    {
        if (_pending.TryGetValue(h.Id, out Channel<byte[]>? ch))
        {
            ch.Writer.TryWrite(m);
        }
    }

    /// <summary>
    /// Asks the parent of the path's tree; null when this agent reads the file system itself
    /// (it is the root, or the parent is down or went quiet: then counted as degraded).
    /// </summary>
    private async ValueTask<byte[]?> AskAsync(Request request, CancellationToken ct)
    {
        using Call? call = Open(request);
        byte[]? r = call == null ? null : await call.NextAsync(ct);
        if (r == null || !TreeWire.TryReadHead(r, out TreeHead h) || h.Kind != TreeKind.Reply)
        {
            Local(call);
            return null;
        }
        return r[TreeWire.HeadSize..];
    }

    public async ValueTask<StatAnswer> StatAsync(string path, bool follow, CancellationToken ct) =>
        await AskAsync(new Request(follow ? Op.Stat : Op.Lstat, path), ct) is { } reply
            ? Answers.ReadStat(reply)
            : await _local.StatAsync(path, follow, ct);

    public async ValueTask<LinkAnswer> ReadLinkAsync(string path, CancellationToken ct) =>
        await AskAsync(new Request(Op.ReadLink, path), ct) is { } reply
            ? Answers.ReadLink(reply)
            : await _local.ReadLinkAsync(path, ct);

    public async ValueTask<int> AccessAsync(string path, int mode, CancellationToken ct) =>
        await AskAsync(new Request(Op.Access, path, mode), ct) is { } reply
            ? Answers.Status(reply)
            : await _local.AccessAsync(path, mode, ct);

    public async ValueTask<DirAnswer> ListDirAsync(string path, CancellationToken ct) =>
        await AskAsync(new Request(Op.ListDir, path), ct) is { } reply
            ? Answers.ReadListing(reply)
            : await _local.ListDirAsync(path, ct);

    public async ValueTask<FetchAnswer> FetchAsync(string path, long maxBytes, IFetchSink sink, CancellationToken ct)
    {
        // Every agent of a job has the same -M: the parent fetches with its own.
        using Call? call = Open(new Request(Op.Open, path));
        byte[]? r = call == null ? null : await call.NextAsync(ct);
        if (r == null || !TreeWire.TryReadHead(r, out TreeHead h) || h.Kind != TreeKind.Reply)
        {
            Local(call);
            return await _local.FetchAsync(path, maxBytes, sink, ct);
        }
        if (!TreeWire.TryReadFetchReply(r.AsSpan(TreeWire.HeadSize), out OpenKind kind, out long size, out CopperStat st))
        {
            return new FetchAnswer(Protocol.StatusFallback, 0, default);
        }
        if (h.Status != 0 || kind == OpenKind.Dir)
        {
            return new FetchAnswer(h.Status, kind, st);
        }
        await sink.BeginAsync(st, size, ct);
        long got = 0;
        for (int index = 0; got < size; index++)
        {
            byte[]? m = await call!.NextAsync(ct);
            if (m == null || !TreeWire.TryReadHead(m, out TreeHead ch) || ch.Kind != TreeKind.Chunk || ch.Aux != index || ch.Status != 0)
            {
                return new FetchAnswer(Protocol.StatusFallback, 0, st);
            }
            WireChunk? wire = TreeWire.ReadChunk(ch, m.AsSpan(TreeWire.HeadSize));
            byte[]? raw = wire == null ? null : ChunkCodec.Decode(wire);
            if (raw == null || got + raw.Length > size)
            {
                LogBadChunk(_peers.Log, path, index);
                return new FetchAnswer(Protocol.StatusFallback, 0, st);
            }
            _peers.Counters.FromParent(m.Length);
            await sink.ChunkAsync(raw, wire, ct);
            got += raw.Length;
        }
        return new FetchAnswer(0, OpenKind.File, st);
    }

    /// <summary>A request to the parent of the path's tree; null where this agent reads the file system.</summary>
    private Call? Open(in Request request)
    {
        int tree = _peers.Topo.TreeOf(request.Path);
        int parent = _peers.Topo.Parent(tree, _peers.Rank);
        if (parent < 0)
        {
            return null;
        }
        if (Volatile.Read(ref _parentDown[tree]) != 0)
        {
            _peers.Counters.Degraded();
            return null;
        }
        ulong id = (ulong)Interlocked.Increment(ref _nextId);
        // A metadata answer is finished on the progress thread itself (a few microseconds of
        // work, one thread hop less); file chunks are written to disk, so they hop.
        var ch = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions
        {
            SingleReader = true,
            SingleWriter = true,
            AllowSynchronousContinuations = request.Op != Op.Open,
        });
        _pending[id] = ch;
        var call = new Call(this, id, tree, parent, ch);
        _peers.Counters.Forwarded();
        Task sent = _peers.Send(parent, TreeWire.Request(tree, id, request, Replayer.InReplay ? TreeWire.FlagReplay : (byte)0));
        if (!sent.IsCompletedSuccessfully)
        {
            sent.ContinueWith(t =>
            {
                if (t.IsFaulted)
                {
                    MarkDown(tree, t.Exception!.InnerException!.Message);
                    ch.Writer.TryComplete();
                }
            }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        return call;
    }

    /// <summary>The parent did not answer (or this agent is the root): the file system answers, counted when degraded.</summary>
    private void Local(Call? call)
    {
        if (call != null)
        {
            _peers.Counters.Degraded();
        }
    }

    private void MarkDown(int tree, string reason)
    {
        if (Interlocked.Exchange(ref _parentDown[tree], 1) == 0)
        {
            Interlocked.Increment(ref _anyDown);
            LogParentDown(_peers.Log, tree, _peers.Topo.Parent(tree, _peers.Rank), reason);
        }
    }

    private sealed class Call(TreeChild agent, ulong id, int tree, int parent, Channel<byte[]> replies) : IDisposable
    {
        /// <summary>The next message about this request; null when the parent went quiet for too long.</summary>
        public async ValueTask<byte[]?> NextAsync(CancellationToken ct)
        {
            // Time this agent spent elsewhere (writing the previous chunk) is not the parent's silence.
            long since = Stopwatch.GetTimestamp();
            while (true)
            {
                if (replies.Reader.TryRead(out byte[]? m))
                {
                    return m;
                }
                long deadline = Math.Max(since, agent._peers.LastHeard(parent)) + agent._patienceTicks;
                long left = deadline - Stopwatch.GetTimestamp();
                if (left <= 0)
                {
                    agent._peers.Counters.ParentTimeout();
                    agent.MarkDown(tree, $"silent for {agent._patience.TotalSeconds:0.#} s");
                    return null;
                }
                using var patience = CancellationTokenSource.CreateLinkedTokenSource(ct);
                patience.CancelAfter(TimeSpan.FromSeconds((double)left / Stopwatch.Frequency) + TimeSpan.FromMilliseconds(1));
                try
                {
                    if (!await replies.Reader.WaitToReadAsync(patience.Token))
                    {
                        return null;
                    }
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    // Deadline reached: look again, the parent may have spoken meanwhile.
                }
            }
        }

        public void Dispose() => agent._pending.TryRemove(id, out _);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "tree {Tree}: parent {Parent} is unavailable ({Reason}); answering from the file system")]
    private static partial void LogParentDown(ILogger logger, int tree, int parent, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "tree {Tree}: parent {Parent} is heard again; asking it again")]
    private static partial void LogParentBack(ILogger logger, int tree, int parent);

    [LoggerMessage(Level = LogLevel.Warning, Message = "chunk {Index} of {Path} from the parent is damaged; the file is read from the real path")]
    private static partial void LogBadChunk(ILogger logger, string path, int index);
}
