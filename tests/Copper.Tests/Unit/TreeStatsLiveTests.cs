// The liveness frame of the job's counters (TreeStats' Live): a subtree is every rank below a
// node, in order; a frame groups the fresh ranks under one age and lists the others as ranges
// with their own, never fresher than the truth; it is read back to what was put in, and
// malformed frames are refused rather than misread.
using System.Buffers.Binary;
using Copper.Agent;
using Xunit;

namespace Copper.Tests.Unit;

public class TreeStatsLiveTests
{
    private static List<int> Closure(TreeTopology topo, int rank)
    {
        var all = new List<int> { rank };
        for (int i = 0; i < all.Count; i++)
        {
            all.AddRange(topo.Children(0, all[i]));
        }
        all.Sort();
        return all;
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(6, 0)]
    [InlineData(16, 0)]
    [InlineData(100, 3)]
    [InlineData(1000, 32)]
    [InlineData(10_624, 0)]
    public void ASubtreeIsEveryRankBelowInOrder(int size, int fanout)
    {
        var topo = new TreeTopology(size, trees: 1, fanout);
        foreach (int rank in new[] { 0, 1, size / 2, size - 1 }.Where(r => r < size).Distinct())
        {
            List<int> got = TreeStats.Subtree(topo, rank).ToList();
            Assert.Equal(rank, got[0]);
            Assert.Equal(got.Order(), got);
            Assert.Equal(Closure(topo, rank), got);
        }
    }

    private static (int Group, (int First, int End, int AgeMs)[] Ranges) Read(byte[] m, int size)
    {
        Assert.True(TreeWire.TryReadHead(m, out TreeHead head));
        Assert.Equal(TreeKind.Live, head.Kind);
        Assert.True(TreeStats.TryReadLive(head, m, size, out int group, out var ranges));
        return (group, ranges);
    }

    [Fact]
    public void AnIdleSubtreeIsOneSmallFrame()
    {
        byte[] m = TreeStats.LiveMessage(Enumerable.Range(40, 500).Select(r => (r, 2500 + r - 40)));
        Assert.Equal(TreeWire.HeadSize + 4, m.Length);
        (int group, var ranges) = Read(m, 1000);
        Assert.Equal(2999, group); // the oldest member's age
        Assert.Empty(ranges);
    }

    [Fact]
    public void StaleAndUnknownRanksAreRangesWithTheirOldestAge()
    {
        int stale = TreeStats.GroupAgeMs + 1;
        (int, int)[] subtree =
        [
            (1, 100), (3, 200),                         // fresh (not neighbours: ranks need not be consecutive)
            (4, stale), (5, stale + 700), (6, 9000),    // a dead run: one range, its oldest age
            (7, -1), (8, -1),                           // never heard from: a range of its own
            (9, 50),
            (12, stale + 5),                            // alone
        ];
        (int group, var ranges) = Read(TreeStats.LiveMessage(subtree), 16);
        Assert.Equal(200, group);
        Assert.Equal([(4, 7, 9000), (7, 9, -1), (12, 13, stale + 5)], ranges);
    }

    private static byte[] Frame(int group, params (int First, int Count, int Age)[] ranges)
    {
        byte[] m = TreeWire.Message(TreeKind.Live, 0, 0, 0, ranges.Length, 0, 4 + 12 * ranges.Length);
        BinaryPrimitives.WriteInt32LittleEndian(m.AsSpan(TreeWire.HeadSize), group);
        for (int i = 0; i < ranges.Length; i++)
        {
            Span<byte> r = m.AsSpan(TreeWire.HeadSize + 4 + 12 * i);
            BinaryPrimitives.WriteInt32LittleEndian(r, ranges[i].First);
            BinaryPrimitives.WriteInt32LittleEndian(r[4..], ranges[i].Count);
            BinaryPrimitives.WriteInt32LittleEndian(r[8..], ranges[i].Age);
        }
        return m;
    }

    private static bool Valid(byte[] m, int size = 100) =>
        TreeWire.TryReadHead(m, out TreeHead head) && TreeStats.TryReadLive(head, m, size, out _, out _);

    [Fact]
    public void MalformedFramesAreRefused()
    {
        Assert.True(Valid(Frame(0, (0, 100, 5))));
        Assert.True(Valid(Frame(10, (2, 3, -1), (5, 1, 0))));          // touching ranges are fine
        Assert.False(Valid(Frame(-1)));                                  // a negative age
        Assert.False(Valid(Frame(0, (5, 2, 0), (6, 1, 0))));             // overlapping
        Assert.False(Valid(Frame(0, (5, 1, 0), (2, 1, 0))));             // descending
        Assert.False(Valid(Frame(0, (5, 0, 0))));                        // empty
        Assert.False(Valid(Frame(0, (-1, 2, 0))));                       // below 0
        Assert.False(Valid(Frame(0, (99, 2, 0))));                       // past the last rank
        Assert.False(Valid(Frame(0, (1, int.MaxValue, 0))));             // would overflow
        Assert.False(Valid(Frame(0, (1, 1, -2))));                       // an age below "never"
        byte[] longer = Frame(0, (1, 1, 0));
        Assert.False(Valid([.. longer, 0]));                             // length and count disagree
        Assert.False(Valid(longer[..^1]));
        byte[] lying = Frame(0);
        BinaryPrimitives.WriteInt32LittleEndian(lying.AsSpan(12), -1);   // aux: a negative count
        Assert.False(Valid(lying));
        byte[] report = Frame(0);
        report[0] = (byte)TreeKind.Report;                               // not a Live frame
        Assert.False(Valid(report));
    }
}
