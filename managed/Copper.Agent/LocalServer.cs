// The node's local server: a Unix socket in a 0700 directory, peers checked by uid
// (SO_PEERCRED), frames parsed by the pure Framing.TryReadFrame. Connections are served
// asynchronously: an idle one holds no thread and no buffer, connections are capped and
// idle ones closed, so threads and memory stay bounded however many clients connect. A
// malformed frame closes that connection only; the agent keeps serving everyone else.
using System.Buffers;
using System.Collections.Concurrent;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Copper.Interop;
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

internal sealed partial class LocalServer : IDisposable
{
    private readonly NodeCache _cache;
    private readonly Answers _answers;
    private readonly Counters _counters;
    private readonly ILogger _log;
    private readonly int _node;
    private readonly uint _uid = Interop.Libc.GetUid();
    private readonly Socket _listener;

    /// <summary>Connections served at once; more are refused (their clients read the real paths).</summary>
    public const int DefaultMaxConnections = 8192;

    /// <summary>A connection silent this long is closed (its client reconnects on its next request).</summary>
    public static readonly TimeSpan DefaultIdleTimeout = TimeSpan.FromSeconds(60);

    private readonly int _maxConnections;
    private readonly TimeSpan _idleTimeout;
    private readonly ConcurrentDictionary<Connection, byte> _connections = new();

    /// <summary>
    /// Answers MANIFEST_SAVE: merges this agent's record into the named file; the status and a
    /// line for the user. Null: the operation is not offered (EINVAL).
    /// </summary>
    public Func<string, Task<(int Status, string Message)>>? SaveManifest { get; set; }

    public LocalServer(string socketPath, NodeCache cache, Counters counters, ILogger log, int node, int maxConnections = DefaultMaxConnections, TimeSpan? idleTimeout = null)
    {
        _cache = cache;
        _answers = new Answers(cache, counters);
        _counters = counters;
        _log = log;
        _node = node;
        _maxConnections = maxConnections;
        _idleTimeout = idleTimeout ?? DefaultIdleTimeout;
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        _listener.Listen(512);
    }

    /// <summary>Open local connections (for the counters and the tests).</summary>
    public int ConnectionCount => _connections.Count;

    public async Task RunAsync(CancellationToken ct)
    {
        using var sweeper = new Timer(_ => CloseIdle(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(ct);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            catch (SocketException ex)
            {
                // Out of descriptors, typically: do not spin on it.
                LogAcceptFailed(_log, ex.Message);
                await Task.Delay(10, CancellationToken.None);
                continue;
            }
            if (_connections.Count >= _maxConnections)
            {
                _counters.Rejected();
                LogTooManyConnections(_log, _maxConnections);
                client.Dispose();
                continue;
            }
            var conn = new Connection(client);
            _connections[conn] = 0;
            _ = ServeAsync(conn, ct);
        }
        foreach (Connection c in _connections.Keys)
        {
            c.Socket.Dispose();
        }
    }

    public void Dispose() => _listener.Dispose();

    /// <summary>Closes connections idle longer than the idle timeout; their clients reconnect when they next ask.</summary>
    private void CloseIdle()
    {
        long now = Environment.TickCount64;
        foreach (Connection c in _connections.Keys)
        {
            if (c.Idle && now - Volatile.Read(ref c.LastActive) > _idleTimeout.TotalMilliseconds)
            {
                c.ClosedIdle = true;
                c.Socket.Dispose();
            }
        }
    }

    /// <summary>One local client. Idle, it holds no thread and no buffer: only its socket.</summary>
    private sealed class Connection(Socket socket)
    {
        public readonly Socket Socket = socket;
        public long LastActive = Environment.TickCount64;
        public volatile bool Idle;
        public volatile bool ClosedIdle;
    }

    /// <summary>
    /// Serves one connection without a thread of its own: while requests keep coming it
    /// answers them on a pool thread, polling ~50 us for the next one (an import sends its
    /// next request within microseconds, and waking a parked thread costs tens of
    /// microseconds on virtual and power-saving machines); once the client is quiet it returns
    /// its buffers and waits for readability with a zero-byte receive, which takes no thread.
    /// </summary>
    private async Task ServeAsync(Connection conn, CancellationToken ct)
    {
        Socket client = conn.Socket;
        await Task.Yield(); // off the accept loop
        byte[]? buf = null;
        string? closeReason = null;
        try
        {
            if (!PeerIsOurUser(client, out uint peerUid))
            {
                _counters.Rejected();
                LogPeerRejected(_log, peerUid, _uid);
                return;
            }
            _counters.Connection();
            using CancellationTokenRegistration onStop = ct.Register(() => client.Dispose());
            int filled = 0;
            bool greeted = false;
            ArrayBufferWriter<byte>? writer = null;
            while (closeReason == null)
            {
                if (client.Available == 0)
                {
                    SpinForNextRequest(client);
                }
                int n;
                if (client.Available > 0)
                {
                    buf ??= ArrayPool<byte>.Shared.Rent(64 * 1024);
                    n = client.Receive(buf, filled, buf.Length - filled, SocketFlags.None);
                }
                else if (filled > 0)
                {
                    // The rest of a frame is on its way: wait for it without holding a thread.
                    n = await client.ReceiveAsync(buf.AsMemory(filled), SocketFlags.None, ct);
                }
                else
                {
                    if (buf != null)
                    {
                        ArrayPool<byte>.Shared.Return(buf);
                        buf = null;
                    }
                    writer = null;
                    Volatile.Write(ref conn.LastActive, Environment.TickCount64);
                    conn.Idle = true;
                    await client.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, ct);
                    conn.Idle = false;
                    buf = ArrayPool<byte>.Shared.Rent(64 * 1024);
                    n = client.Receive(buf, 0, buf.Length, SocketFlags.None);
                }
                if (n == 0)
                {
                    if (filled > 0)
                    {
                        closeReason = "truncated frame";
                    }
                    break;
                }
                filled += n;
                writer ??= new ArrayBufferWriter<byte>(4096);
                var buffer = new ReadOnlySequence<byte>(buf!, 0, filled);
                FrameError error = FrameError.None;
                while (closeReason == null && Framing.TryReadFrame(ref buffer, out Frame frame, out error))
                {
                    closeReason = await DispatchAsync(frame, writer, greeted, ct);
                    greeted |= closeReason == null && frame.Op == (byte)Op.Hello;
                }
                if (closeReason == null && error != FrameError.None)
                {
                    closeReason = "malformed frame: " + error;
                }
                // Keep the unread tail (a partial frame) at the front of the buffer.
                int consumed = filled - (int)buffer.Length;
                Buffer.BlockCopy(buf!, consumed, buf!, 0, filled - consumed);
                filled -= consumed;
                if (filled == buf!.Length)
                {
                    // Only a frame larger than the buffer (but within the cap) gets here.
                    byte[] bigger = ArrayPool<byte>.Shared.Rent(Math.Min(buf.Length * 2, Protocol.HeaderSize + (int)Protocol.MaxPayload));
                    Buffer.BlockCopy(buf, 0, bigger, 0, filled);
                    ArrayPool<byte>.Shared.Return(buf);
                    buf = bigger;
                }
                if (writer.WrittenCount > 0)
                {
                    await client.SendAsync(writer.WrittenMemory, SocketFlags.None, ct);
                    writer.ResetWrittenCount();
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            closeReason ??= ct.IsCancellationRequested || conn.ClosedIdle ? null : ex.Message;
        }
        finally
        {
            _connections.TryRemove(conn, out _);
            client.Dispose();
            if (buf != null)
            {
                ArrayPool<byte>.Shared.Return(buf);
            }
        }
        if (closeReason != null)
        {
            LogConnectionClosed(_log, closeReason);
        }
    }

    /// <summary>
    /// Clients send their next request within microseconds during an import, and waking a
    /// thread blocked in recv on an idle core costs tens of microseconds on virtual and
    /// power-saving machines; so poll briefly before blocking. An idle connection goes back
    /// to a blocking read after ~50 us and burns nothing.
    /// </summary>
    private static void SpinForNextRequest(Socket client)
    {
        long until = System.Diagnostics.Stopwatch.GetTimestamp() + System.Diagnostics.Stopwatch.Frequency / 20_000;
        while (client.Available == 0 && System.Diagnostics.Stopwatch.GetTimestamp() < until)
        {
            Thread.SpinWait(20);
        }
    }

    /// <summary>Answers one frame into <paramref name="writer"/>; returns why to close, or null.</summary>
    private async ValueTask<string?> DispatchAsync(Frame frame, ArrayBufferWriter<byte> writer, bool greeted, CancellationToken ct)
    {
        if ((frame.Op & Protocol.Reply) != 0)
        {
            return "reply opcode from a client";
        }
        var op = (Op)frame.Op;
        if (op == Op.Hello)
        {
            return WriteHello(writer, frame) ? null : "bad HELLO";
        }
        if (!greeted)
        {
            return "request before HELLO";
        }
        if (op is Op.Ping or Op.Stats or Op.ManifestSave)
        {
            // Not the job's questions: `copper stats --watch` tells them apart.
            _counters.Control();
        }
        else
        {
            _counters.Request();
        }
        // Cache hits complete synchronously; a miss waits without holding a thread.
        byte[] reply = op switch
        {
            Op.Ping => Answers.Head(0),
            Op.Stats => Answers.Concat(Answers.Head(0), _counters.ToJson(_node, job: true)),
            Op.ManifestSave => await ManifestSaveReplyAsync(frame.Payload),
            _ => Requests.TryParse(op, frame.Payload, out Request request) is int bad and not 0
                ? Answers.Head(bad)
                : await _answers.AnswerAsync(request, ct),
        };
        WriteFrame(writer, frame.Op, frame.RequestId, reply);
        return null;
    }

    private async Task<byte[]> ManifestSaveReplyAsync(ReadOnlySequence<byte> payload)
    {
        if (SaveManifest == null || payload.Length is 0 or > Protocol.MaxPath)
        {
            return Answers.Head(Interop.Libc.EINVAL);
        }
        string file = PathBytes.Decode(payload.ToArray());
        if (!file.StartsWith('/'))
        {
            return Answers.Concat(Answers.Head(Interop.Libc.EINVAL), System.Text.Encoding.UTF8.GetBytes("the manifest's path must be absolute"));
        }
        // In a job with several trees this gathers the other roots' records (bounded).
        (int status, string message) = await SaveManifest(file);
        return Answers.Concat(Answers.Head(status), System.Text.Encoding.UTF8.GetBytes(message));
    }

    private bool PeerIsOurUser(Socket client, out uint uid)
    {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        Span<byte> cred = stackalloc byte[12];
        uid = uint.MaxValue;
        try
        {
            int n = client.GetRawSocketOption(1 /* SOL_SOCKET */, 17 /* SO_PEERCRED */, cred);
            if (n < 12)
            {
                return false;
            }
        }
        catch (SocketException)
        {
            return false;
        }
        uid = BinaryPrimitives.ReadUInt32LittleEndian(cred[4..]);
        return uid == _uid;
    }

    private bool WriteHello(IBufferWriter<byte> writer, in Frame frame)
    {
        if (frame.Payload.Length < Marshal.SizeOf<Hello>())
        {
            return false;
        }
        Span<byte> raw = stackalloc byte[Marshal.SizeOf<Hello>()];
        frame.Payload.Slice(0, raw.Length).CopyTo(raw);
        Hello hello = MemoryMarshal.Read<Hello>(raw);
        if (hello.Magic != Protocol.Magic)
        {
            return false;
        }
        var reply = new HelloReply
        {
            Magic = Protocol.Magic,
            Major = Protocol.Major,
            Minor = Protocol.Minor,
            AgentPid = (uint)Environment.ProcessId,
            Node = (uint)_node,
            MaxCacheable = _cache.MaxBytes,
        };
        byte[] root = Encoding.UTF8.GetBytes(_cache.MirrorRoot);
        byte[] payload = new byte[Marshal.SizeOf<HelloReply>() + root.Length];
        MemoryMarshal.Write(payload, in reply);
        root.CopyTo(payload, Marshal.SizeOf<HelloReply>());
        WriteFrame(writer, frame.Op, frame.RequestId, payload);
        // A client of another major version reads our version and falls back on its own.
        return hello.Major == Protocol.Major;
    }

    private static void WriteFrame(IBufferWriter<byte> writer, byte op, uint requestId, byte[] payload)
    {
        Span<byte> span = writer.GetSpan(Protocol.HeaderSize + payload.Length);
        Framing.WriteHeader(span, (byte)(op | Protocol.Reply), requestId, payload.Length);
        payload.CopyTo(span[Protocol.HeaderSize..]);
        writer.Advance(Protocol.HeaderSize + payload.Length);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "accept failed: {Reason}")]
    private static partial void LogAcceptFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "refused a client of uid {PeerUid} (agent uid {Uid})")]
    private static partial void LogPeerRejected(ILogger logger, uint peerUid, uint uid);

    [LoggerMessage(Level = LogLevel.Warning, Message = "refused a connection: {Max} connections are open")]
    private static partial void LogTooManyConnections(ILogger logger, int max);

    [LoggerMessage(Level = LogLevel.Information, Message = "closed a connection: {Reason}")]
    private static partial void LogConnectionClosed(ILogger logger, string reason);
}
