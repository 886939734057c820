// The agent's MPI progress thread. It alone calls MPI (init, isend, iprobe, recv, test,
// finalize); the rest of the agent hands it messages through a queue and receives
// messages through a callback run on this thread (which must only hand them on).
// An idle agent must not burn a core, and a busy one must answer in microseconds: after
// traffic the thread spins for a few microseconds, then sleeps a quarter of the time it has
// been idle (at least 50 µs, at most 1 ms) between polls: a message that arrives after a
// quiet spell of t waits at most about t/4 more, and the 50 ms after a burst cost about 60
// polls, not the 1,000 of polling every 50 µs. That matters when many agents share cores
// (simulated nodes, a replay's bursts on every node at once), where every wake-up is a
// context switch taken from the others. Between polls it sleeps in ppoll on an eventfd, so
// a message queued for sending wakes it at once; only incoming messages wait for the next
// poll (MPI offers no descriptor to sleep on).
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Copper.Agent;

internal sealed class MpiTransport
{
    public const int Tag = 7;
    private static readonly long SpinTicks = Stopwatch.Frequency / 50_000;  // 20 µs
    private static readonly long TicksPerUs = Math.Max(1, Stopwatch.Frequency / 1_000_000);
    private const long ShortestNapUs = 50, LongestNapUs = 1000;

    private readonly ConcurrentQueue<Outgoing> _out = new();
    private readonly int _wakeFd = Interop.Libc.EventFd(0, Interop.Libc.EFD_CLOEXEC | Interop.Libc.EFD_NONBLOCK);
    private int _napping;
    private readonly ManualResetEventSlim _initialized = new(false);
    private Action<int, byte[]>? _onMessage; // set once by Attach; until then MPI holds what arrives
    private readonly Thread _thread;
    private volatile bool _stopping;
    private string? _initError;

    private MpiTransport()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = "copper-mpi" };
    }

    public int Rank { get; private set; }

    public int Size { get; private set; }

    public string Host { get; private set; } = "?";

    /// <summary>
    /// Initializes MPI on a new progress thread; throws when MPI cannot start. Sends work at
    /// once; nothing is received until <see cref="Attach"/> names who takes the messages
    /// (until then they wait in MPI, which keeps their order).
    /// </summary>
    public static MpiTransport Start()
    {
        Interop.Mpi.RegisterResolver();
        var t = new MpiTransport();
        t._thread.Start();
        t._initialized.Wait();
        if (t._initError != null)
        {
            throw new InvalidOperationException(t._initError);
        }
        return t;
    }

    /// <summary>
    /// From now on every message received goes to <paramref name="onMessage"/>, on the progress
    /// thread (which it must only hand on). Once.
    /// </summary>
    public void Attach(Action<int, byte[]> onMessage)
    {
        if (Interlocked.CompareExchange(ref _onMessage, onMessage, null) != null)
        {
            throw new InvalidOperationException("the MPI transport already has a receiver");
        }
        Wake();
    }

    /// <summary>Queues <paramref name="message"/> for <paramref name="dest"/>; completes when MPI has sent it.</summary>
    public Task SendAsync(int dest, byte[] message)
    {
        var o = new Outgoing(dest, message);
        if (_stopping)
        {
            o.Done.TrySetException(new InvalidOperationException("MPI transport is stopping"));
            return o.Done.Task;
        }
        _out.Enqueue(o);
        if (Volatile.Read(ref _napping) != 0)
        {
            Wake();
        }
        return o.Done.Task;
    }

    /// <summary>Sends what is queued (for at most <paramref name="drain"/>), then finalizes MPI.</summary>
    public bool Stop(TimeSpan drain, TimeSpan finalize)
    {
        _stopping = true;
        _drainDeadline = Stopwatch.GetTimestamp() + (long)(drain.TotalSeconds * Stopwatch.Frequency);
        Wake();
        return _thread.Join(drain + finalize);
    }

    private unsafe void Wake()
    {
        ulong one = 1;
        Interop.Libc.Write(_wakeFd, (byte*)&one, 8);
    }

    /// <summary>Sleeps up to <paramref name="microseconds"/>, or until a message is queued for sending.</summary>
    private unsafe void Nap(long microseconds)
    {
        Volatile.Write(ref _napping, 1);
        if (_out.IsEmpty && !_stopping)
        {
            var pfd = new Interop.Libc.PollFd { Fd = _wakeFd, Events = Interop.Libc.POLLIN };
            var ts = new Interop.Libc.Timespec { Sec = microseconds / 1_000_000, Nsec = microseconds % 1_000_000 * 1000 };
            if (Interop.Libc.PPoll(&pfd, 1, &ts, null) > 0)
            {
                ulong drained;
                Interop.Libc.Read(_wakeFd, (byte*)&drained, 8);
            }
        }
        Volatile.Write(ref _napping, 0);
    }

    private long _drainDeadline = long.MaxValue;

    private unsafe void Run()
    {
        try
        {
            if (Interop.Mpi.AbiVersionOf() != Interop.Mpi.AbiVersion)
            {
                throw new InvalidOperationException($"{Interop.Mpi.LibraryPath} has another ABI version");
            }
            int rc = Interop.Mpi.Init(Interop.Mpi.ThreadFunneled, out int provided);
            if (rc != 0 || provided < Interop.Mpi.ThreadFunneled)
            {
                throw new InvalidOperationException(rc != 0 ? Interop.Mpi.Describe(rc) : "MPI does not provide MPI_THREAD_FUNNELED");
            }
            Interop.Mpi.Rank(out int rank);
            Interop.Mpi.Size(out int size);
            Rank = rank;
            Size = size;
            Host = Interop.Mpi.HostName();
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException or InvalidOperationException or BadImageFormatException)
        {
            _initError = $"cannot start MPI through {Interop.Mpi.LibraryPath}: {ex.Message}";
            _initialized.Set();
            return;
        }
        _initialized.Set();

        // Naps of 50 µs must be 50 µs, not 50 µs plus the default 50 µs timer slack.
        Interop.Libc.Prctl(Interop.Libc.PR_SET_TIMERSLACK, 1000, 0, 0, 0);
        int any = Interop.Mpi.AnySource();
        var pending = new List<Outgoing>();
        long lastBusy = Stopwatch.GetTimestamp();
        while (true)
        {
            bool busy = false;
            while (_out.TryDequeue(out Outgoing? o))
            {
                o.Pin = GCHandle.Alloc(o.Message, GCHandleType.Pinned);
                int rc = Interop.Mpi.Isend((byte*)o.Pin.AddrOfPinnedObject(), o.Message.Length, o.Dest, Tag, out o.Request);
                if (rc != 0)
                {
                    o.Pin.Free();
                    o.Done.TrySetException(new IOException(Interop.Mpi.Describe(rc)));
                    continue;
                }
                pending.Add(o);
                busy = true;
            }
            for (int i = pending.Count - 1; i >= 0; i--)
            {
                Outgoing o = pending[i];
                int rc = Interop.Mpi.Test(ref o.Request, out int flag, out _, out _, out _);
                if (flag == 0)
                {
                    continue;
                }
                o.Pin.Free();
                if (rc == 0)
                {
                    o.Done.TrySetResult();
                }
                else
                {
                    o.Done.TrySetException(new IOException(Interop.Mpi.Describe(rc)));
                }
                pending.RemoveAt(i);
                busy = true;
            }
            Action<int, byte[]>? receiver = Volatile.Read(ref _onMessage);
            for (int n = 0; receiver != null && n < 64; n++)
            {
                if (Interop.Mpi.Iprobe(any, Tag, out int flag, out int source, out _, out int count) != 0 || flag == 0)
                {
                    break;
                }
                byte[] buf = GC.AllocateUninitializedArray<byte>(count);
                int rc;
                int got;
                fixed (byte* p = buf)
                {
                    rc = Interop.Mpi.Recv(p, count, source, Tag, out got);
                }
                busy = true;
                if (rc == 0 && got == count)
                {
                    receiver(source, buf);
                }
            }

            long now = Stopwatch.GetTimestamp();
            if (_stopping && ((_out.IsEmpty && pending.Count == 0) || now > _drainDeadline))
            {
                break;
            }
            if (busy)
            {
                lastBusy = now;
                continue;
            }
            long idle = now - lastBusy;
            if (idle < SpinTicks)
            {
                Thread.SpinWait(20);
            }
            else
            {
                Nap(Math.Clamp(idle / TicksPerUs / 4, ShortestNapUs, LongestNapUs));
            }
        }
        foreach (Outgoing o in pending)
        {
            // Never free a buffer MPI may still read: leave the pin, the process is exiting.
            o.Done.TrySetException(new InvalidOperationException("MPI transport stopped"));
        }
        Interop.Mpi.Finalize();
    }

    private sealed class Outgoing(int dest, byte[] message)
    {
        public readonly int Dest = dest;
        public readonly byte[] Message = message;
        public readonly TaskCompletionSource Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public GCHandle Pin;
        public nint Request;
    }
}
