// The parent side of the agent's place in the MPI tree: it answers its children's requests
// with the same answer function as the local server (Answers, over this node's NodeCache),
// so misses coalesce and answers are cached at every level; files go down as chunks, relayed
// to the children as soon as they arrive here (see Transfer), at most SendWindow in flight per
// child. While any request of a child is in service, that child gets an Alive message several
// times per patience, from a thread of its own, whatever the request is doing (waiting on
// this agent's own parent, reading the file system, relaying a large file).
// Requests a replay asked (TreeWire.FlagReplay) bring their answer into this node's cache in
// one of ReplayLane places, so however many children replay at once, applications' requests
// (never held) are served first; the work such a request causes here asks upward as a replay
// too. The answer is sent outside the lane: a frozen child holds no place of the others.
using Copper.Interop;
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

internal sealed partial class TreeParent : IDisposable
{
    private const int SendWindow = 8;

    private readonly TreePeers peers;
    private readonly NodeCache cache;
    private readonly Answers _answers;
    private readonly int[] _inService;   // by rank: its requests this agent is serving now
    private readonly TimeSpan _aliveEvery;
    private readonly CancellationTokenSource _stopping = new();
    private SemaphoreSlim _replayLane = new(32, 32);

    /// <summary>Replay requests of children served at once (the rest wait; applications' never do).</summary>
    public int ReplayLane
    {
        set => _replayLane = new SemaphoreSlim(value, value);
    }

    public TreeParent(TreePeers peers, NodeCache cache, TimeSpan patience)
    {
        this.peers = peers;
        this.cache = cache;
        _answers = new Answers(cache, peers.Counters);
        _inService = new int[peers.Topo.Size];
        // Five keep-alives per patience, at most one a second: one or two lost to a busy
        // machine still leave the child well inside its patience.
        _aliveEvery = TimeSpan.FromMilliseconds(Math.Clamp(patience.TotalMilliseconds / 5, 50, 1000));
        if (peers.Children.Length > 0)
        {
            new Thread(KeepAliveLoop) { IsBackground = true, Name = "copper-alive" }.Start();
        }
    }

    /// <summary>A request from <paramref name="child"/>: served on the thread pool.</summary>
    public void OnRequest(int child, TreeHead h, byte[] m)
    {
        peers.Counters.ChildRequest();
        Interlocked.Increment(ref _inService[child]);
        if ((h.Flags & TreeWire.FlagReplay) != 0)
        {
            _ = Task.Run(() => ServeReplayAsync(child, h, m));
            return;
        }
        _ = Task.Run(() => ServeAsync(child, h, m));
    }

    /// <summary>
    /// A replay's request: its answer is brought into this node's cache inside the replay lane
    /// (asking upward as a replay), then sent like any other. Sending is outside the lane, so a
    /// frozen or dead child, whose sends never finish, holds no place of the others.
    /// </summary>
    private async Task ServeReplayAsync(int child, TreeHead h, byte[] m)
    {
        SemaphoreSlim lane = _replayLane;
        CancellationToken ct = _stopping.Token;
        bool held = false;
        try
        {
            await lane.WaitAsync(ct);
            held = true;
            Replayer.MarkReplay();
            if (TreeWire.TryReadRequest(m, h, out Request r) == 0)
            {
                Task fetched = r.Op switch
                {
                    Op.Open => cache.OpenAsync(r.Path, ct),
                    Op.Stat or Op.Lstat => cache.StatAsync(r.Path, r.Op == Op.Stat, ct),
                    Op.ReadLink => cache.ReadLinkAsync(r.Path, ct),
                    Op.Access => cache.AccessAsync(r.Path, r.Mode, ct),
                    Op.ListDir => cache.ListDirAsync(r.Path, ct),
                    _ => Task.CompletedTask,
                };
                await fetched;
            }
        }
        catch (OperationCanceledException)
        {
            Interlocked.Decrement(ref _inService[child]);
            return;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Answered below all the same: the cache's own failure is an answer too.
            LogServeFailed(peers.Log, child, ex.Message);
        }
        finally
        {
            if (held)
            {
                lane.Release();
            }
        }
        await ServeAsync(child, h, m);
    }

    /// <summary>Stops the keep-alives and the requests in service.</summary>
    public void Dispose() => _stopping.Cancel();

    private async Task ServeAsync(int child, TreeHead h, byte[] m)
    {
        CancellationToken ct = _stopping.Token;
        try
        {
            int bad = TreeWire.TryReadRequest(m, h, out Request request);
            if (bad != 0)
            {
                await peers.Send(child, TreeWire.Reply(h.Op, h.Id, Answers.Head(bad)));
            }
            else if (request.Op == Op.Open)
            {
                await ServeFetchAsync(child, h.Id, request.Path, cache, ct);
            }
            else
            {
                // The same answer function as the local server's: same cache, same bytes.
                await peers.Send(child, TreeWire.Reply(h.Op, h.Id, await _answers.AnswerAsync(request, ct)));
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The child gives up on its own (patience) if even this cannot be sent.
            LogServeFailed(peers.Log, child, ex.Message);
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
        while (!_stopping.Token.WaitHandle.WaitOne(_aliveEvery))
        {
            foreach (int c in peers.Children)
            {
                if (Volatile.Read(ref _inService[c]) > 0)
                {
                    _ = peers.Send(c, alive);
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
            await peers.Send(child, TreeWire.FetchReply(id, 0, OpenKind.File, t.St, t.Size));
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
            await peers.Send(child, TreeWire.FetchReply(id, a.Status, a.Kind, a.St, 0));
            return;
        }
        // Relay the node's complete copy.
        // By the bytes the path stands for: File.OpenHandle would re-encode a name that is not UTF-8.
        int fd = Interop.Libc.Open(cache.LocalPathOf(path), Interop.Libc.O_RDONLY | Interop.Libc.O_CLOEXEC, 0);
        if (fd < 0 && Interop.Libc.Errno == Interop.Libc.ENOENT)
        {
            // Evicted between the answer and this open: the next answer materializes it again.
            a = await cache.OpenAsync(path, ct);
            fd = a is { Status: 0, Kind: OpenKind.File }
                ? Interop.Libc.Open(cache.LocalPathOf(path), Interop.Libc.O_RDONLY | Interop.Libc.O_CLOEXEC, 0)
                : -1;
        }
        if (fd < 0)
        {
            await peers.Send(child, TreeWire.FetchReply(id, Protocol.StatusFallback, 0, a.St, 0));
            return;
        }
        var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        using (handle)
        {
            long size = RandomAccess.GetLength(handle);
            await peers.Send(child, TreeWire.FetchReply(id, 0, OpenKind.File, a.St, size));
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
        peers.Counters.ToChildren(message.Length);
        window.Enqueue(peers.Send(child, message));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not answer a request of rank {Child}: {Reason}")]
    private static partial void LogServeFailed(ILogger logger, int child, string reason);
}
