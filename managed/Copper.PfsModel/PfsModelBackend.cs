// The benchmarks' model of a parallel file system: a plain passthrough of a real directory
// that makes every metadata operation wait for one of a set number of metadata servers and
// every read move at a set bandwidth. Mounted with the kernel caching nothing, so each client operation reaches it
// and is counted.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using Copper.Agent;
using Copper.Interop;
using Libc = Copper.Agent.Interop.Libc;

namespace Copper.PfsModel;

/// <summary>
/// A model of a shared parallel file system's metadata server under load: a passthrough of
/// <c>root</c> where every metadata operation (lookup and getattr, counted as "stat"; readlink, access, open,
/// opendir/readdir) waits for one of <c>servers</c> metadata servers and takes <c>serviceMicros</c>
/// there (one server: one queue, each operation after the other; N: up to N at once, as a real
/// PFS serves concurrent metadata), and data moves at <c>bytesPerSecond</c> (one data queue).
/// Every operation is counted by kind, and the most operations ever in service at once is kept.
/// One server holds each operation precisely (spinning the last part, as before servers were
/// settable); several sleep through their service time (nanosleep), so that servers waiting
/// on a 2-core machine do not take the cores the clients and agents run on.
/// With <c>perPath</c> operations are also counted by path (so a test can tell how often each file was asked for).
/// </summary>
internal sealed partial class PfsModelBackend : IFuseBackend
{
    private static readonly string[] Kinds = ["stat", "readlink", "access", "open", "opendir", "read"];
    private readonly string _root;
    private readonly long _serviceTicks;
    private readonly double _bytesPerSecond;
    private readonly SemaphoreSlim _metadata;
    private readonly int _servers;
    private int _inService;
    private int _peakInService;
    private readonly Lock _data = new();
    private readonly long[] _counts = new long[Kinds.Length];
    private readonly ConcurrentDictionary<string, long[]>? _byPath;
    private long _bytes;

    public PfsModelBackend(string root, double serviceMicros, double bytesPerSecond, int servers = 1, bool perPath = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(servers, 1);
        _servers = servers;
        _metadata = new SemaphoreSlim(servers, servers);
        _byPath = perPath ? new ConcurrentDictionary<string, long[]>(StringComparer.Ordinal) : null;
        _root = root.TrimEnd('/');
        _serviceTicks = (long)(serviceMicros * Stopwatch.Frequency / 1e6);
        _bytesPerSecond = bytesPerSecond;
    }

    public string StatfsPath => _root.Length == 0 ? "/" : _root;

    private string Real(string path) => path == "/" ? StatfsPath : _root + path;

    /// <summary>Waits for a free server, then for the service time (precisely: spinning the last part).</summary>
    private void Serve(int kind, string path)
    {
        Interlocked.Increment(ref _counts[kind]);
        if (_byPath != null)
        {
            Interlocked.Increment(ref _byPath.GetOrAdd(path, _ => new long[Kinds.Length - 1])[kind]);
        }
        _metadata.Wait();
        try
        {
            int now = Interlocked.Increment(ref _inService);
            int peak;
            while (now > (peak = Volatile.Read(ref _peakInService)) && Interlocked.CompareExchange(ref _peakInService, now, peak) != peak)
            {
            }
            if (_servers == 1)
            {
                Hold(_serviceTicks);
            }
            else
            {
                Sleep(_serviceTicks);
            }
        }
        finally
        {
            Interlocked.Decrement(ref _inService);
            _metadata.Release();
        }
    }

    private static void Sleep(long ticks)
    {
        long ns = ticks * 1_000_000_000 / Stopwatch.Frequency;
        var req = new Libc.Timespec { Sec = ns / 1_000_000_000, Nsec = ns % 1_000_000_000 };
        while (NanoSleep(in req, out Libc.Timespec rem) != 0 && Marshal.GetLastPInvokeError() == 4 /* EINTR */)
        {
            req = rem;
        }
    }

    [LibraryImport("libc", EntryPoint = "nanosleep", SetLastError = true)]
    private static partial int NanoSleep(in Libc.Timespec req, out Libc.Timespec rem);

    private static void Hold(long ticks)
    {
        long until = Stopwatch.GetTimestamp() + ticks;
        long left;
        while ((left = until - Stopwatch.GetTimestamp()) > 0)
        {
            if (left > Stopwatch.Frequency / 1000)
            {
                Thread.Sleep(1);
            }
            else
            {
                Thread.SpinWait(50);
            }
        }
    }

    public StatAnswer Lstat(string path)
    {
        Serve(0, path);
        return Libc.Lstat(Real(path), out Libc.StatBuf b) == 0 ? new StatAnswer(0, Libc.ToCopper(b)) : new StatAnswer(Libc.Errno, default);
    }

    public unsafe LinkAnswer ReadLink(string path)
    {
        Serve(1, path);
        byte[] buf = new byte[Protocol.MaxPath];
        nint n;
        fixed (byte* p = buf)
        {
            n = Libc.ReadLink(Real(path), p, buf.Length);
        }
        return n < 0 ? new LinkAnswer(Libc.Errno, []) : new LinkAnswer(0, buf.AsSpan(0, (int)n).ToArray());
    }

    public int Access(string path, int mode)
    {
        Serve(2, path);
        return Libc.Access(Real(path), mode) == 0 ? 0 : Libc.Errno;
    }

    public DirAnswer List(string path)
    {
        Serve(4, path);
        try
        {
            var entries = new List<DirEntry>();
            foreach (FileSystemInfo e in new DirectoryInfo(Real(path)).EnumerateFileSystemInfos())
            {
                byte type = e.LinkTarget != null ? (byte)10 : e is DirectoryInfo ? (byte)4 : (byte)8;
                entries.Add(new DirEntry(System.Text.Encoding.UTF8.GetBytes(e.Name), 0, type));
            }
            return new DirAnswer(0, entries);
        }
        catch (DirectoryNotFoundException)
        {
            return new DirAnswer(Libc.ENOENT, []);
        }
        catch (UnauthorizedAccessException)
        {
            return new DirAnswer(13, []);
        }
        catch (IOException)
        {
            return new DirAnswer(20 /* ENOTDIR */, []);
        }
    }

    public OpenAnswer Open(string path)
    {
        Serve(3, path);
        string real = Real(path);
        if (Libc.Stat(real, out Libc.StatBuf b) != 0)
        {
            return new OpenAnswer(Libc.Errno, 0, default, []);
        }
        bool dir = (b.Mode & Libc.S_IFMT) == Libc.S_IFDIR;
        return new OpenAnswer(0, dir ? OpenKind.Dir : OpenKind.File, Libc.ToCopper(b), System.Text.Encoding.UTF8.GetBytes(real));
    }

    public int PeekLstat(string path, byte direntType, out CopperStat st)
    {
        st = default;
        return Protocol.StatusFallback;
    }

    /// <summary>Counts a read of <paramref name="bytes"/> and holds it for the time they take at the set bandwidth.</summary>
    public void Read(long bytes)
    {
        Interlocked.Increment(ref _counts[5]);
        Interlocked.Add(ref _bytes, bytes);
        if (_bytesPerSecond > 0)
        {
            lock (_data)
            {
                Hold((long)(bytes / _bytesPerSecond * Stopwatch.Frequency));
            }
        }
    }

    public byte[] ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            long total = 0;
            w.WriteStartObject("ops_by_kind");
            for (int i = 0; i < Kinds.Length; i++)
            {
                long n = Interlocked.Read(ref _counts[i]);
                total += i < 5 ? n : 0;
                w.WriteNumber(Kinds[i], n);
            }
            w.WriteEndObject();
            w.WriteNumber("metadata_ops", total);
            w.WriteNumber("bytes_read", Interlocked.Read(ref _bytes));
            w.WriteNumber("metadata_servers", _servers);
            w.WriteNumber("peak_in_service", Volatile.Read(ref _peakInService));
            if (_byPath != null)
            {
                // Paths as the mount's clients named them (below the mount point), sorted;
                // per path only the kinds it had.
                w.WriteStartObject("ops_by_path");
                foreach (KeyValuePair<string, long[]> kv in _byPath.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    w.WriteStartObject(kv.Key);
                    for (int i = 0; i < kv.Value.Length; i++)
                    {
                        long n = Interlocked.Read(ref kv.Value[i]);
                        if (n > 0)
                        {
                            w.WriteNumber(Kinds[i], n);
                        }
                    }
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        return ms.ToArray();
    }
}
