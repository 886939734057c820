// The replay through a node's cache (Replayer) over a probe upstream: every question of the
// list is asked, metadata before files, flagged as a replay's (an application's never is);
// answers unlike the recorded identity count as changed, errors as vanished.
using System.Collections.Concurrent;
using Copper.Agent;
using Copper.Interop;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Copper.Tests.Unit;

public class ReplayerTests
{
    private sealed class Probe : IUpstream
    {
        public ConcurrentQueue<(string What, string Path, bool Replay)> Asked { get; } = new();

        public Dictionary<string, CopperStat> Now { get; } = [];

        private int Answer(string what, string path, out CopperStat st)
        {
            Asked.Enqueue((what, path, Replayer.InReplay));
            return Now.TryGetValue(path, out st) ? 0 : 2 /* ENOENT */;
        }

        public ValueTask<StatAnswer> StatAsync(string path, bool follow, CancellationToken ct) =>
            ValueTask.FromResult(new StatAnswer(Answer(follow ? "stat" : "lstat", path, out CopperStat st), st));

        public ValueTask<LinkAnswer> ReadLinkAsync(string path, CancellationToken ct) =>
            ValueTask.FromResult(new LinkAnswer(Answer("readlink", path, out _), []));

        public ValueTask<int> AccessAsync(string path, int mode, CancellationToken ct) =>
            ValueTask.FromResult(Answer("access" + mode, path, out _));

        public ValueTask<DirAnswer> ListDirAsync(string path, CancellationToken ct) =>
            ValueTask.FromResult(new DirAnswer(Answer("list", path, out _), []));

        public ValueTask<FetchAnswer> FetchAsync(string path, long maxBytes, IFetchSink sink, CancellationToken ct)
        {
            int status = Answer("open", path, out CopperStat st);
            // A directory: nothing to write into a mirror.
            return ValueTask.FromResult(new FetchAnswer(status, status == 0 ? OpenKind.Dir : 0, st));
        }
    }

    private static CopperStat St(long size) => new() { Dev = 1, Ino = 2, Mode = 0x41ED, Size = size, MtimeSec = 3 };

    [Fact]
    public async Task EveryQuestionIsAskedFlaggedAsAReplayMetadataBeforeFiles()
    {
        var probe = new Probe();
        probe.Now["/same"] = St(10);
        probe.Now["/changed"] = St(11);
        string mirror = Harness.TempDir("replayer");
        try
        {
            await Run(probe, new NodeCache(probe, new Counters(), NullLogger.Instance, mirror, 1 << 20));
        }
        finally
        {
            Directory.Delete(mirror, recursive: true);
        }
    }

    private static async Task Run(Probe probe, NodeCache cache)
    {
        await cache.StatAsync("/app", follow: true, CancellationToken.None);
        Assert.Equal([("stat", "/app", false)], probe.Asked);

        var recorded = new List<ManifestEntry>
        {
            ManifestEntry.Of("/same", Asked.Stat | Asked.Open, 0, St(10)),
            ManifestEntry.Of("/changed", Asked.Lstat | Asked.List, 0, St(10)),
            ManifestEntry.Of("/gone", Asked.ReadLink | Asked.Open, 0, St(5)),
            ManifestEntry.Of("/never", Asked.Stat | Asked.Access, 2, default) with { AccessModes = 1 << 4 },
        };
        var progress = new ReplayProgress();
        await new Replayer(cache, progress, 2).RunAsync(Replayer.ItemsOf(recorded, 100), recorded, null, CancellationToken.None);
        Assert.False(Replayer.InReplay);

        var replayed = probe.Asked.Skip(1).ToList();
        Assert.All(replayed, a => Assert.True(a.Replay, $"{a.What} {a.Path} was not flagged"));
        Assert.Equal(
            new[] { "stat /same", "open /same", "lstat /changed", "list /changed", "readlink /gone", "open /gone", "stat /never", "access4 /never" }.Order(),
            replayed.Select(a => $"{a.What} {a.Path}").Order());
        int lastMetadata = replayed.FindLastIndex(a => a.What != "open");
        int firstOpen = replayed.FindIndex(a => a.What == "open");
        Assert.True(lastMetadata < firstOpen, string.Join(", ", replayed));
        Assert.Equal("done", progress.State);
        Assert.Equal(4, progress.Done);
        Assert.Equal(1, progress.Changed);   // /changed: another size
        Assert.Equal(1, progress.Vanished);  // /gone: opened only, and now ENOENT
    }

    [Fact]
    public void AReplaysTreeRequestCarriesItsFlag()
    {
        byte[] m = TreeWire.Request(0, 5, new Request(Op.Stat, "/a/b"), TreeWire.FlagReplay);
        Assert.True(TreeWire.TryReadHead(m, out TreeHead h));
        Assert.Equal(TreeWire.FlagReplay, h.Flags);
        Assert.Equal(0, TreeWire.TryReadRequest(m, h, out Request r));
        Assert.Equal(new Request(Op.Stat, "/a/b"), r);
        Assert.True(TreeWire.TryReadHead(TreeWire.Request(0, 5, r), out TreeHead plain));
        Assert.Equal(0, plain.Flags);
    }
}
