// A real copper-agent for a test: own prefix, runtime dir, cache dir and log dir, started
// directly (launch_copper.sh has tests of its own) and stopped with SIGTERM on dispose.
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Copper.Interop;

namespace Copper.Tests;

public sealed class AgentProcess : IDisposable
{
    private readonly Process _process;

    public AgentProcess(string tag, params string[] extraArgs)
        : this(tag, null, extraArgs)
    {
    }

    /// <summary>Starts the agent; with <paramref name="uid"/> it runs as that user (setpriv).</summary>
    public AgentProcess(string tag, int? uid, params string[] extraArgs)
        : this(tag, uid, false, extraArgs)
    {
    }

    /// <summary>Starts the agent; with <paramref name="mount"/> it also mounts the prefix with FUSE.</summary>
    public AgentProcess(string tag, int? uid, bool mount, params string[] extraArgs)
    {
        Root = Harness.TempDir(tag);
        Uid = uid;
        Prefix = Path.Combine(Root, "prefix");
        RuntimeDir = Path.Combine(Root, "run");
        var psi = new ProcessStartInfo(uid == null ? Path.Combine(Harness.Bin, "copper-agent") : "setpriv") { UseShellExecute = false };
        if (uid != null)
        {
            // The agent checks that its directories (and those above them) are its user's own.
            Harness.Run("chown", new[] { $"{uid}:{uid}", Root });
            foreach (string a in new[] { $"--reuid={uid}", $"--regid={uid}", "--clear-groups", Path.Combine(Harness.Bin, "copper-agent") })
            {
                psi.ArgumentList.Add(a);
            }
        }
        Mounted = mount;
        string[] mountArgs = mount ? ["--mount", Prefix] : [];
        foreach (string a in new[] { "--prefix", Prefix, "--runtime-dir", RuntimeDir, "--cache-dir", Path.Combine(Root, "cache"), "--log-dir", Path.Combine(Root, "logs"), "--log-level", "3" }.Concat(mountArgs).Concat(extraArgs))
        {
            psi.ArgumentList.Add(a);
        }
        _process = Process.Start(psi)!;
        SocketPath = Path.Combine(RuntimeDir, Protocol.Fnv1a64(Prefix).ToString("x16"), Protocol.SocketName);
        var sw = Stopwatch.StartNew();
        while (!File.Exists(Path.Combine(Path.GetDirectoryName(SocketPath)!, "agent.ready")))
        {
            if (_process.HasExited || sw.ElapsedMilliseconds > 20_000)
            {
                throw new InvalidOperationException($"agent did not become ready (exited: {_process.HasExited})");
            }
            Thread.Sleep(10);
        }
    }

    public string Root { get; }
    public int? Uid { get; }
    public bool Mounted { get; }
    public string MirrorRoot => Path.Combine(Root, "cache", "mirror");
    public string Prefix { get; }
    public string RuntimeDir { get; }
    public string SocketPath { get; }
    public bool HasExited => _process.HasExited;
    public int Pid => _process.Id;

    /// <summary>A line of the agent's /proc status ("Threads", "VmRSS"), as a number.</summary>
    public long ProcStatus(string key)
    {
        string line = File.ReadAllLines($"/proc/{Pid}/status").First(l => l.StartsWith(key + ":", StringComparison.Ordinal));
        return long.Parse(line.Split(':', 2)[1].Trim().Split(' ')[0]);
    }

    public Dictionary<string, string?> ClientEnv(bool audit = true) => new()
    {
        ["COPPER_PREFIX"] = Prefix,
        ["COPPER_RUNTIME_DIR"] = RuntimeDir,
        ["LD_PRELOAD"] = Harness.Preload,
        ["LD_AUDIT"] = audit ? Harness.Audit : null,
    };

    public Socket Connect(bool hello = true) => Connect(SocketPath, hello);

    /// <summary>A connection to the agent listening on <paramref name="socketPath"/>, greeted unless told otherwise.</summary>
    public static Socket Connect(string socketPath, bool hello = true)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(socketPath));
        s.ReceiveTimeout = 10_000;
        if (hello)
        {
            var h = new Hello { Magic = Protocol.Magic, Major = Protocol.Major, Minor = Protocol.Minor, Pid = (uint)Environment.ProcessId };
            byte[] payload = new byte[Marshal.SizeOf<Hello>()];
            MemoryMarshal.Write(payload, in h);
            (byte op, _) = Request(s, Op.Hello, payload);
            if (op != ((byte)Op.Hello | Protocol.Reply))
            {
                throw new InvalidOperationException("bad HELLO reply");
            }
        }
        return s;
    }

    public static void Send(Socket s, byte op, ReadOnlySpan<byte> payload, uint length)
    {
        byte[] frame = new byte[Protocol.HeaderSize + payload.Length];
        Framing.WriteHeader(frame, op, 1, (int)length);
        payload.CopyTo(frame.AsSpan(Protocol.HeaderSize));
        s.Send(frame);
    }

    /// <summary>Sends one request and reads one reply (op, payload).</summary>
    public static (byte Op, byte[] Payload) Request(Socket s, Op op, ReadOnlySpan<byte> payload)
    {
        Send(s, (byte)op, payload, (uint)payload.Length);
        byte[] head = ReadExactly(s, Protocol.HeaderSize);
        int length = BitConverter.ToInt32(head, 0);
        return (head[4], ReadExactly(s, length));
    }

    public static byte[] ReadExactly(Socket s, int n)
    {
        byte[] b = new byte[n];
        int got = 0;
        while (got < n)
        {
            int r = s.Receive(b, got, n - got, SocketFlags.None);
            if (r == 0)
            {
                throw new EndOfStreamException($"connection closed after {got} of {n} bytes");
            }
            got += r;
        }
        return b;
    }

    /// <summary>True when the peer closed the connection (EOF) within the timeout.</summary>
    public static bool ClosedByPeer(Socket s)
    {
        byte[] b = new byte[64];
        try
        {
            return s.Receive(b) == 0;
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            return true;
        }
    }

    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }
    }

    public int Stop()
    {
        if (!_process.HasExited)
        {
            Harness.Run("kill", new[] { "-TERM", _process.Id.ToString() });
            if (!_process.WaitForExit(10_000))
            {
                _process.Kill();
            }
        }
        _process.WaitForExit();
        if (Mounted && File.ReadAllText("/proc/mounts").Contains(" " + Prefix + " ", StringComparison.Ordinal))
        {
            Harness.Run("fusermount3", new[] { "-uz", Prefix });
        }
        return _process.ExitCode;
    }

    public void Dispose()
    {
        Stop();
        _process.Dispose();
        // rm, not Directory.Delete: a test may leave names that are not UTF-8, which .NET cannot name.
        Harness.Run("rm", new[] { "-rf", Root });
    }
}
