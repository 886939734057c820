// Issue 13, item 5: a user's account, end to end. Everything here runs as real unprivileged
// local users (setpriv), with the default directories a user gets: launch, import numpy
// through the shim, stats, verify, stop; the FUSE mount through fusermount3 (also after the
// agent was killed); and two users on one machine who must not see each other's agents,
// sockets or caches.
using Copper.Interop;
using Xunit;

namespace Copper.Tests;

public sealed class UserAccountTests : IDisposable
{
    private const string Alice = "copper-alice";
    private const string Bob = "copper-bob";
    private const string DistPackages = "/usr/lib/python3/dist-packages";
    private readonly int _alice = LocalUsers.Ensure(Alice);
    private readonly int _bob = LocalUsers.Ensure(Bob);

    public UserAccountTests()
    {
        Clean();
    }

    public void Dispose()
    {
        AsUser(Alice, $"{Stop} -v {PrefixOf(Alice)}");
        AsUser(Bob, $"{Stop} -v {PrefixOf(Bob)}");
        Clean();
    }

    private static string Launch => $"{LocalUsers.Install}/bin/launch_copper.sh";

    private static string Stop => $"{LocalUsers.Install}/bin/stop_copper.sh";

    private static string Copper => $"{LocalUsers.Install}/bin/copper";

    /// <summary>launch_copper.sh's default prefix for the user.</summary>
    private static string PrefixOf(string user) => $"/tmp/{user}/copper";

    private static string Hash(string user) => Protocol.Fnv1a64(PrefixOf(user)).ToString("x16");

    private void Clean()
    {
        foreach (int uid in new[] { _alice, _bob })
        {
            Harness.Run("pkill", ["-KILL", "-U", uid.ToString()]);
        }
        foreach ((string user, int uid) in new[] { (Alice, _alice), (Bob, _bob) })
        {
            if (IsMounted(PrefixOf(user)))
            {
                Harness.Run("umount", ["-l", PrefixOf(user)]);
            }
            foreach (string d in new[] { $"/tmp/{user}", $"/tmp/copper-run-{uid}", $"/tmp/copper-cache-{uid}", $"/tmp/copper-logs-{uid}" })
            {
                Harness.Run("rm", ["-rf", d]);
            }
        }
    }

    private ProcResult AsUser(string user, string script) =>
        LocalUsers.Run(user == Alice ? _alice : _bob, user, script);

    private static bool IsMounted(string path) => File.ReadAllLines("/proc/mounts").Any(l => l.Split(' ')[1] == path);

    /// <summary>What a user's session leaves once stop_copper.sh ran: processes, runtime dir, cache, mount.</summary>
    private void AssertNothingLeft(string user, int uid)
    {
        // A process that already exited but was not yet reaped (a zombie) is not left over.
        ProcResult ps = Harness.Run("pgrep", ["-a", "--runstates", "R,S,D,T,t,I", "-U", uid.ToString()]);
        Assert.True(ps.ExitCode != 0, $"{user} has processes left: {ps.Stdout}");
        Assert.False(Directory.Exists($"/tmp/copper-run-{uid}"), $"/tmp/copper-run-{uid} is left");
        Assert.False(Directory.Exists($"/tmp/copper-cache-{uid}"), $"/tmp/copper-cache-{uid} is left");
        Assert.False(IsMounted(PrefixOf(user)), PrefixOf(user) + " is still mounted");
    }

    [Theory]
    [InlineData("")]
    [InlineData("-n 2")]
    public void TheWholeWorkflowAsAnUnprivilegedUser(string nodes)
    {
        string prefix = PrefixOf(Alice);
        // The user's own shell: default prefix, default runtime, cache and log directories.
        string script = $"""
            set -e
            eval "$({Launch} --no-fuse -b none -s 60 {nodes})"
            echo "prefix=$COPPER_PREFIX"
            for node in $(seq 0 $(({(nodes.Length > 0 ? 1 : 0)}))); do
              COPPER_NODE=$node LD_PRELOAD=$COPPER_PRELOAD LD_AUDIT=$COPPER_AUDIT PYTHONPATH=$COPPER_PREFIX{DistPackages} /usr/bin/python3 -c 'import numpy; print("numpy", numpy.__file__)'
            done
            {Copper} stats
            COPPER_NODE=0 PYTHONPATH=$COPPER_PREFIX{DistPackages} {Copper} verify -- /usr/bin/python3 -S -c 'import numpy'
            {Stop}
            """;
        try
        {
            ProcResult r = AsUser(Alice, script);
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Contains($"prefix={prefix}\n", r.Stdout);
            string[] imports = r.Stdout.Split('\n').Where(l => l.StartsWith("numpy ", StringComparison.Ordinal)).ToArray();
            Assert.Equal(nodes.Length > 0 ? 2 : 1, imports.Length);
            Assert.All(imports, l => Assert.Equal($"numpy {prefix}{DistPackages}/numpy/__init__.py", l));
            Assert.DoesNotContain("copper: not using the agent", r.Stderr);
            // stats: every node of the user's job answered, and served the import.
            string[] rows = r.Stdout.Split('\n').Where(l => l.Length > 0 && char.IsDigit(l[0])).ToArray();
            Assert.Equal(nodes.Length > 0 ? 2 : 1, rows.Length);
            Assert.All(rows, row => Assert.True(long.Parse(row.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) > 0, "a node served no request:\n" + r.Stdout));
            // verify: the import went through Copper and nothing leaked to the real paths.
            Assert.Contains("(exit status 0)", r.Stdout);
            Assert.Contains("leaks: none", r.Stdout);
            Assert.DoesNotContain("through Copper: 0 calls", r.Stdout);
            AssertNothingLeft(Alice, _alice);
        }
        finally
        {
            AsUser(Alice, $"{Stop} -v {prefix}");
        }
    }

    /// <summary>Sets /dev/fuse to 0666 (as sites have it) for the test; restores the mode after.</summary>
    private static T WithUserFuse<T>(Func<T> body)
    {
        var mode = File.GetUnixFileMode("/dev/fuse");
        const UnixFileMode Open = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite;
        try
        {
            File.SetUnixFileMode("/dev/fuse", mode | Open);
            return body();
        }
        finally
        {
            File.SetUnixFileMode("/dev/fuse", mode);
        }
    }

    [Fact]
    public void TheMountThroughFusermountAsAnUnprivilegedUser()
    {
        string prefix = PrefixOf(Alice);
        string numpy = prefix + DistPackages + "/numpy";
        // No shim: ls, cat and python read through the user's FUSE mount.
        string script = $"""
            set -e
            eval "$({Launch} --fuse-only -b none -s 30)"
            echo "mount=$COPPER_MOUNT"
            grep -F " {prefix} fuse" /proc/mounts
            ls {numpy} | grep -x __init__.py
            cmp {numpy}/__init__.py {DistPackages}/numpy/__init__.py && echo same-bytes
            PYTHONPATH={prefix}{DistPackages} /usr/bin/python3 -c 'import numpy; print("numpy", numpy.__file__, numpy.arange(4).sum())'
            {Stop}
            grep -qF " {prefix} " /proc/mounts && echo STILL-MOUNTED || true
            """;
        try
        {
            ProcResult r = WithUserFuse(() => AsUser(Alice, script));
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Contains($"mount={prefix}\n", r.Stdout);
            // Mounted by the user (fusermount3 records the uid), read-only.
            Assert.Contains($"user_id={_alice},", r.Stdout);
            Assert.Contains("__init__.py\n", r.Stdout);
            Assert.Contains("same-bytes\n", r.Stdout);
            Assert.Contains($"numpy {numpy}/__init__.py 6\n", r.Stdout);
            Assert.DoesNotContain("STILL-MOUNTED", r.Stdout);
            AssertNothingLeft(Alice, _alice);
        }
        finally
        {
            AsUser(Alice, $"{Stop} -v {prefix}");
        }
    }

    [Fact]
    public void StopUnmountsAndCleansAfterTheAgentWasKilled()
    {
        string prefix = PrefixOf(Alice);
        string script = $"""
            set -e
            eval "$({Launch} --fuse-only -b none -s 30)"
            ls {prefix}{DistPackages}/numpy >/dev/null
            pid=$(cat /tmp/copper-run-{_alice}/{Hash(Alice)}/agent.pid)
            kill -KILL $pid
            while kill -0 $pid 2>/dev/null; do sleep 0.05; done
            grep -qF " {prefix} " /proc/mounts && echo dead-mount-left
            ls {prefix} >/dev/null 2>&1 || echo not-connected
            {Stop}
            grep -qF " {prefix} " /proc/mounts && echo STILL-MOUNTED || true
            ls -A {prefix} | wc -l
            """;
        try
        {
            ProcResult r = WithUserFuse(() => AsUser(Alice, script));
            Assert.True(r.ExitCode == 0, r.ToString());
            // The kill left a dead mount (the situation stop must handle), and stop removed it.
            Assert.Contains("dead-mount-left\nnot-connected\n", r.Stdout);
            Assert.DoesNotContain("STILL-MOUNTED", r.Stdout);
            Assert.EndsWith("\n0\n", r.Stdout);
            AssertNothingLeft(Alice, _alice);
        }
        finally
        {
            AsUser(Alice, $"{Stop} -v {prefix}");
        }
    }

    [Fact]
    public async Task TwoUsersKeepTheirAgentsSocketsAndCachesToThemselves()
    {
        string launch = $"{Launch} --no-fuse -b none -s 30 -l 1 >/dev/null";
        string import = $"LD_PRELOAD={LocalUsers.Install}/lib/libcopper-preload.so COPPER_PREFIX=$P PYTHONPATH=$P{DistPackages} /usr/bin/python3 -c 'import numpy; print(\"numpy\", numpy.__file__)'";
        try
        {
            ProcResult la = AsUser(Alice, launch);
            ProcResult lb = AsUser(Bob, launch);
            Assert.True(la.ExitCode == 0, la.ToString());
            Assert.True(lb.ExitCode == 0, lb.ToString());
            string aliceSock = $"/tmp/copper-run-{_alice}/{Hash(Alice)}/{Protocol.SocketName}";
            string bobSock = $"/tmp/copper-run-{_bob}/{Hash(Bob)}/{Protocol.SocketName}";
            Assert.True(File.Exists(aliceSock) && File.Exists(bobSock), "both agents must be up");

            // Each user's import works at the same time as the other's.
            var ta = Task.Run(() => AsUser(Alice, $"P={PrefixOf(Alice)}; {import}"));
            var tb = Task.Run(() => AsUser(Bob, $"P={PrefixOf(Bob)}; {import}"));
            ProcResult[] imports = await Task.WhenAll(ta, tb);
            foreach ((ProcResult r, string user) in new[] { (imports[0], Alice), (imports[1], Bob) })
            {
                Assert.True(r.ExitCode == 0, r.ToString());
                Assert.Equal($"numpy {PrefixOf(user)}{DistPackages}/numpy/__init__.py", r.Stdout.Trim());
                Assert.DoesNotContain("copper: not using the agent", r.Stderr);
            }

            foreach ((string me, int myUid, string other, int otherUid, string otherSock) in new[]
            {
                (Alice, _alice, Bob, _bob, bobSock),
                (Bob, _bob, Alice, _alice, aliceSock),
            })
            {
                // copper stats: each user sees their own agent, never the other's.
                ProcResult mine = AsUser(me, $"{Copper} stats");
                Assert.True(mine.ExitCode == 0, mine.ToString());
                Assert.Contains($"Copper {PrefixOf(me)}: 1 agent(s)", mine.Stdout);
                ProcResult theirs = AsUser(me, $"{Copper} stats -v {PrefixOf(other)}");
                Assert.Equal(1, theirs.ExitCode);
                Assert.Contains($"no agent for {PrefixOf(other)} on this machine", theirs.Stderr);
                ProcResult pointedStats = AsUser(me, $"COPPER_RUNTIME_DIR=/tmp/copper-run-{otherUid} {Copper} stats -v {PrefixOf(other)}");
                // A clear error, not a crash.
                Assert.Equal(1, pointedStats.ExitCode);
                Assert.Contains($"/tmp/copper-run-{otherUid}", pointedStats.Stdout + pointedStats.Stderr);
                Assert.Contains("cannot read the runtime dir", pointedStats.Stdout + pointedStats.Stderr);
                Assert.DoesNotContain("Unhandled exception", pointedStats.Stderr);

                // The other's runtime and cache directories are closed to this user.
                ProcResult look = AsUser(me, $"""
                    ls /tmp/copper-run-{otherUid} >/dev/null 2>&1 && echo RUN-READABLE
                    ls /tmp/copper-cache-{otherUid} >/dev/null 2>&1 && echo CACHE-READABLE
                    cat /tmp/copper-cache-{otherUid}/{Hash(other)}/mirror{DistPackages}/numpy/__init__.py >/dev/null 2>&1 && echo MIRROR-READABLE
                    /usr/bin/python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.connect("{otherSock}")' 2>&1 | tail -1
                    true
                    """);
                Assert.Equal("PermissionError: [Errno 13] Permission denied", look.Stdout.Trim());

                // Pointed at the other's runtime directory, the shim refuses it and reads the
                // real paths; the import still works.
                ProcResult pointed = AsUser(me, $"P={PrefixOf(other)}; COPPER_RUNTIME_DIR=/tmp/copper-run-{otherUid} {import}");
                Assert.True(pointed.ExitCode == 0, pointed.ToString());
                Assert.Contains("copper: not using the agent", pointed.Stderr);
                Assert.Equal($"numpy {PrefixOf(other)}{DistPackages}/numpy/__init__.py", pointed.Stdout.Trim());

                // Even a process of this user that can reach the socket (CAP_DAC_OVERRIDE lets it
                // past the directories' modes) is refused by the agent's SO_PEERCRED check.
                ProcResult reach = Harness.Run("setpriv", [$"--reuid={myUid}", $"--regid={myUid}", "--clear-groups", "--inh-caps=+dac_override", "--ambient-caps=+dac_override",
                    Harness.Python, "-c", $"""
                    import socket, struct
                    s = socket.socket(socket.AF_UNIX)
                    s.settimeout(10)
                    s.connect("{otherSock}")
                    print("connected")
                    try:
                        s.sendall(b"\0" * 64)
                        print("answer", len(s.recv(100)))
                    except OSError as e:
                        print("refused", type(e).__name__)
                    """]);
                Assert.True(reach.ExitCode == 0, reach.ToString());
                Assert.Contains("connected\n", reach.Stdout);
                Assert.DoesNotContain("answer", reach.Stdout.Replace("answer 0", "", StringComparison.Ordinal));
                string logs = string.Join("\n", Directory.GetFiles($"/tmp/copper-logs-{otherUid}").Select(File.ReadAllText));
                Assert.Contains($"refused a client of uid {myUid} (agent uid {otherUid})", logs);
            }
        }
        finally
        {
            AsUser(Alice, $"{Stop} -v {PrefixOf(Alice)}");
            AsUser(Bob, $"{Stop} -v {PrefixOf(Bob)}");
        }
    }
}
