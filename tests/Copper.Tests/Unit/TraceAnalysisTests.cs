// copper verify's analysis (TraceAnalysis) on strace lines written out here: what marks a
// directory as reached through Copper (a listing asked of the agent, a mirror copy opened, a
// call on the prefix), what does not (a "cached only" probe, Copper's own files), and how
// real calls are resolved (dirfd annotations, the cwd, escapes) and grouped.
using System.Buffers.Binary;
using System.Text;
using Copper.Interop;
using Xunit;

namespace Copper.Tests.Unit;

public class TraceAnalysisTests
{
    private const string Connect = "connect(5<UNIX-STREAM:[100]>, {sa_family=AF_UNIX, sun_path=\"/r/run/h/agent.sock\"}, 110) = 0";

    private static TraceAnalysis Analyse(params string[] lines)
    {
        var t = new TraceAnalysis("/p/copper", new List<string> { "/c/cache" }, "/r/run", new[] { "/r/run/h/agent.sock" }, "/home/u");
        t.AddProcess(lines);
        return t;
    }

    // A request frame as strace prints what send() sent: every byte as \xHH.
    private static string Send(Op op, string path, uint flags = 0, int inode = 100)
    {
        byte[] p = Encoding.UTF8.GetBytes(path);
        int fixedLen = op is Op.ListDirPlus or Op.Access ? 8 : 0;
        byte[] frame = new byte[Protocol.HeaderSize + fixedLen + p.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)(fixedLen + p.Length));
        frame[4] = (byte)op;
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(8), 7);
        if (fixedLen > 0)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(Protocol.HeaderSize), flags);
        }
        p.CopyTo(frame, Protocol.HeaderSize + fixedLen);
        string text = string.Concat(frame.Select(b => $"\\x{b:x2}"));
        return $"sendto(5<UNIX-STREAM:[{inode}->101]>, \"{text}\", {frame.Length}, MSG_NOSIGNAL, NULL, 0) = {frame.Length}";
    }

    [Fact]
    public void RealCallsInADirectoryListedThroughTheAgentAreLeaks()
    {
        TraceAnalysis t = Analyse(
            Connect,
            Send(Op.ListDirPlus, "/lus/env/pkg"),
            "openat(AT_FDCWD</home/u>, \"/lus/env/pkg/mod.py\", O_RDONLY|O_CLOEXEC) = 3</lus/env/pkg/mod.py>",
            "newfstatat(3</lus/env/pkg/mod.py>, \"\", {st_mode=S_IFREG|0644, st_size=9, ...}, AT_EMPTY_PATH) = 0",
            "getdents64(4</lus/env/pkg>, 0x1d4b0 /* 3 entries */, 32768) = 80",
            "openat(AT_FDCWD</home/u>, \"/lus/other/x\", O_RDONLY) = 3</lus/other/x>",
            "+++ exited with 0 +++");
        Assert.Equal(1, t.Requests);
        TraceAnalysis.Leak leak = Assert.Single(t.Leaks());
        Assert.Equal("/lus/env/pkg", leak.Directory);
        Assert.Equal(3, leak.Calls);
        Assert.Equal(1, leak.BySyscall["openat"]);
        Assert.Equal(1, leak.BySyscall["getdents64"]);
        Assert.Equal(1, leak.BySyscall["newfstatat"]);
    }

    [Fact]
    public void ACachedOnlyProbeIsNotARead()
    {
        TraceAnalysis t = Analyse(
            Connect,
            Send(Op.ListDirPlus, "/lus/env", flags: 1),
            "newfstatat(AT_FDCWD</home/u>, \"/lus/env/y\", 0x7ffd, 0) = -1 ENOENT (No such file or directory)");
        Assert.Equal(1, t.Requests);
        Assert.Empty(t.Leaks());
    }

    [Fact]
    public void FramesOnOtherSocketsAreNotRequests()
    {
        TraceAnalysis t = Analyse(
            Connect,
            Send(Op.ListDir, "/lus/env/pkg", inode: 200),
            "getdents64(4</lus/env/pkg>, 0x1d4b0 /* 3 entries */, 32768) = 80");
        Assert.Equal(0, t.Requests);
        Assert.Empty(t.Leaks());
    }

    [Fact]
    public void AMirrorCopyOpenedMarksItsDirectoryAndRelativeNamesResolve()
    {
        TraceAnalysis t = Analyse(
            "newfstatat(AT_FDCWD</home/u>, \"/c/cache/mirror\", {st_mode=S_IFDIR|0700, ...}, AT_SYMLINK_NOFOLLOW) = 0",
            "openat(AT_FDCWD</home/u>, \"/c/cache/mirror/lus/env/pkg/a.py\", O_RDONLY|O_CLOEXEC) = 3</c/cache/mirror/lus/env/pkg/a.py>",
            "openat(7</lus/env/pkg>, \"b.py\", O_RDONLY|O_CLOEXEC) = 3</lus/env/pkg/b.py>",
            "newfstatat(AT_FDCWD</lus/env>, \"pkg/../pkg/c.py\", 0x7ffd, 0) = 0",
            "newfstatat(AT_FDCWD</lus/env>, \"d.py\", 0x7ffd, 0) = 0");
        Assert.Equal(1, t.MirrorCalls); // the mirror root's check is not a read
        TraceAnalysis.Leak leak = Assert.Single(t.Leaks());
        Assert.Equal("/lus/env/pkg", leak.Directory);
        Assert.Equal(new[] { "/lus/env/pkg/b.py", "/lus/env/pkg/c.py" }, leak.Examples);
    }

    [Fact]
    public void CallsOnThePrefixCountAndMarkWhatTheyReach()
    {
        TraceAnalysis t = Analyse(
            "openat(AT_FDCWD</home/u>, \"/p/copper/lus/env/pkg/c.py\", O_RDONLY) = 3</p/copper/lus/env/pkg/c.py>",
            "stat(\"/lus/env/pkg/caf\\303\\251.py\", {st_mode=S_IFREG|0644, ...}) = 0");
        Assert.Equal(1, t.PrefixCalls);
        TraceAnalysis.Leak leak = Assert.Single(t.Leaks());
        Assert.Equal("/lus/env/pkg", leak.Directory);
        Assert.Equal("/lus/env/pkg/café.py", Assert.Single(leak.Examples));
    }

    [Fact]
    public void ARealOpenAfterAnOpenRequestWithoutAMirrorCopyIsTheShims()
    {
        // big.bin: asked, no mirror copy (larger than -M), opened by its real path: the shim's.
        // small.py: asked and opened from the mirror, then opened by its real path: the command's.
        TraceAnalysis t = Analyse(
            Connect,
            Send(Op.Open, "/lus/env/big.bin"),
            "openat(AT_FDCWD</home/u>, \"/lus/env/big.bin\", O_RDONLY|O_CLOEXEC) = 3</lus/env/big.bin>",
            Send(Op.Open, "/lus/env/small.py"),
            "openat(AT_FDCWD</home/u>, \"/c/cache/mirror/lus/env/small.py\", O_RDONLY|O_CLOEXEC) = 4</c/cache/mirror/lus/env/small.py>",
            "openat(AT_FDCWD</home/u>, \"/lus/env/small.py\", O_RDONLY|O_CLOEXEC) = 5</lus/env/small.py>");
        Assert.Equal(2, t.Requests);
        List<TraceAnalysis.Leak> leaks = t.Leaks();
        Assert.Equal(2, leaks.Count);
        Assert.Equal(new[] { "/lus/env/big.bin" }, Assert.Single(leaks, l => l.ByShim).Examples);
        Assert.Equal(new[] { "/lus/env/small.py" }, Assert.Single(leaks, l => !l.ByShim).Examples);
        Assert.All(leaks, l => Assert.Equal("/lus/env", l.Directory));
    }

    [Fact]
    public void CoppersOwnFilesAndTheDirectoriesAboveThemAreNotLeaks()
    {
        // /r is reached through Copper (a file of it was read), but /r/run is the runtime dir.
        TraceAnalysis t = Analyse(
            "openat(AT_FDCWD</home/u>, \"/c/cache/mirror/r/data.bin\", O_RDONLY) = 3</c/cache/mirror/r/data.bin>",
            "newfstatat(AT_FDCWD</home/u>, \"/r/run\", {st_mode=S_IFDIR|0700, ...}, AT_SYMLINK_NOFOLLOW) = 0",
            "newfstatat(AT_FDCWD</home/u>, \"/r\", {st_mode=S_IFDIR|0755, ...}, AT_SYMLINK_NOFOLLOW) = 0",
            "newfstatat(AT_FDCWD</home/u>, \"/r/run/h/agent.sock\", 0x7ffd, 0) = 0",
            "openat(AT_FDCWD</home/u>, \"/r/other\", O_RDONLY) = 3</r/other>");
        TraceAnalysis.Leak leak = Assert.Single(t.Leaks());
        Assert.Equal("/r", leak.Directory);
        Assert.Equal(new[] { "/r/other" }, leak.Examples);
    }
}
