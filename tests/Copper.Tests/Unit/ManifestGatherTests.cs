// A tree root's record as `copper manifest save` gathers it (ManifestGather.cs): it crosses MPI
// with each path's first-use time and back exactly; a damaged one or another prefix's is
// refused; the roots' parts become one list in first-use order, each part's own order kept.
using Copper.Agent;
using Copper.Interop;
using Xunit;

namespace Copper.Tests.Unit;

public class ManifestGatherTests
{
    private static ManifestEntry E(string path) =>
        ManifestEntry.Of(path, Asked.Stat | Asked.Open, 0, new CopperStat { Mode = 0x81A4, Size = path.Length, Ino = (ulong)path.Length });

    [Fact]
    public void ARecordCrossesWithItsFirstUseTimesAndDamageIsRefused()
    {
        var r = new ManifestRecorder();
        r.Record("/lus/env/a.py", Asked.Stat, 0, new CopperStat { Mode = 0x81A4, Size = 3, Ino = 7 });
        r.Record("/lus/env/missing.py", Asked.Stat, 2);
        r.Record("/lus/env/a.py", Asked.Open, 0, new CopperStat { Mode = 0x81A4, Size = 3, Ino = 7 });
        List<(long FirstUse, ManifestEntry Entry)> record = r.SnapshotTimed();
        Assert.Equal(["/lus/env/a.py", "/lus/env/missing.py"], record.Select(x => x.Entry.Path));
        Assert.True(record[0].FirstUse <= record[1].FirstUse && record[0].FirstUse > 0);

        byte[] body = ManifestGather.Encode("/tmp/u/copper", record);
        List<(long FirstUse, ManifestEntry Entry)>? back = ManifestGather.TryDecode(body, "/tmp/u/copper", out string why);
        Assert.True(back != null, why);
        Assert.Equal(record, back);

        Assert.Null(ManifestGather.TryDecode(body, "/tmp/other/copper", out why));
        Assert.Equal("recorded for prefix /tmp/u/copper", why);
        Assert.Null(ManifestGather.TryDecode(body.AsSpan(0, body.Length - 8), "/tmp/u/copper", out why));
        Assert.Equal("first-use times do not match the entries", why);
        Assert.Null(ManifestGather.TryDecode(body.AsSpan(0, 30), "/tmp/u/copper", out why));
        Assert.Equal("truncated", why);
        body[4 + Manifest.HeadSize + 2] ^= 1; // a byte of the prefix
        Assert.Null(ManifestGather.TryDecode(body, "/tmp/u/copper", out why));
        Assert.Equal("corrupt (checksum mismatch)", why);
    }

    [Fact]
    public void TheRootsPartsInterleaveByFirstUseEachKeepingItsOrder()
    {
        var tree0 = new List<(long, ManifestEntry)> { (10, E("/a")), (30, E("/c")), (25, E("/d")) };
        var tree1 = new List<(long, ManifestEntry)> { (20, E("/b")), (40, E("/e")) };
        var empty = new List<(long, ManifestEntry)>();
        List<ManifestEntry> merged = ManifestGather.Interleave([tree0, empty, tree1]);
        // /d was recorded after /c by its root (a clock step back does not reorder one root's record).
        Assert.Equal(["/a", "/b", "/c", "/d", "/e"], merged.Select(e => e.Path));
    }
}
