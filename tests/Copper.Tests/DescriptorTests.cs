// Issue 9, items 2 and 3: the shim lives inside every rank, so it must never touch a
// descriptor that is no longer its own (applications close and reuse numbers freely), and
// its descriptors, like the agent's threads and memory, stay bounded whatever the
// application does. Each test loses or leaks something on a shim that trusts its numbers.
using System.Diagnostics;
using Xunit;

namespace Copper.Tests;

public class DescriptorTests
{
    private static Dictionary<string, string?> Env(AgentProcess agent, string output)
    {
        var env = agent.ClientEnv(audit: false);
        env["P"] = agent.Prefix;
        env["OUT"] = output;
        return env;
    }

    [Fact]
    public void ShellThatClosesTheShimsDescriptorLosesNoWrite()
    {
        using var agent = new AgentProcess("fdshell");
        string o = Path.Combine(agent.Root, "o");
        // The issue's reproduction: fd 3 is the application's file between two Copper calls.
        ProcResult r = Harness.Bash("[ -e $P/etc/hostname ]; exec 3>$OUT; [ -e $P/etc/passwd ]; echo data >&3; exec 3>&-; wc -c <$OUT", Env(agent, o));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("5", r.Stdout.Trim());
        Assert.Equal("data\n", File.ReadAllText(o));
    }

    [Theory]
    [InlineData("os.closerange(3, 1024)")]
    [InlineData("ctypes.CDLL(None, use_errno=True).close_range(3, 0xffffffff, 0)")]
    [InlineData("[os.dup2(os.open('/dev/null', os.O_RDONLY), fd) for fd in sockets()]")]
    public void ApplicationThatReusesTheShimsNumberKeepsEveryByte(string closeAll)
    {
        using var agent = new AgentProcess("fdreuse");
        string o = Path.Combine(agent.Root, "o");
        // Between two Copper calls the application closes every descriptor (or puts its own
        // file on the shim's number) and writes through the numbers it gets back.
        string script = $@"
import ctypes, os
P, OUT = os.environ['P'], os.environ['OUT']
def sockets():
    out = []
    for fd in os.listdir('/proc/self/fd'):
        try:
            if os.readlink('/proc/self/fd/' + fd).startswith('socket:'):
                out.append(int(fd))
        except OSError:
            pass
    return out
assert open(P + '/etc/hostname').read() == open('/etc/hostname').read()
held = sockets()
assert held, 'the shim holds no connection'
{closeAll}
fds = [os.open(OUT + str(i), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) for i in range(8)]
for fd in held:
    if fd not in fds:
        os.dup2(fds[0], fd)
        fds.append(fd)
# Questions only the agent can answer: a directory nobody listed, a file not yet opened.
same = not os.path.exists(P + '/copper-no-such-dir/x') and open(P + '/etc/passwd').read() == open('/etc/passwd').read()
for fd in fds:
    os.write(fd, b'data')
    os.close(fd)
print(same)
";
        ProcResult r = Harness.Run(Harness.Python, new[] { "-c", script }, Env(agent, o));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("True", r.Stdout.Trim());
        // Every byte written went to the application's files: 4 per descriptor written.
        long total = Enumerable.Range(0, 8).Sum(i => new FileInfo(o + i).Length);
        int extra = Directory.GetFiles(agent.Root, "o*").Length;
        Assert.Equal(8, extra);
        Assert.True(total >= 32, $"lost bytes: {total} of at least 32 written ({r})");
        foreach (string f in Directory.GetFiles(agent.Root, "o*"))
        {
            string text = File.ReadAllText(f);
            Assert.True(text.Length > 0 && text.Replace("data", "") == "", $"{f} holds bytes the application did not write, or lost those it did: '{text}'");
        }
    }

    [Theory]
    [InlineData("os.fork()")]
    [InlineData("libc.syscall(57)")] // fork(2) itself: no fork handler runs in the child
    public void DaemonThatClosesEverythingAfterDoubleForkLosesNoByte(string secondFork)
    {
        using var agent = new AgentProcess("fddaemon");
        string o = Path.Combine(agent.Root, "o");
        // The middle process talks to the agent, then forks the daemon, which closes every
        // descriptor and writes through the numbers it gets back (the shim's among them).
        string script = @"
import ctypes, os, time
P, OUT = os.environ['P'], os.environ['OUT']
libc = ctypes.CDLL(None, use_errno=True)
assert os.path.exists(P + '/etc/hostname')
pid = os.fork()
if pid == 0:
    os.setsid()
    assert open(P + '/etc/hostname').read() == open('/etc/hostname').read()
    if SECOND_FORK:
        os._exit(0)
    os.closerange(0, 1024)
    fds = [os.open(OUT + '.%d' % i, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) for i in range(8)]
    same = not os.path.exists(P + '/copper-no-such-dir/x') and open(P + '/etc/passwd').read() == open('/etc/passwd').read()
    for fd in fds:
        os.write(fd, b'daemon ' + str(same).encode())
        os.close(fd)
    os.close(os.open(OUT, os.O_WRONLY | os.O_CREAT, 0o644))
    os._exit(0)
os.waitpid(pid, 0)
for _ in range(200):
    if os.path.exists(OUT):
        break
    time.sleep(0.05)
print('|'.join(sorted(set(open(OUT + '.%d' % i).read() for i in range(8)))))
".Replace("SECOND_FORK", secondFork);
        ProcResult r = Harness.Run(Harness.Python, new[] { "-c", script }, Env(agent, o));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("daemon True", r.Stdout.Trim());
    }

    [Fact]
    public void ThreadPoolsAndShortLivedThreadsUseABoundedNumberOfDescriptors()
    {
        using var agent = new AgentProcess("fdthreads");
        // 200 rounds of an 8-thread pool, then 2,000 short-lived threads, under ulimit -n 1024.
        string script = @"
import concurrent.futures as cf, os, threading
P = os.environ['P']
files = [P + '/etc/' + n for n in sorted(os.listdir('/etc')) if os.path.isfile('/etc/' + n) and os.access('/etc/' + n, os.R_OK)][:16]
def work(f):
    with open(f, 'rb') as fh:
        return len(fh.read())
want = [len(open(f[len(P):], 'rb').read()) for f in files]
for _ in range(200):
    with cf.ThreadPoolExecutor(8) as ex:
        assert list(ex.map(work, files)) == want
for _ in range(2000):
    t = threading.Thread(target=lambda: os.stat(P + '/etc/hostname'))
    t.start()
    t.join()
socks = 0
for fd in os.listdir('/proc/self/fd'):
    try:
        socks += os.readlink('/proc/self/fd/' + fd).startswith('socket:')
    except OSError:
        pass
print('sockets', socks)
";
        ProcResult r = Harness.Bash($"ulimit -n 1024 && exec {Harness.Python} -c \"$SCRIPT\"", new Dictionary<string, string?>(Env(agent, "")) { ["SCRIPT"] = script });
        Assert.True(r.ExitCode == 0, r.ToString());
        int sockets = int.Parse(r.Stdout.Trim().Split(' ')[1]);
        Assert.InRange(sockets, 1, 8);
        Assert.InRange(agent.ProcStatus("Threads"), 1, 80);
    }

    [Fact]
    public void ThousandsOfIdleConnectionsCostTheAgentNeitherThreadsNorMuchMemory()
    {
        using var agent = new AgentProcess("idleconns");
        long rssBefore = agent.ProcStatus("VmRSS");
        var psi = new ProcessStartInfo("/bin/bash") { RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add($"ulimit -n 8192 && exec {Harness.Python} {Harness.Program("idle_clients.py")} {agent.SocketPath} 5000 60");
        using var clients = Process.Start(psi)!;
        try
        {
            string? line = clients.StandardOutput.ReadLine();
            Assert.Equal("open 5000", line);
            long threads = agent.ProcStatus("Threads");
            long grownKb = agent.ProcStatus("VmRSS") - rssBefore;
            Assert.True(threads < 80, $"{threads} agent threads for 5000 idle connections");
            Assert.True(grownKb < 150 * 1024, $"the agent grew by {grownKb} kB for 5000 idle connections");
            // And it still serves a newcomer.
            using var s = agent.Connect();
            var (_, reply) = AgentProcess.Request(s, Copper.Interop.Op.Ping, ReadOnlySpan<byte>.Empty);
            Assert.Equal(0, BitConverter.ToInt32(reply, 0));
        }
        finally
        {
            clients.Kill();
            clients.WaitForExit();
        }
    }

    [Fact]
    public void ConnectionTheAgentClosedWhileIdleIsReplacedTransparently()
    {
        using var agent = new AgentProcess("idleclose", "--idle-timeout", "1");
        // The second open comes after the agent closed the idle connection: it must still be
        // served by Copper (a descriptor of the mirror copy), not by the real path.
        string script = @"
import os, time
P = os.environ['P']
def where(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.readlink('/proc/self/fd/%d' % fd)
    finally:
        os.close(fd)
print(where(P + '/etc/hostname'))
time.sleep(3)
print(where(P + '/etc/passwd'))
";
        ProcResult r = Harness.Run(Harness.Python, new[] { "-c", script }, Env(agent, ""));
        Assert.True(r.ExitCode == 0, r.ToString());
        string[] lines = r.Stdout.Trim().Split('\n');
        Assert.Equal(agent.MirrorRoot + "/etc/hostname", lines[0]);
        Assert.Equal(agent.MirrorRoot + "/etc/passwd", lines[1]);
    }
}
