// The node cache's keep and coalesce rules (NodeCache) over an in-memory upstream: one
// upstream request for concurrent misses, answers kept for the agent's life except Copper's
// own failures, a listing that answers "absent" locally, and a fetched file's version
// replacing the stat answered before it.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Copper.Agent;
using Copper.Interop;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;
using Libc = Copper.Agent.Interop.Libc;

namespace Copper.Tests.Unit;

public sealed class NodeCacheTests : IDisposable
{
    private const int EACCES = 13;
    private const int ENOTDIR = 20;
    private const uint S_IFLNK = 0xA000;

    private readonly string _mirror = Directory.CreateTempSubdirectory("copper-nodecache-").FullName;
    private readonly FakeUpstream _up = new();
    private readonly Counters _counters = new();
    private readonly NodeCache _cache;

    public NodeCacheTests()
    {
        _cache = new NodeCache(_up, _counters, NullLogger.Instance, _mirror, maxBytes: 1 << 20);
    }

    public void Dispose()
    {
        // rm, not Directory.Delete: the mirror may hold names that are not UTF-8.
        using var rm = Process.Start("rm", ["-rf", "--", _mirror]);
        rm.WaitForExit();
    }

    private static CopperStat File(ulong ino, long size, long mtime, uint mode = 0x81A4 /* regular 0644 */) => new()
    {
        Dev = 0x801, Ino = ino, Nlink = 1, Mode = mode, Uid = 1000, Gid = 100, Size = size, Blksize = 4096,
        Blocks = (size + 511) / 512, AtimeSec = mtime, MtimeSec = mtime, MtimeNsec = 5, CtimeSec = mtime, CtimeNsec = 6,
    };

    private long Counter(string name) =>
        JsonDocument.Parse(_counters.ToJson(0)).RootElement.GetProperty(name).GetInt64();

    /// <summary>An upstream that answers from delegates, counts every call, and can hold calls at a gate.</summary>
    private sealed class FakeUpstream : IUpstream
    {
        private readonly ConcurrentDictionary<string, int> _calls = new();

        public Task Gate { get; set; } = Task.CompletedTask;

        public Func<string, bool, StatAnswer> Stat { get; set; } = (_, _) => new StatAnswer(Libc.ENOENT, default);

        public Func<string, LinkAnswer> Link { get; set; } = _ => new LinkAnswer(Libc.ENOENT, []);

        public Func<string, int, int> Access { get; set; } = (_, _) => 0;

        public Func<string, DirAnswer> List { get; set; } = _ => new DirAnswer(Libc.ENOENT, []);

        public Func<string, long, IFetchSink, Task<FetchAnswer>> Fetch { get; set; } =
            (_, _, _) => Task.FromResult(new FetchAnswer(Libc.ENOENT, 0, default));

        /// <summary>Fetches of <paramref name="path"/> send <paramref name="bytes"/> as version <paramref name="st"/>.</summary>
        public void Serve(string path, CopperStat st, byte[] bytes)
        {
            Func<string, long, IFetchSink, Task<FetchAnswer>> other = Fetch;
            Fetch = async (p, max, sink) =>
            {
                if (p != path)
                {
                    return await other(p, max, sink);
                }
                if (bytes.Length > max)
                {
                    return new FetchAnswer(Protocol.StatusTooBig, 0, st);
                }
                await sink.BeginAsync(st, bytes.Length, default);
                for (int i = 0; i < bytes.Length; i += 1000)
                {
                    await sink.ChunkAsync(bytes.AsMemory(i, Math.Min(1000, bytes.Length - i)), null, default);
                }
                return new FetchAnswer(0, OpenKind.File, st);
            };
        }

        public int Calls(string op, string path) => _calls.GetValueOrDefault(op + " " + path);

        public int AllCalls => _calls.Values.Sum();

        private async Task Enter(string op, string path)
        {
            _calls.AddOrUpdate(op + " " + path, 1, (_, n) => n + 1);
            await Gate;
        }

        public async ValueTask<StatAnswer> StatAsync(string path, bool follow, CancellationToken ct)
        {
            await Enter(follow ? "stat" : "lstat", path);
            return Stat(path, follow);
        }

        public async ValueTask<LinkAnswer> ReadLinkAsync(string path, CancellationToken ct)
        {
            await Enter("readlink", path);
            return Link(path);
        }

        public async ValueTask<int> AccessAsync(string path, int mode, CancellationToken ct)
        {
            await Enter("access", path);
            return Access(path, mode);
        }

        public async ValueTask<DirAnswer> ListDirAsync(string path, CancellationToken ct)
        {
            await Enter("listdir", path);
            return List(path);
        }

        public async ValueTask<FetchAnswer> FetchAsync(string path, long maxBytes, IFetchSink sink, CancellationToken ct)
        {
            await Enter("fetch", path);
            return await Fetch(path, maxBytes, sink);
        }
    }

    /// <summary>Starts <paramref name="n"/> calls from <paramref name="n"/> threads at once; returns their tasks.</summary>
    private static Task<T>[] FromThreads<T>(int n, Func<Task<T>> call)
    {
        var tasks = new Task<T>[n];
        using var start = new Barrier(n);
        Thread[] threads = Enumerable.Range(0, n).Select(i => new Thread(() =>
        {
            start.SignalAndWait();
            tasks[i] = call();
        })).ToArray();
        foreach (Thread t in threads)
        {
            t.Start();
        }
        foreach (Thread t in threads)
        {
            t.Join();
        }
        return tasks;
    }

    [Fact]
    public async Task ConcurrentStatMissesForOnePathMakeOneUpstreamCall()
    {
        CopperStat st = File(7, 3, 1000);
        _up.Stat = (_, _) => new StatAnswer(0, st);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _up.Gate = gate.Task;

        Task<StatAnswer>[] waiting = FromThreads(8, () => _cache.StatAsync("/lus/a.py", true, default));
        Assert.Equal(1, _up.Calls("stat", "/lus/a.py"));
        Assert.All(waiting, t => Assert.False(t.IsCompleted));
        gate.SetResult();
        StatAnswer[] answers = await Task.WhenAll(waiting);

        Assert.All(answers, a => Assert.Equal(new StatAnswer(0, st), a));
        Assert.Equal(1, _up.AllCalls);
        Assert.Equal(1, Counter("cache_misses"));
        Assert.Equal(7, Counter("coalesced"));
        Assert.Equal(new StatAnswer(0, st), await _cache.StatAsync("/lus/a.py", true, default));
        Assert.Equal(1, _up.AllCalls);
        Assert.Equal(1, Counter("cache_hits"));
    }

    [Fact]
    public async Task ConcurrentOpensOfOneFileFetchItOnce()
    {
        byte[] bytes = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("import os\n", 500)));
        _up.Serve("/lus/m.py", File(8, bytes.Length, 1000), bytes);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _up.Gate = gate.Task;

        Task<OpenAnswer>[] waiting = FromThreads(8, () => _cache.OpenAsync("/lus/m.py", default));
        gate.SetResult();
        OpenAnswer[] answers = await Task.WhenAll(waiting);

        Assert.Equal(1, _up.Calls("fetch", "/lus/m.py"));
        Assert.All(answers, a => Assert.Same(answers[0], a));
        Assert.Equal(0, answers[0].Status);
        Assert.Equal(OpenKind.File, answers[0].Kind);
        Assert.Equal(_mirror + "/lus/m.py", Encoding.UTF8.GetString(answers[0].LocalPath));
        Assert.Equal(bytes, System.IO.File.ReadAllBytes(_mirror + "/lus/m.py"));
        Assert.Empty(Directory.GetFiles(_mirror + "/lus", ".copper-tmp-*"));
    }

    [Fact]
    public async Task DifferentKeysAreNotCoalesced()
    {
        _up.Stat = (_, _) => new StatAnswer(0, File(1, 1, 1));
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _up.Gate = gate.Task;
        Task<StatAnswer> a = _cache.StatAsync("/a", true, default);
        Task<StatAnswer> b = _cache.StatAsync("/b", true, default);
        Task<StatAnswer> la = _cache.StatAsync("/a", false, default);
        Task<int> r = _cache.AccessAsync("/a", 4, default);
        Task<int> x = _cache.AccessAsync("/a", 1, default);
        gate.SetResult();
        await Task.WhenAll(a, b, la, r, x);
        Assert.Equal(1, _up.Calls("stat", "/a"));
        Assert.Equal(1, _up.Calls("stat", "/b"));
        Assert.Equal(1, _up.Calls("lstat", "/a"));
        Assert.Equal(2, _up.Calls("access", "/a"));
    }

    /// <summary>Asks <paramref name="op"/> of <paramref name="path"/> through the cache; returns the status.</summary>
    private async Task<int> Ask(string op, string path) => op switch
    {
        "stat" => (await _cache.StatAsync(path, true, default)).Status,
        "lstat" => (await _cache.StatAsync(path, false, default)).Status,
        "readlink" => (await _cache.ReadLinkAsync(path, default)).Status,
        "access" => await _cache.AccessAsync(path, 4, default),
        "listdir" => (await _cache.ListDirAsync(path, default)).Status,
        "fetch" => (await _cache.OpenAsync(path, default)).Status,
        _ => throw new ArgumentException(op),
    };

    private void AnswerEverything(int status)
    {
        _up.Stat = (_, _) => new StatAnswer(status, status == 0 ? File(3, 0, 9) : default);
        _up.Link = _ => new LinkAnswer(status, status == 0 ? "target"u8.ToArray() : []);
        _up.Access = (_, _) => status;
        _up.List = _ => new DirAnswer(status, []);
        if (status == 0)
        {
            _up.Serve("/lus/x", File(3, 0, 9), []);
        }
        else
        {
            _up.Fetch = (_, _, _) => Task.FromResult(new FetchAnswer(status, 0, default));
        }
    }

    [Theory]
    [InlineData("stat", 0, 1)]
    [InlineData("stat", Libc.ENOENT, 1)]
    [InlineData("stat", EACCES, 1)]
    [InlineData("stat", Protocol.StatusFallback, 2)]
    [InlineData("lstat", 0, 1)]
    [InlineData("lstat", ENOTDIR, 1)]
    [InlineData("lstat", Protocol.StatusFallback, 2)]
    [InlineData("readlink", 0, 1)]
    [InlineData("readlink", Libc.EINVAL, 1)]
    [InlineData("readlink", Protocol.StatusFallback, 2)]
    [InlineData("access", 0, 1)]
    [InlineData("access", EACCES, 1)]
    [InlineData("access", Protocol.StatusFallback, 2)]
    [InlineData("listdir", 0, 1)]
    [InlineData("listdir", ENOTDIR, 1)]
    [InlineData("listdir", Protocol.StatusFallback, 2)]
    [InlineData("fetch", 0, 1)]
    [InlineData("fetch", EACCES, 1)]
    [InlineData("fetch", Protocol.StatusTooBig, 1)]
    [InlineData("fetch", Protocol.StatusFallback, 2)]
    public async Task AnswersAreKeptButCoppersOwnFailuresAreAskedAgain(string op, int status, int upstreamCalls)
    {
        AnswerEverything(status);
        Assert.Equal(status, await Ask(op, "/lus/x"));
        Assert.Equal(status, await Ask(op, "/lus/x"));
        Assert.Equal(upstreamCalls, _up.Calls(op, "/lus/x"));
    }

    [Fact]
    public async Task AFallbackIsNotKeptSoALaterRequestMaySucceed()
    {
        CopperStat st = File(4, 10, 20);
        int calls = 0;
        _up.Stat = (_, _) => ++calls == 1 ? new StatAnswer(Protocol.StatusFallback, default) : new StatAnswer(0, st);
        Assert.Equal(Protocol.StatusFallback, (await _cache.StatAsync("/lus/y", true, default)).Status);
        Assert.Equal(new StatAnswer(0, st), await _cache.StatAsync("/lus/y", true, default));
        Assert.Equal(new StatAnswer(0, st), await _cache.StatAsync("/lus/y", true, default));
        Assert.Equal(2, _up.Calls("stat", "/lus/y"));
    }

    [Fact]
    public async Task AnUpstreamThatThrowsIsAskedAgain()
    {
        int calls = 0;
        _up.Stat = (_, _) => ++calls == 1 ? throw new IOException("parent gone") : new StatAnswer(0, File(5, 1, 1));
        await Assert.ThrowsAsync<IOException>(() => _cache.StatAsync("/lus/z", true, default));
        Assert.Equal(0, (await _cache.StatAsync("/lus/z", true, default)).Status);
        Assert.Equal(2, _up.Calls("stat", "/lus/z"));
    }

    [Fact]
    public async Task AFileAboveTheSizeCapIsKeptAsTooBig()
    {
        _up.Serve("/lus/big.bin", File(6, (1 << 20) + 1, 1), new byte[(1 << 20) + 1]);
        Assert.Equal(Protocol.StatusTooBig, (await _cache.OpenAsync("/lus/big.bin", default)).Status);
        Assert.Equal(Protocol.StatusTooBig, (await _cache.OpenAsync("/lus/big.bin", default)).Status);
        Assert.Equal(1, _up.Calls("fetch", "/lus/big.bin"));
        Assert.False(System.IO.File.Exists(_mirror + "/lus/big.bin"));
    }

    private static readonly DirEntry[] Listing =
    [
        new("a.py"u8.ToArray(), 1, 8),
        new([.. "caf"u8, 0xE9], 2, 8),
        new(Enumerable.Repeat((byte)'x', 255).ToArray(), 3, 8),
        new("sub"u8.ToArray(), 4, 4),
    ];

    [Fact]
    public async Task AListingAnswersAbsentForEveryOtherNameWithoutAsking()
    {
        _up.List = p => p == "/lus" ? new DirAnswer(0, Listing) : new DirAnswer(Libc.ENOENT, []);
        _up.Stat = (_, _) => new StatAnswer(0, File(9, 1, 1));
        _up.Link = _ => new LinkAnswer(Libc.EINVAL, []);
        Assert.Equal(0, (await _cache.ListDirAsync("/lus", default)).Status);
        Assert.True(_cache.HasListing("/lus"));
        int before = _up.AllCalls;

        Assert.Equal(Libc.ENOENT, (await _cache.StatAsync("/lus/b.py", true, default)).Status);
        Assert.Equal(Libc.ENOENT, (await _cache.StatAsync("/lus/b.py", false, default)).Status);
        Assert.Equal(Libc.ENOENT, (await _cache.ReadLinkAsync("/lus/b.py", default)).Status);
        Assert.Equal(Libc.ENOENT, (await _cache.OpenAsync("/lus/b.py", default)).Status);
        Assert.Equal(Libc.ENOENT, (await _cache.StatAsync("/lus/" + new string('y', 255), true, default)).Status);
        Assert.Equal(Libc.ENOENT, (await _cache.StatAsync("/lus/" + string.Concat(Enumerable.Repeat("é", 127)) + "y", true, default)).Status);
        Assert.Equal(Libc.ENOENT, (await _cache.StatAsync("/lus/caf\uDCE8", true, default)).Status);
        Assert.Equal(before, _up.AllCalls);

        // Names in the listing are asked for, a name that is not UTF-8 included.
        Assert.Equal(0, (await _cache.StatAsync("/lus/a.py", true, default)).Status);
        Assert.Equal(0, (await _cache.StatAsync("/lus/caf\uDCE9", true, default)).Status);
        Assert.Equal(0, (await _cache.StatAsync("/lus/" + new string('x', 255), true, default)).Status);
        Assert.Equal(0, (await _cache.StatAsync("/lus/sub", false, default)).Status);
        Assert.Equal(before + 4, _up.AllCalls);
    }

    [Theory]
    [InlineData(256, "y")]
    [InlineData(1000, "y")]
    [InlineData(128, "é")]          // 128 characters, 256 bytes
    [InlineData(256, "\uDCFF")]     // 256 bytes that are not UTF-8
    public async Task AnAbsentNameLongerThan255BytesIsTooLong(int repeat, string unit)
    {
        _up.List = _ => new DirAnswer(0, Listing);
        await _cache.ListDirAsync("/lus", default);
        int before = _up.AllCalls;
        string name = string.Concat(Enumerable.Repeat(unit, repeat));
        Assert.Equal(Libc.ENAMETOOLONG, (await _cache.StatAsync("/lus/" + name, true, default)).Status);
        Assert.Equal(Libc.ENAMETOOLONG, (await _cache.OpenAsync("/lus/" + name, default)).Status);
        Assert.Equal(before, _up.AllCalls);
    }

    [Fact]
    public async Task TheRootsListingAnswersForItsChildren()
    {
        _up.List = _ => new DirAnswer(0, [new DirEntry("lus"u8.ToArray(), 1, 4)]);
        _up.Stat = (_, _) => new StatAnswer(0, File(1, 0, 0, 0x41ED));
        await _cache.ListDirAsync("/", default);
        Assert.Equal(Libc.ENOENT, (await _cache.StatAsync("/home", true, default)).Status);
        Assert.Equal(0, (await _cache.StatAsync("/lus", true, default)).Status);
        Assert.Equal(0, (await _cache.StatAsync("/", true, default)).Status);
        Assert.Equal(0, _up.Calls("stat", "/home"));
        Assert.Equal(1, _up.Calls("stat", "/lus"));
        Assert.Equal(1, _up.Calls("stat", "/"));
    }

    [Theory]
    [InlineData(ENOTDIR)]
    [InlineData(Protocol.StatusFallback)]
    public async Task AFailedListingAnswersNothingForItsNames(int status)
    {
        _up.List = _ => new DirAnswer(status, []);
        _up.Stat = (_, _) => new StatAnswer(0, File(2, 0, 0));
        await _cache.ListDirAsync("/lus", default);
        Assert.Equal(0, (await _cache.StatAsync("/lus/b.py", true, default)).Status);
        Assert.Equal(1, _up.Calls("stat", "/lus/b.py"));
    }

    [Fact]
    public async Task AFileFetchedInAnotherVersionThanItsStatReplacesThatStat()
    {
        CopperStat v1 = File(10, 3, 1000), v2 = File(10, 5, 2000);
        _up.Stat = (_, _) => new StatAnswer(0, v1);
        _up.Serve("/lus/c.py", v2, "hello"u8.ToArray());
        Assert.Equal(v1, (await _cache.StatAsync("/lus/c.py", true, default)).St);
        Assert.Equal(v1, (await _cache.StatAsync("/lus/c.py", false, default)).St);

        OpenAnswer open = await _cache.OpenAsync("/lus/c.py", default);
        Assert.Equal(0, open.Status);
        Assert.True(open.Changed);
        Assert.Equal(v2, open.St);
        Assert.Equal(v2, (await _cache.StatAsync("/lus/c.py", true, default)).St);
        Assert.Equal(v2, (await _cache.StatAsync("/lus/c.py", false, default)).St);
        Assert.Equal(1, _up.Calls("stat", "/lus/c.py"));
        Assert.Equal(1, _up.Calls("lstat", "/lus/c.py"));
        Assert.Equal(5, new FileInfo(_mirror + "/lus/c.py").Length);
    }

    [Fact]
    public async Task AFileFetchedInTheVersionItsStatDescribedIsNotChanged()
    {
        CopperStat v1 = File(11, 5, 1000);
        _up.Stat = (_, _) => new StatAnswer(0, v1);
        _up.Serve("/lus/d.py", v1 with { AtimeSec = 5000 }, "hello"u8.ToArray());   // only the access time moved
        await _cache.StatAsync("/lus/d.py", true, default);
        OpenAnswer open = await _cache.OpenAsync("/lus/d.py", default);
        Assert.Equal(0, open.Status);
        Assert.False(open.Changed);
        Assert.Equal(v1, (await _cache.StatAsync("/lus/d.py", true, default)).St);
    }

    [Fact]
    public async Task AFileFetchedBeforeAnyStatAnswersTheStatsThatFollow()
    {
        CopperStat v = File(12, 2, 3000);
        _up.Serve("/lus/e.py", v, "ok"u8.ToArray());
        OpenAnswer open = await _cache.OpenAsync("/lus/e.py", default);
        Assert.False(open.Changed);
        Assert.Equal(new StatAnswer(0, v), await _cache.StatAsync("/lus/e.py", true, default));
        Assert.Equal(0, _up.Calls("stat", "/lus/e.py"));
    }

    [Fact]
    public async Task ASymlinksOwnLstatStaysWhenItsTargetIsFetched()
    {
        CopperStat link = File(13, 6, 100, S_IFLNK | 0x1FF), v1 = File(14, 3, 100), v2 = File(14, 4, 200);
        _up.Stat = (_, follow) => new StatAnswer(0, follow ? v1 : link);
        _up.Serve("/lus/link.py", v2, "text"u8.ToArray());
        await _cache.StatAsync("/lus/link.py", true, default);
        await _cache.StatAsync("/lus/link.py", false, default);

        OpenAnswer open = await _cache.OpenAsync("/lus/link.py", default);
        Assert.True(open.Changed);
        Assert.Equal(v2, (await _cache.StatAsync("/lus/link.py", true, default)).St);
        Assert.Equal(link, (await _cache.StatAsync("/lus/link.py", false, default)).St);
    }

    [Fact]
    public async Task AMaterializedFileKeepsItsTimesAndModeWithoutSetIdBits()
    {
        CopperStat st = File(15, 4, 1_600_000_000, 0x8000 | 0xDED /* setuid, setgid, 0755 */) with { MtimeNsec = 700 };
        _up.Serve("/lus/bin/tool", st, "\x7fELF"u8.ToArray());
        Assert.Equal(0, (await _cache.OpenAsync("/lus/bin/tool", default)).Status);
        string local = _mirror + "/lus/bin/tool";
        Assert.Equal((UnixFileMode)0x1ED, System.IO.File.GetUnixFileMode(local));
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1_600_000_000).UtcDateTime, System.IO.File.GetLastWriteTimeUtc(local).AddTicks(-7));
        Assert.True(_cache.PeekMaterialized("/lus/bin/tool"));
    }

    [Fact]
    public async Task AnOwnerWhoCouldNotReadAFileStillCanInTheMirror()
    {
        _up.Serve("/lus/w", File(16, 1, 1, 0x8000 | 0x24 /* 0044 */), "w"u8.ToArray());
        await _cache.OpenAsync("/lus/w", default);
        Assert.Equal((UnixFileMode)0x124, System.IO.File.GetUnixFileMode(_mirror + "/lus/w"));
    }

    [Fact]
    public async Task ANameThatIsNotUtf8KeepsItsBytesInTheMirror()
    {
        string path = PathBytes.Decode([.. "/lus/caf"u8, 0xE9, .. ".py"u8]);
        _up.Serve(path, File(17, 2, 1), "hi"u8.ToArray());
        OpenAnswer open = await _cache.OpenAsync(path, default);
        Assert.Equal(0, open.Status);
        Assert.Equal([.. Encoding.UTF8.GetBytes(_mirror), .. "/lus/caf"u8, 0xE9, .. ".py"u8], open.LocalPath);
        DirAnswer listed = await new LocalFileSystemUpstream(new Counters()).ListDirAsync(_mirror + "/lus", default);
        Assert.Equal([.. "caf"u8, 0xE9, .. ".py"u8], Assert.Single(listed.Entries).Name);
    }

    [Fact]
    public async Task ADirectoryOpensAsADirectoryInTheMirror()
    {
        _up.Fetch = (_, _, _) => Task.FromResult(new FetchAnswer(0, OpenKind.Dir, File(18, 4096, 1, 0x41ED)));
        OpenAnswer open = await _cache.OpenAsync("/lus/pkg", default);
        Assert.Equal(0, open.Status);
        Assert.Equal(OpenKind.Dir, open.Kind);
        Assert.True(Directory.Exists(_mirror + "/lus/pkg"));
        Assert.False(_cache.PeekMaterialized("/lus/pkg"));
    }

    [Fact]
    public async Task AFileTheUpstreamNeverSentFallsBackAndIsAskedAgain()
    {
        _up.Fetch = (_, _, _) => Task.FromResult(new FetchAnswer(0, OpenKind.File, File(19, 1, 1)));
        Assert.Equal(Protocol.StatusFallback, (await _cache.OpenAsync("/lus/f", default)).Status);
        Assert.Equal(Protocol.StatusFallback, (await _cache.OpenAsync("/lus/f", default)).Status);
        Assert.Equal(2, _up.Calls("fetch", "/lus/f"));
    }

    [Fact]
    public async Task ATransferCutShortLeavesNoTemporaryFileAndIsAskedAgain()
    {
        int calls = 0;
        _up.Fetch = async (_, _, sink) =>
        {
            await sink.BeginAsync(File(20, 10, 1), 10, default);
            await sink.ChunkAsync("12345"u8.ToArray(), null, default);
            if (++calls == 1)
            {
                throw new IOException("parent gone");
            }
            return new FetchAnswer(Protocol.StatusFallback, 0, default);
        };
        Assert.Equal(Protocol.StatusFallback, (await _cache.OpenAsync("/lus/g", default)).Status);
        Assert.Equal(Protocol.StatusFallback, (await _cache.OpenAsync("/lus/g", default)).Status);
        Assert.Equal(2, _up.Calls("fetch", "/lus/g"));
        Assert.Empty(Directory.GetFileSystemEntries(_mirror + "/lus"));
    }

    [Fact]
    public async Task AnInteriorNodeKeepsTheChunksOfFilesItJustReceivedUpToItsBound()
    {
        // Random bytes: LZ4 cannot shrink them, so each 1,000-byte chunk is 1,000 bytes on the wire.
        var rng = new Random(5);
        byte[] a = new byte[3000], b = new byte[3000];
        rng.NextBytes(a);
        rng.NextBytes(b);
        _up.Serve("/lus/a.so", File(30, a.Length, 1), a);
        _up.Serve("/lus/b.so", File(31, b.Length, 1), b);
        var interior = new NodeCache(_up, _counters, NullLogger.Instance, _mirror, maxBytes: 1 << 20) { Pipelines = true, RelayKeepBytes = 5000 };

        Assert.Equal(0, (await interior.OpenAsync("/lus/a.so", default)).Status);
        // Done here, and still there for a child that asks now: the chunks as they came.
        Transfer? kept = interior.InFlight("/lus/a.so");
        Assert.NotNull(kept);
        Assert.True(await kept.Header);
        Assert.Equal(0, kept.Status);
        Assert.Equal(File(30, a.Length, 1), kept.St);
        var relayed = new List<byte>();
        for (int i = 0; ; i++)
        {
            WireChunk? c = await kept.GetAsync(i, default);
            if (c == null)
            {
                break;
            }
            relayed.AddRange(ChunkCodec.Decode(c)!);
        }
        Assert.Equal(a, relayed.ToArray());

        // 3,000 + 3,000 bytes are more than the 5,000 kept: the oldest goes.
        Assert.Equal(0, (await interior.OpenAsync("/lus/b.so", default)).Status);
        Assert.NotNull(interior.InFlight("/lus/b.so"));
        Assert.Null(interior.InFlight("/lus/a.so"));
        Assert.Equal(1, _up.Calls("fetch", "/lus/a.so"));

        // A leaf relays nothing and keeps nothing.
        Assert.Equal(0, (await _cache.OpenAsync("/lus/a.so", default)).Status);
        Assert.Null(_cache.InFlight("/lus/a.so"));
    }

    [Fact]
    public async Task AnInteriorNodeKeepsNoChunksOfATransferCutShort()
    {
        _up.Fetch = async (_, _, sink) =>
        {
            await sink.BeginAsync(File(32, 10, 1), 10, default);
            await sink.ChunkAsync("12345"u8.ToArray(), null, default);
            return new FetchAnswer(Protocol.StatusFallback, 0, default);
        };
        var interior = new NodeCache(_up, _counters, NullLogger.Instance, _mirror, maxBytes: 1 << 20) { Pipelines = true };
        Assert.Equal(Protocol.StatusFallback, (await interior.OpenAsync("/lus/h", default)).Status);
        Assert.Null(interior.InFlight("/lus/h"));
    }
}
