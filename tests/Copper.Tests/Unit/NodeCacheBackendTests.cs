// The mount's one fallback rule (NodeCacheBackend): wherever the node cache answers with a
// status of Copper's own (negative: fallback, too long, too big), the mount asks the real file
// system at that path, for every operation, as the shim does; real errors stay errors and
// names come back byte for byte. The cache here sits on an upstream that fails every request.
using System.Diagnostics;
using Copper.Agent;
using Copper.Interop;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;
using Libc = Copper.Agent.Interop.Libc;

namespace Copper.Tests.Unit;

public sealed class NodeCacheBackendTests : IDisposable
{
    private const uint S_IFLNK = 0xA000;
    private const byte DtReg = 8, DtDir = 4, DtLnk = 10;

    private readonly string _dir = Directory.CreateTempSubdirectory("copper-backend-").FullName;
    private readonly string _mirror = Directory.CreateTempSubdirectory("copper-backend-mirror-").FullName;

    /// <summary>A real name that is not UTF-8 ("caf" and Latin-1 é), as the agent's strings stand for it.</summary>
    private const string Latin1Name = "caf\uDCE9";

    public NodeCacheBackendTests()
    {
        File.WriteAllText(Path.Combine(_dir, "data.txt"), "real bytes\n");
        Directory.CreateDirectory(Path.Combine(_dir, "sub"));
        File.CreateSymbolicLink(Path.Combine(_dir, "link"), "data.txt");
        int fd = Libc.Open(Path.Combine(_dir, Latin1Name), Libc.O_WRONLY | Libc.O_CREAT | Libc.O_EXCL | Libc.O_CLOEXEC, 0x1A4);
        Assert.True(fd >= 0, $"errno {Libc.Errno}");
        new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true).Dispose();
    }

    public void Dispose()
    {
        // rm, not Directory.Delete: the directory holds a name that is not UTF-8.
        using var rm = Process.Start("rm", ["-rf", "--", _dir, _mirror]);
        rm.WaitForExit();
    }

    /// <summary>An upstream that answers <paramref name="status"/> to every request.</summary>
    private sealed class Failing(int status) : IUpstream
    {
        public ValueTask<StatAnswer> StatAsync(string path, bool follow, CancellationToken ct) => new(new StatAnswer(status, default));

        public ValueTask<LinkAnswer> ReadLinkAsync(string path, CancellationToken ct) => new(new LinkAnswer(status, []));

        public ValueTask<int> AccessAsync(string path, int mode, CancellationToken ct) => new(status);

        public ValueTask<DirAnswer> ListDirAsync(string path, CancellationToken ct) => new(new DirAnswer(status, []));

        public ValueTask<FetchAnswer> FetchAsync(string path, long maxBytes, IFetchSink sink, CancellationToken ct) => new(new FetchAnswer(status, 0, default));
    }

    private NodeCacheBackend Backend(int status) =>
        new(new NodeCache(new Failing(status), new Counters(), NullLogger.Instance, _mirror, maxBytes: 1 << 20));

    [Theory]
    [InlineData(Protocol.StatusFallback)]
    [InlineData(Protocol.StatusTooLong)]
    public void ReadLinkIsTheRealTarget(int status)
    {
        LinkAnswer a = Backend(status).ReadLink(Path.Combine(_dir, "link"));
        Assert.Equal(0, a.Status);
        Assert.Equal("data.txt"u8.ToArray(), a.Target);
    }

    [Theory]
    [InlineData(Protocol.StatusFallback)]
    [InlineData(Protocol.StatusTooLong)]
    public void ListingIsTheRealDirectoryByteForByte(int status)
    {
        DirAnswer a = Backend(status).List(_dir);
        Assert.Equal(0, a.Status);
        var got = a.Entries.Select(e => (Convert.ToHexString(e.Name), e.Type)).OrderBy(e => e.Item1, StringComparer.Ordinal).ToArray();
        var want = new[]
        {
            ("data.txt"u8.ToArray(), DtReg), ("sub"u8.ToArray(), DtDir), ("link"u8.ToArray(), DtLnk), (new byte[] { (byte)'c', (byte)'a', (byte)'f', 0xE9 }, DtReg),
        }.Select(e => (Convert.ToHexString(e.Item1), e.Item2)).OrderBy(e => e.Item1, StringComparer.Ordinal).ToArray();
        Assert.Equal(want, got);
    }

    [Theory]
    [InlineData(Protocol.StatusFallback)]
    [InlineData(Protocol.StatusTooLong)]
    public void LstatAndAccessAreTheRealOnes(int status)
    {
        NodeCacheBackend b = Backend(status);
        StatAnswer l = b.Lstat(Path.Combine(_dir, "link"));
        Assert.Equal(0, l.Status);
        Assert.Equal(S_IFLNK, l.St.Mode & Libc.S_IFMT);
        Assert.Equal(0, b.Access(Path.Combine(_dir, "data.txt"), 4 /* R_OK */));
    }

    [Theory]
    [InlineData(Protocol.StatusFallback)]
    [InlineData(Protocol.StatusTooBig)]
    public void OpenIsTheRealFile(int status)
    {
        string file = Path.Combine(_dir, Latin1Name);
        OpenAnswer a = Backend(status).Open(file);
        Assert.Equal(0, a.Status);
        Assert.Equal(OpenKind.File, a.Kind);
        Assert.Equal(PathBytes.Encode(file), a.LocalPath);
        Assert.Equal(Libc.S_IFREG, a.St.Mode & Libc.S_IFMT);
        OpenAnswer d = Backend(status).Open(Path.Combine(_dir, "sub"));
        Assert.Equal((0, OpenKind.Dir), (d.Status, d.Kind));
    }

    [Fact]
    public void RealErrorsStayErrors()
    {
        NodeCacheBackend b = Backend(Protocol.StatusFallback);
        string absent = Path.Combine(_dir, "absent");
        Assert.Equal(Libc.ENOENT, b.Lstat(absent).Status);
        Assert.Equal(Libc.ENOENT, b.ReadLink(absent).Status);
        Assert.Equal(Libc.ENOENT, b.Access(absent, 0));
        Assert.Equal(Libc.ENOENT, b.List(absent).Status);
        Assert.Equal(Libc.ENOENT, b.Open(absent).Status);
        Assert.Equal(Libc.EINVAL, b.ReadLink(Path.Combine(_dir, "data.txt")).Status);
        Assert.Equal(20 /* ENOTDIR */, b.List(Path.Combine(_dir, "data.txt")).Status);
    }

    [Fact]
    public void AnswersOfTheCacheAreServedAsTheyAre()
    {
        // An errno of the file system (here from the upstream) is an answer, not a reason to look again.
        NodeCacheBackend b = Backend(13 /* EACCES */);
        Assert.Equal(13, b.ReadLink(Path.Combine(_dir, "link")).Status);
        Assert.Equal(13, b.List(_dir).Status);
        Assert.Equal(13, b.Open(Path.Combine(_dir, "data.txt")).Status);
    }
}
