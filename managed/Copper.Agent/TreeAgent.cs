// The agent's place in the MPI tree. As an IUpstream it sends each miss to the parent of
// the path's tree (or reads the file system where this agent is that tree's root); as a
// parent it answers its children's requests from its own NodeCache, so misses coalesce
// and answers are cached at every level. Files travel as chunks: a chunk is relayed to
// the children as soon as it arrives here (see Transfer).
//
// Patience: a parent that sends nothing at all for `patience` while a request waits on it
// is taken as gone; the request, and every later one in that tree, is answered from the
// real file system (counted as degraded), never left hanging. Silence is measured from the
// last message of any kind heard from that parent, not from the start of the request: a
// parent sends each child with a request in service an Alive message several times per
// patience (from a thread of its own, whatever the request is doing: waiting on its own
// parent, reading the file system, relaying a large file), so a long transfer is never
// taken for a death, and a dead parent is noticed within `patience`.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;
using Copper.Interop;
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

internal sealed partial class TreeAgent : IUpstream
{
    private const int SendWindow = 8;

    private TreeTopology _topo = new(1, 1, 2);
    private int _rank;
    private Counters _counters = new();
    private ILogger _log = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
    private LocalFileSystemUpstream _local = null!;
    private TimeSpan _patience;
    private long _patienceTicks;
    private TimeSpan _aliveEvery;
    private long[] _lastHeard = [];   // by rank: Stopwatch timestamp of its last message
    private int[] _inService = [];    // by rank: its requests this agent is serving now
    private int[] _children = [];     // every child, in any tree
    private readonly CancellationTokenSource _quiet = new();  // ends the keep-alives
    private readonly ConcurrentDictionary<ulong, Channel<byte[]>> _pending = new();
    private readonly List<(int Source, byte[] Message)> _early = [];
    private bool[] _parentDown = [];
    private bool _started;
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _joined = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<int> _treeReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _joinLock = new();
    private long _nextId;
    private MpiTransport? _mpi;
    private NodeCache? _cache;
    private Answers? _answers;
    private int _acksMissing;
    private int _childrenMissing;
    private int _subtree = 1;
    private bool _reported;

    /// <summary>Completes when this agent has joined every tree (its parents answered).</summary>
    public Task Joined => _joined.Task;

    /// <summary>On the root of tree 0: completes with the node count once every node has joined.</summary>
    public Task<int> TreeReady => _treeReady.Task;

    /// <summary>Cancelled when a parent asks the job to stop.</summary>
    public CancellationToken ShutdownRequested => _stopping.Token;

    public static bool HasChildren(TreeTopology topo, int rank)
    {
        for (int t = 0; t < topo.Trees; t++)
        {
            if (topo.Children(t, rank).Any())
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// The progress thread's callback. Replies go straight to their waiting request; requests
    /// are served on the thread pool; nothing here blocks. Messages that arrive before
    /// <see cref="Start"/> wait for it.
    /// </summary>
    public void OnMessage(int source, byte[] m)
    {
        if (!Volatile.Read(ref _started))
        {
            lock (_early)
            {
                if (!_started)
                {
                    _early.Add((source, m));
                    return;
                }
            }
        }
        Handle(source, m);
    }

    /// <summary>Starts handling messages (those that came early first) and joins the trees.</summary>
    public void Start(MpiTransport mpi, TreeTopology topo, NodeCache cache, Counters counters, ILogger log, LocalFileSystemUpstream local, TimeSpan patience)
    {
        _counters = counters;
        _log = log;
        _local = local;
        _patience = patience;
        _patienceTicks = (long)(patience.TotalSeconds * Stopwatch.Frequency);
        // Five keep-alives per patience, at most one a second: one or two lost to a busy
        // machine still leave the child well inside its patience.
        _aliveEvery = TimeSpan.FromMilliseconds(Math.Clamp(patience.TotalMilliseconds / 5, 50, 1000));
        _mpi = mpi;
        _topo = topo;
        _rank = mpi.Rank;
        _cache = cache;
        _answers = new Answers(cache, counters);
        _parentDown = new bool[topo.Trees];
        _lastHeard = new long[topo.Size];
        _inService = new int[topo.Size];
        _children = Enumerable.Range(0, topo.Trees).SelectMany(t => topo.Children(t, _rank)).Distinct().ToArray();
        lock (_joinLock)
        {
            _childrenMissing = _topo.Children(0, _rank).Count();
            for (int t = 0; t < _topo.Trees; t++)
            {
                if (_topo.Parent(t, _rank) >= 0)
                {
                    _acksMissing++;
                }
            }
        }
        lock (_early)
        {
            foreach ((int source, byte[] m) in _early)
            {
                Handle(source, m);
            }
            _early.Clear();
            Volatile.Write(ref _started, true);
        }
        if (_children.Length > 0)
        {
            new Thread(KeepAliveLoop) { IsBackground = true, Name = "copper-alive" }.Start();
        }
        for (int t = 0; t < _topo.Trees; t++)
        {
            int parent = _topo.Parent(t, _rank);
            if (parent >= 0)
            {
                Send(parent, TreeWire.Control(TreeKind.Join, t));
            }
        }
        AdvanceJoin();
    }

    /// <summary>Tells every child (in every tree) that the job stops; waits a little for the sends.</summary>
    public async Task StopChildrenAsync(TimeSpan wait)
    {
        _quiet.Cancel();
        var sends = new List<Task>();
        var done = new HashSet<int>();
        for (int t = 0; t < _topo.Trees; t++)
        {
            foreach (int c in _topo.Children(t, _rank))
            {
                if (done.Add(c))
                {
                    sends.Add(Send(c, TreeWire.Control(TreeKind.Shutdown, t)));
                }
            }
        }
        await Task.WhenAny(Task.WhenAll(sends), Task.Delay(wait));
    }

    public void DescribeTo(Utf8JsonWriter w)
    {
        w.WriteNumber("rank", _rank);
        w.WriteString("host", _mpi?.Host ?? "?");
        w.WriteNumber("nodes", _topo.Size);
        w.WriteNumber("trees", _topo.Trees);
        w.WriteNumber("fanout", _topo.Fanout);
        w.WriteStartArray("root_of");
        for (int t = 0; t < _topo.Trees; t++)
        {
            if (_topo.Root(t) == _rank)
            {
                w.WriteNumberValue(t);
            }
        }
        w.WriteEndArray();
        w.WriteStartArray("parents");
        for (int t = 0; t < _topo.Trees; t++)
        {
            w.WriteNumberValue(_topo.Parent(t, _rank));
        }
        w.WriteEndArray();
        w.WriteStartArray("parent_down");
        for (int t = 0; t < _topo.Trees; t++)
        {
            w.WriteBooleanValue(Volatile.Read(ref _parentDown[t]));
        }
        w.WriteEndArray();
    }

    // ------------------------------------------------------------------ IUpstream (child side)

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
                LogBadChunk(_log, path, index);
                return new FetchAnswer(Protocol.StatusFallback, 0, st);
            }
            _counters.FromParent(m.Length);
            await sink.ChunkAsync(raw, wire, ct);
            got += raw.Length;
        }
        return new FetchAnswer(0, OpenKind.File, st);
    }

    /// <summary>A request to the parent of the path's tree; null where this agent reads the file system.</summary>
    private Call? Open(in Request request)
    {
        int tree = _topo.TreeOf(request.Path);
        int parent = _topo.Parent(tree, _rank);
        if (parent < 0)
        {
            return null;
        }
        if (Volatile.Read(ref _parentDown[tree]))
        {
            _counters.Degraded();
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
        _counters.Forwarded();
        Task sent = Send(parent, TreeWire.Request(tree, id, request));
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
            _counters.Degraded();
        }
    }

    private void MarkDown(int tree, string reason)
    {
        if (!Volatile.Read(ref _parentDown[tree]))
        {
            Volatile.Write(ref _parentDown[tree], true);
            LogParentDown(_log, tree, _topo.Parent(tree, _rank), reason);
        }
    }

    private Task Send(int dest, byte[] message) => _mpi!.SendAsync(dest, message);

    private sealed class Call(TreeAgent agent, ulong id, int tree, int parent, Channel<byte[]> replies) : IDisposable
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
                long deadline = Math.Max(since, Volatile.Read(ref agent._lastHeard[parent])) + agent._patienceTicks;
                long left = deadline - Stopwatch.GetTimestamp();
                if (left <= 0)
                {
                    agent._counters.ParentTimeout();
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

    // ------------------------------------------------------------------ messages (parent side)

    private void Handle(int source, byte[] m)
    {
        if ((uint)source < (uint)_lastHeard.Length)
        {
            Volatile.Write(ref _lastHeard[source], Stopwatch.GetTimestamp());
        }
        if (!TreeWire.TryReadHead(m, out TreeHead h))
        {
            LogMalformed(_log, source, m.Length);
            return;
        }
        switch (h.Kind)
        {
            case TreeKind.Request:
                _counters.ChildRequest();
                Interlocked.Increment(ref _inService[source]);
                _ = Task.Run(() => ServeAsync(source, h, m));
                break;
            case TreeKind.Reply or TreeKind.Chunk:
                if (_pending.TryGetValue(h.Id, out Channel<byte[]>? ch))
                {
                    ch.Writer.TryWrite(m);
                }
                break;
            case TreeKind.Alive:
                break;  // heard (above): that is all it says
            case TreeKind.Join:
                _ = Send(source, TreeWire.Control(TreeKind.JoinAck, h.Tree));
                break;
            case TreeKind.JoinAck:
                lock (_joinLock)
                {
                    _acksMissing--;
                }
                AdvanceJoin();
                break;
            case TreeKind.Subtree:
                lock (_joinLock)
                {
                    _subtree += h.Aux;
                    _childrenMissing--;
                }
                AdvanceJoin();
                break;
            case TreeKind.Shutdown:
                _ = Task.Run(_stopping.Cancel);
                break;
        }
    }

    private void AdvanceJoin()
    {
        int report = 0;
        bool joined = false;
        lock (_joinLock)
        {
            if (_acksMissing > 0)
            {
                return;
            }
            joined = true;
            if (_childrenMissing == 0 && !_reported)
            {
                _reported = true;
                report = _subtree;
            }
        }
        if (joined)
        {
            _joined.TrySetResult();
        }
        if (report > 0)
        {
            int parent = _topo.Parent(0, _rank);
            if (parent >= 0)
            {
                _ = Send(parent, TreeWire.Control(TreeKind.Subtree, 0, report));
            }
            else
            {
                _treeReady.TrySetResult(report);
            }
        }
    }

    private async Task ServeAsync(int child, TreeHead h, byte[] m)
    {
        CancellationToken ct = _stopping.Token;
        try
        {
            int bad = TreeWire.TryReadRequest(m, h, out Request request);
            if (bad != 0)
            {
                await Send(child, TreeWire.Reply(h.Op, h.Id, Answers.Head(bad)));
            }
            else if (request.Op == Op.Open)
            {
                await ServeFetchAsync(child, h.Id, request.Path, _cache!, ct);
            }
            else
            {
                // The same answer function as the local server's: same cache, same bytes.
                await Send(child, TreeWire.Reply(h.Op, h.Id, await _answers!.AnswerAsync(request, ct)));
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The child gives up on its own (patience) if even this cannot be sent.
            LogServeFailed(_log, child, ex.Message);
        }
        finally
        {
            Interlocked.Decrement(ref _inService[child]);
        }
    }

    /// <summary>
    /// Every <see cref="_aliveEvery"/>, an Alive message to each child with a request in service.
    /// A thread of its own, so keep-alives go out however busy the thread pool is with the work.
    /// </summary>
    private void KeepAliveLoop()
    {
        byte[] alive = TreeWire.Control(TreeKind.Alive, 0);
        while (!_quiet.Token.WaitHandle.WaitOne(_aliveEvery) && !_stopping.IsCancellationRequested)
        {
            foreach (int c in _children)
            {
                if (Volatile.Read(ref _inService[c]) > 0)
                {
                    _ = Send(c, alive);
                }
            }
        }
    }

    private async Task ServeFetchAsync(int child, ulong id, string path, NodeCache cache, CancellationToken ct)
    {
        Task<OpenAnswer> open = cache.OpenAsync(path, ct);
        Transfer? t = cache.InFlight(path);
        var window = new Queue<Task>();
        if (t != null && await t.Header)
        {
            // Relay chunk by chunk while the file is still arriving here.
            await Send(child, TreeWire.FetchReply(id, 0, OpenKind.File, t.St, t.Size));
            int i = 0;
            for (; ; i++)
            {
                WireChunk? c = await t.GetAsync(i, ct);
                if (c == null)
                {
                    break;
                }
                await Windowed(window, child, TreeWire.Chunk(id, i, c));
            }
            if (t.Status != 0)
            {
                await Windowed(window, child, TreeWire.ChunkAbort(id, i, t.Status));
            }
            await Task.WhenAll(window);
            return;
        }
        OpenAnswer a = await open;
        if (a.Status != 0 || a.Kind != OpenKind.File)
        {
            await Send(child, TreeWire.FetchReply(id, a.Status, a.Kind, a.St, 0));
            return;
        }
        // Relay the node's complete copy.
        // By the bytes the path stands for: File.OpenHandle would re-encode a name that is not UTF-8.
        int fd = Interop.Libc.Open(cache.LocalPathOf(path), Interop.Libc.O_RDONLY | Interop.Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            await Send(child, TreeWire.FetchReply(id, Protocol.StatusFallback, 0, a.St, 0));
            return;
        }
        var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        using (handle)
        {
            long size = RandomAccess.GetLength(handle);
            await Send(child, TreeWire.FetchReply(id, 0, OpenKind.File, a.St, size));
            byte[] buf = new byte[(int)Math.Clamp(size, 1, ChunkCodec.ChunkBytes)];
            long offset = 0;
            for (int i = 0; offset < size; i++)
            {
                int filled = 0;
                while (filled < buf.Length && offset + filled < size)
                {
                    int n = await RandomAccess.ReadAsync(handle, buf.AsMemory(filled), offset + filled, ct);
                    if (n == 0)
                    {
                        break;
                    }
                    filled += n;
                }
                if (filled == 0)
                {
                    await Windowed(window, child, TreeWire.ChunkAbort(id, i, Protocol.StatusFallback));
                    break;
                }
                await Windowed(window, child, TreeWire.Chunk(id, i, ChunkCodec.Encode(buf.AsSpan(0, filled))));
                offset += filled;
            }
            await Task.WhenAll(window);
        }
    }

    /// <summary>Sends with at most <see cref="SendWindow"/> chunks in flight to one child.</summary>
    private async Task Windowed(Queue<Task> window, int child, byte[] message)
    {
        while (window.Count >= SendWindow)
        {
            await window.Dequeue();
        }
        _counters.ToChildren(message.Length);
        window.Enqueue(Send(child, message));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "tree {Tree}: parent {Parent} is unavailable ({Reason}); answering from the file system")]
    private static partial void LogParentDown(ILogger logger, int tree, int parent, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "malformed message from rank {Source} ({Length} bytes) dropped")]
    private static partial void LogMalformed(ILogger logger, int source, int length);

    [LoggerMessage(Level = LogLevel.Warning, Message = "chunk {Index} of {Path} from the parent is damaged; the file is read from the real path")]
    private static partial void LogBadChunk(ILogger logger, string path, int index);

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not answer a request of rank {Child}: {Reason}")]
    private static partial void LogServeFailed(ILogger logger, int child, string reason);
}
