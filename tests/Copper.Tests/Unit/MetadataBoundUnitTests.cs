// The metadata's bound (NodeCache.Metadata.cs) over an in-memory upstream: the count stays
// within the bound and what was used recently stays; an answer still being fetched is never
// evicted (its askers keep sharing one fetch); an evicted listing never makes a name in it
// absent; an evicted open takes its mirror copy with it and the file comes back right.
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

public sealed class MetadataBoundUnitTests : IDisposable
{
    private const int Bound = 64;

    private readonly string _mirror = Directory.CreateTempSubdirectory("copper-metabound-").FullName;
    private readonly Upstream _up = new();
    private readonly Counters _counters = new();

    public void Dispose()
    {
        using var rm = Process.Start("rm", ["-rf", "--", _mirror]);
        rm.WaitForExit();
    }

    private NodeCache NewCache(long budget = long.MaxValue) =>
        new(_up, _counters, NullLogger.Instance, _mirror, maxBytes: 1 << 20) { MaxMetaEntries = Bound, Budget = budget };

    private long Counter(string name) =>
        JsonDocument.Parse(_counters.ToJson(0)).RootElement.GetProperty(name).GetInt64();

    private static CopperStat File(ulong ino, long size) => new()
    {
        Dev = 0x801, Ino = ino, Nlink = 1, Mode = 0x81A4, Uid = 1000, Gid = 100, Size = size, Blksize = 4096, MtimeSec = 1000,
    };

    /// <summary>
    /// Files /d/f0../d/f29 in the directory /d, and /other/NNN for any NNN; everything else is
    /// absent. Each path's calls are counted; a path in <see cref="Gates"/> waits for its gate.
    /// </summary>
    private sealed class Upstream : IUpstream
    {
        public const int Names = 30;
        private readonly ConcurrentDictionary<string, int> _calls = new();

        public ConcurrentDictionary<string, Task> Gates { get; } = new();

        public int Calls(string op, string path) => _calls.GetValueOrDefault(op + " " + path);

        public static bool Exists(string path) =>
            path is "/d" || path.StartsWith("/other/", StringComparison.Ordinal)
            || (path.StartsWith("/d/f", StringComparison.Ordinal) && int.TryParse(path[4..], out int i) && i is >= 0 and < Names);

        private async Task Enter(string op, string path)
        {
            _calls.AddOrUpdate(op + " " + path, 1, (_, n) => n + 1);
            if (Gates.TryGetValue(path, out Task? gate))
            {
                await gate;
            }
        }

        public async ValueTask<StatAnswer> StatAsync(string path, bool follow, CancellationToken ct)
        {
            await Enter(follow ? "stat" : "lstat", path);
            return Exists(path) ? new StatAnswer(0, File((ulong)path.Length, 3)) : new StatAnswer(Libc.ENOENT, default);
        }

        public async ValueTask<LinkAnswer> ReadLinkAsync(string path, CancellationToken ct)
        {
            await Enter("readlink", path);
            return new LinkAnswer(Exists(path) ? Libc.EINVAL : Libc.ENOENT, []);
        }

        public async ValueTask<int> AccessAsync(string path, int mode, CancellationToken ct)
        {
            await Enter("access", path);
            return Exists(path) ? 0 : Libc.ENOENT;
        }

        public async ValueTask<DirAnswer> ListDirAsync(string path, CancellationToken ct)
        {
            await Enter("listdir", path);
            return path == "/d"
                ? new DirAnswer(0, Enumerable.Range(0, Names).Select(i => new DirEntry(Encoding.UTF8.GetBytes($"f{i}"), (ulong)i + 10, 8)).ToList())
                : new DirAnswer(Libc.ENOENT, []);
        }

        public async ValueTask<FetchAnswer> FetchAsync(string path, long maxBytes, IFetchSink sink, CancellationToken ct)
        {
            await Enter("fetch", path);
            if (!Exists(path))
            {
                return new FetchAnswer(Libc.ENOENT, 0, default);
            }
            byte[] bytes = Encoding.UTF8.GetBytes(path);
            await sink.BeginAsync(File(7, bytes.Length), bytes.Length, ct);
            await sink.ChunkAsync(bytes, null, ct);
            return new FetchAnswer(0, OpenKind.File, File(7, bytes.Length));
        }
    }

    [Theory]
    [InlineData(null, 1_000_000L)]
    [InlineData("16", 16L)]
    [InlineData("20000", 20_000L)]
    [InlineData("0", long.MaxValue)]
    [InlineData("15", null)]
    [InlineData("-1", null)]
    [InlineData("1e6", null)]
    [InlineData("", null)]
    public void TheBoundIsAnOption(string? value, long? expected)
    {
        string[] args = value == null ? ["--prefix", "/tmp/alice/copper"] : ["--prefix", "/tmp/alice/copper", "--max-meta-entries", value];
        AgentOptions? o = AgentOptions.Parse(args, out string error);
        if (expected == null)
        {
            Assert.Null(o);
            Assert.Contains("--max-meta-entries", error);
        }
        else
        {
            Assert.True(o != null, error);
            Assert.Equal(expected, o.MaxMetaEntries);
        }
    }

    [Fact]
    public void TheManifestRecordSaysOnceThatItIsFull()
    {
        int full = 0;
        var r = new ManifestRecorder(maxPaths: 3) { Full = () => full++ };
        for (int i = 0; i < 10; i++)
        {
            r.Record($"/p/{i}", Asked.Lstat, 2);
        }
        Assert.Equal(1, full);
        Assert.Equal(3, r.Count);
        Assert.Equal(7, r.Dropped);
    }

    [Fact]
    public async Task TheCountStaysWithinTheBoundAndWhatIsUsedStays()
    {
        NodeCache cache = NewCache();
        Assert.Equal(0, (await cache.StatAsync("/other/hot", false, default)).Status);
        for (int i = 0; i < 2000; i++)
        {
            Assert.Equal(0, (await cache.StatAsync($"/other/{i}", false, default)).Status);
            if (i % 4 == 0)
            {
                Assert.Equal(0, (await cache.StatAsync("/other/hot", false, default)).Status);
            }
            Assert.True(cache.MetaEntries <= Bound, $"{cache.MetaEntries} entries after {i + 2} paths");
        }
        Assert.True(Counter("meta_evicted") >= 2000 - Bound, $"evicted {Counter("meta_evicted")}");
        // Over only for a moment, by the answer that crossed the bound.
        Assert.Equal(Bound + 1, Counter("meta_high_water"));
        Assert.Equal(cache.MetaEntries, Counter("meta_entries"));
        Assert.Equal(Bound, Counter("meta_bound"));
        // Evicting at random would have dropped the path used every fourth request in some of
        // the ~100 sweeps; the least recently used go first (the very first sweep, before any
        // use was told apart, may take it once).
        Assert.True(_up.Calls("lstat", "/other/hot") <= 2, $"the path in use was asked {_up.Calls("lstat", "/other/hot")} times");
        // An evicted answer is asked again, and is right.
        Assert.Equal(0, (await cache.StatAsync("/other/0", false, default)).Status);
        Assert.Equal(2, _up.Calls("lstat", "/other/0"));
    }

    [Fact]
    public async Task AnAnswerInFlightIsNeverEvictedAndItsAskersShareOneFetch()
    {
        NodeCache cache = NewCache();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _up.Gates["/other/slow"] = gate.Task;
        Task<StatAnswer> first = cache.StatAsync("/other/slow", true, default);
        Task<OpenAnswer> firstOpen = cache.OpenAsync("/other/slow", default);
        for (int i = 0; i < 1000; i++)
        {
            await cache.StatAsync($"/other/{i}", true, default);
            await cache.AccessAsync($"/other/{i}", 4, default);
        }
        Assert.True(Counter("meta_evicted") > 1000, $"evicted {Counter("meta_evicted")}");
        Assert.False(first.IsCompleted);
        Task<StatAnswer> second = cache.StatAsync("/other/slow", true, default);
        Task<OpenAnswer> secondOpen = cache.OpenAsync("/other/slow", default);
        gate.SetResult();
        Assert.Equal(await first, await second);
        Assert.Same(await firstOpen, await secondOpen);
        Assert.Equal(1, _up.Calls("stat", "/other/slow"));
        Assert.Equal(1, _up.Calls("fetch", "/other/slow"));
        Assert.True(cache.MetaEntries <= Bound);
    }

    [Fact]
    public async Task AnEvictedListingNeverMakesANameInItAbsent()
    {
        NodeCache cache = NewCache();
        Assert.Equal(0, (await cache.ListDirAsync("/d", default)).Status);
        // The listing answers for names not in it without asking.
        Assert.Equal(Libc.ENOENT, (await cache.StatAsync("/d/nothere", false, default)).Status);
        Assert.Equal(0, _up.Calls("lstat", "/d/nothere"));
        Assert.Equal(1 + Upstream.Names, cache.MetaEntries);

        // Other paths push it out while, from other threads, names in it and not in it are asked
        // and the directory is listed again: no name in it is ever absent, no other one present.
        using var stop = new CancellationTokenSource();
        int wrong = 0, asked = 0;
        Task[] askers = Enumerable.Range(0, 3).Select(t => Task.Run(async () =>
        {
            for (int i = 0; !stop.IsCancellationRequested; i++)
            {
                string name = $"/d/f{i % Upstream.Names}";
                if ((await cache.StatAsync(name, false, default)).Status != 0
                    || (await cache.AccessAsync(name, 4, default)) != 0
                    || (await cache.StatAsync($"/d/g{i}", false, default)).Status != Libc.ENOENT)
                {
                    Interlocked.Increment(ref wrong);
                }
                if (i % 16 == t)
                {
                    await cache.ListDirAsync("/d", default);
                }
                Interlocked.Increment(ref asked);
            }
        })).ToArray();
        for (int i = 0; i < 3000; i++)
        {
            await cache.StatAsync($"/other/{i}", false, default);
        }
        stop.Cancel();
        await Task.WhenAll(askers);
        Assert.True(asked > 0);
        Assert.Equal(0, wrong);
        Assert.True(_up.Calls("listdir", "/d") >= 1);

        // Pushed out for sure now, with no one asking: its names are asked of the upstream.
        for (int i = 3000; i < 3200; i++)
        {
            await cache.StatAsync($"/other/{i}", false, default);
        }
        int before = _up.Calls("lstat", "/d/f7");
        Assert.Equal(0, (await cache.StatAsync("/d/f7", false, default)).Status);
        Assert.Equal(Libc.ENOENT, (await cache.StatAsync("/d/zz", false, default)).Status);
        Assert.Equal(1, _up.Calls("lstat", "/d/zz"));
        Assert.True(_up.Calls("lstat", "/d/f7") >= before);
        Assert.True(cache.MetaEntries <= Bound + Upstream.Names + 1);
    }

    [Fact]
    public async Task AnEvictedOpenTakesItsMirrorCopyWithItAndTheFileComesBackRight()
    {
        NodeCache cache = NewCache(budget: 1 << 20);
        OpenAnswer a = await cache.OpenAsync("/other/file", default);
        Assert.Equal(0, a.Status);
        string local = Encoding.UTF8.GetString(a.LocalPath);
        Assert.Equal("/other/file", System.IO.File.ReadAllText(local));
        Assert.Equal(4096, cache.MirrorBytes);
        for (int i = 0; i < 500; i++)
        {
            await cache.StatAsync($"/other/{i}", false, default);
        }
        Assert.False(System.IO.File.Exists(local));
        Assert.Equal(0, cache.MirrorBytes);
        Assert.True(Counter("evictions") >= 1);
        OpenAnswer again = await cache.OpenAsync("/other/file", default);
        Assert.Equal(0, again.Status);
        Assert.Equal("/other/file", System.IO.File.ReadAllText(local));
        Assert.Equal(2, _up.Calls("fetch", "/other/file"));
        Assert.Equal(4096, cache.MirrorBytes);
    }

    [Fact]
    public async Task AMirrorCopyInUseStaysWithItsAnswer()
    {
        NodeCache cache = NewCache(budget: 1 << 20);
        OpenAnswer a = await cache.OpenAsync("/other/held", default);
        string local = Encoding.UTF8.GetString(a.LocalPath);
        using (FileStream held = System.IO.File.OpenRead(local))
        {
            for (int i = 0; i < 500; i++)
            {
                await cache.StatAsync($"/other/{i}", false, default);
            }
            Assert.True(System.IO.File.Exists(local));
            Assert.Same(a, await cache.OpenAsync("/other/held", default));
        }
        Assert.Equal(1, _up.Calls("fetch", "/other/held"));
    }
}
