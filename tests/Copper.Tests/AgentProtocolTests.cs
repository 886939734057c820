// The agent's local server against raw clients: answers, malformed frames that close only
// their own connection, the peer uid check, and a clean stop.
using System.Net.Sockets;
using System.Text;
using Copper.Interop;
using Xunit;

namespace Copper.Tests;

public class AgentProtocolTests
{
    private static int Status(byte[] reply) => BitConverter.ToInt32(reply, 0);

    [Fact]
    public void AnswersStatAndKeepsErrnoFromTheFileSystem()
    {
        using var agent = new AgentProcess("proto");
        using Socket s = agent.Connect();
        var (op, reply) = AgentProcess.Request(s, Op.Stat, Encoding.UTF8.GetBytes("/etc/hostname"));
        Assert.Equal((byte)Op.Stat | Protocol.Reply, op);
        Assert.Equal(0, Status(reply));
        long size = BitConverter.ToInt64(reply, 8 + 48);
        Assert.Equal(new FileInfo("/etc/hostname").Length, size);
        (_, reply) = AgentProcess.Request(s, Op.Lstat, Encoding.UTF8.GetBytes("/no/such/file"));
        Assert.Equal(2 /* ENOENT */, Status(reply));
        (_, reply) = AgentProcess.Request(s, Op.Stat, Encoding.UTF8.GetBytes("/etc/hostname/x"));
        Assert.Equal(20 /* ENOTDIR */, Status(reply));
        (_, reply) = AgentProcess.Request(s, Op.Stat, Encoding.UTF8.GetBytes("/" + new string('a', 300)));
        Assert.Equal(36 /* ENAMETOOLONG */, Status(reply));
    }

    public static TheoryData<string> Malformed => new() { "oversized", "unknown-op", "truncated", "reserved", "before-hello", "reply-op" };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void MalformedFrameClosesOnlyThatConnection(string kind)
    {
        using var agent = new AgentProcess("malformed");
        using Socket good = agent.Connect();
        using Socket bad = agent.Connect(hello: kind != "before-hello");
        byte[] path = Encoding.UTF8.GetBytes("/etc");
        switch (kind)
        {
            case "oversized":
                AgentProcess.Send(bad, (byte)Op.Stat, path, Protocol.MaxPayload + 1);
                break;
            case "unknown-op":
                AgentProcess.Send(bad, 0x42, path, (uint)path.Length);
                break;
            case "truncated":
                AgentProcess.Send(bad, (byte)Op.Stat, path, 100);
                bad.Shutdown(SocketShutdown.Send);
                break;
            case "reserved":
                byte[] frame = new byte[Protocol.HeaderSize + path.Length];
                Framing.WriteHeader(frame, (byte)Op.Stat, 1, path.Length);
                frame[6] = 1;
                path.CopyTo(frame, Protocol.HeaderSize);
                bad.Send(frame);
                break;
            case "before-hello":
                AgentProcess.Send(bad, (byte)Op.Stat, path, (uint)path.Length);
                break;
            case "reply-op":
                AgentProcess.Send(bad, (byte)Op.Stat | Protocol.Reply, path, (uint)path.Length);
                break;
        }
        Assert.True(AgentProcess.ClosedByPeer(bad), "the agent should close a connection that sent a malformed frame");
        var (_, reply) = AgentProcess.Request(good, Op.Stat, path);
        Assert.Equal(0, Status(reply));
        using Socket fresh = agent.Connect();
        (_, reply) = AgentProcess.Request(fresh, Op.Ping, ReadOnlySpan<byte>.Empty);
        Assert.Equal(0, Status(reply));
        Assert.False(agent.HasExited);
    }

    [Fact]
    public void RefusesAClientOfAnotherUid()
    {
        // The agent runs as nobody; root (this test) can reach its socket but is another uid.
        string root = Harness.TempDir("uid");
        string prefix = Path.Combine(root, "prefix");
        string run = Path.Combine(root, "run");
        Harness.Run("chown", new[] { "65534:65534", root });
        string agent = Path.Combine(Harness.Bin, "copper-agent");
        string script = $"exec setpriv --reuid=65534 --regid=65534 --clear-groups {agent} --prefix {prefix} --runtime-dir {run} --cache-dir {root}/cache --log-dir {root}/logs";
        var psi = new System.Diagnostics.ProcessStartInfo("/bin/bash") { ArgumentList = { "-c", script } };
        using var p = System.Diagnostics.Process.Start(psi)!;
        try
        {
            string dir = Path.Combine(run, Protocol.Fnv1a64(prefix).ToString("x16"));
            var sw = System.Diagnostics.Stopwatch.StartNew();
            while (!File.Exists(Path.Combine(dir, "agent.ready")) && sw.ElapsedMilliseconds < 20_000)
            {
                Thread.Sleep(10);
            }
            using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            s.Connect(new UnixDomainSocketEndPoint(Path.Combine(dir, Protocol.SocketName)));
            s.ReceiveTimeout = 10_000;
            Assert.True(AgentProcess.ClosedByPeer(s), "a client of another uid must be refused");
        }
        finally
        {
            p.Kill();
            p.WaitForExit();
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void StopRemovesSocketCacheAndWritesCounters()
    {
        var agent = new AgentProcess("stop");
        using (Socket s = agent.Connect())
        {
            AgentProcess.Request(s, Op.Open, Encoding.UTF8.GetBytes("/etc/hostname"));
        }
        Assert.True(Directory.Exists(Path.Combine(agent.Root, "cache", "mirror", "etc")));
        Assert.Equal(0, agent.Stop());
        Assert.False(File.Exists(agent.SocketPath));
        Assert.False(Directory.Exists(Path.Combine(agent.Root, "cache")));
        string stats = File.ReadAllText(Path.Combine(agent.Root, "logs", "copper-stats.0.json"));
        Assert.Contains("\"pfs_ops\":", stats);
        agent.Dispose();
    }
}
