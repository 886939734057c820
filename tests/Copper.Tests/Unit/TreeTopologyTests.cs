// The shape of the agents' trees (TreeTopology): who is whose parent and child, how T trees
// rotate the ranks, and how deep the default fan-out keeps a tree at Aurora's scale.
using Copper.Agent;
using Copper.Interop;
using Xunit;

namespace Copper.Tests.Unit;

public class TreeTopologyTests
{
    /// <summary>Levels below the root of the deepest rank, found by walking parents.</summary>
    private static int MaxDepth(TreeTopology topo, int tree)
    {
        int max = 0;
        for (int rank = 0; rank < topo.Size; rank++)
        {
            int d = 0;
            for (int r = rank; topo.Parent(tree, r) is int p and >= 0; r = p)
            {
                d++;
                Assert.True(d <= topo.Size, "a parent chain that never reaches the root");
            }
            max = Math.Max(max, d);
        }
        return max;
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(2, 2)]
    [InlineData(8, 2)]
    [InlineData(9, 3)]
    [InlineData(27, 3)]
    [InlineData(28, 4)]
    [InlineData(1000, 10)]
    [InlineData(10_624, 22)]
    [InlineData(32_768, 32)]
    [InlineData(1_000_000, 32)]
    public void DefaultFanoutIsAboutTheCubeRootWithin2To32(int size, int fanout)
    {
        Assert.Equal(fanout, TreeTopology.DefaultFanout(size));
        Assert.Equal(fanout, new TreeTopology(size, 1, 0).Fanout);
    }

    [Fact]
    public void AuroraWithTheDefaultFanoutIsThreeLevelsDeepInEveryTree()
    {
        var topo = new TreeTopology(10_624, 4, 0);
        Assert.Equal(22, topo.Fanout);
        for (int t = 0; t < topo.Trees; t++)
        {
            Assert.Equal(3, MaxDepth(topo, t));
        }
    }

    [Theory]
    [InlineData(10_624, 2, 13)]
    [InlineData(10_624, 1024, 2)]
    [InlineData(1000, 10, 3)]
    [InlineData(1000, 9, 4)]
    public void AnExplicitFanoutIsUsedAsGiven(int size, int fanout, int depth)
    {
        var topo = new TreeTopology(size, 1, fanout);
        Assert.Equal(fanout, topo.Fanout);
        Assert.Equal(depth, MaxDepth(topo, 0));
    }

    [Fact]
    public void AFanoutOfOneBecomesTwo()
    {
        Assert.Equal(2, new TreeTopology(100, 1, 1).Fanout);
    }

    [Fact]
    public void ChildrenOfPositionPAreKTimesPPlusOneToKTimesPPlusK()
    {
        var topo = new TreeTopology(10, 1, 3);
        Assert.Equal([1, 2, 3], topo.Children(0, 0));
        Assert.Equal([4, 5, 6], topo.Children(0, 1));
        Assert.Equal([7, 8, 9], topo.Children(0, 2));
        Assert.Empty(topo.Children(0, 3));
        Assert.Equal(-1, topo.Parent(0, 0));
        Assert.Equal(0, topo.Parent(0, 3));
        Assert.Equal(2, topo.Parent(0, 9));
    }

    [Fact]
    public void TreeTRotatesTheRanksByTTimesNOverT()
    {
        var topo = new TreeTopology(10, 2, 3);
        // Tree 1 starts at rank 5: positions 0..9 are ranks 5..9, 0..4.
        Assert.Equal(5, topo.Root(1));
        Assert.Equal(-1, topo.Parent(1, 5));
        Assert.Equal([6, 7, 8], topo.Children(1, 5));
        Assert.Equal([9, 0, 1], topo.Children(1, 6));
        Assert.Equal(6, topo.Parent(1, 0));
        Assert.Equal(7, topo.Parent(1, 4));
        Assert.Equal(0, topo.Root(0));
        Assert.Equal(0, topo.Parent(0, 1));
    }

    [Fact]
    public void OneNodeIsARootWithoutChildren()
    {
        var topo = new TreeTopology(1, 4, 0);
        Assert.Equal(1, topo.Trees);
        Assert.Equal(0, topo.Root(0));
        Assert.Equal(-1, topo.Parent(0, 0));
        Assert.Empty(topo.Children(0, 0));
        Assert.Equal(0, topo.TreeOf("/lus/a.py"));
    }

    [Fact]
    public void TwoNodesAreARootAndItsChildInEachTree()
    {
        var one = new TreeTopology(2, 1, 0);
        Assert.Equal(-1, one.Parent(0, 0));
        Assert.Equal(0, one.Parent(0, 1));
        Assert.Equal([1], one.Children(0, 0));
        Assert.Empty(one.Children(0, 1));

        var two = new TreeTopology(2, 2, 0);
        Assert.Equal(0, two.Root(0));
        Assert.Equal(1, two.Root(1));
        Assert.Equal(1, two.Parent(1, 0));
        Assert.Equal([0], two.Children(1, 1));
    }

    [Fact]
    public void MoreTreesThanNodesAreClampedToTheNodeCount()
    {
        var topo = new TreeTopology(3, 10, 0);
        Assert.Equal(3, topo.Trees);
        Assert.Equal([0, 1, 2], Enumerable.Range(0, 3).Select(topo.Root));
    }

    [Fact]
    public void NoNodesIsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TreeTopology(0, 1, 0));
    }

    [Theory]
    [InlineData(1, 1, 0)]
    [InlineData(2, 2, 0)]
    [InlineData(3, 2, 2)]
    [InlineData(7, 3, 2)]
    [InlineData(100, 1, 0)]
    [InlineData(100, 4, 3)]
    [InlineData(1000, 5, 7)]
    [InlineData(10_624, 4, 0)]
    public void EveryRankIsReachedExactlyOncePerTree(int size, int trees, int fanout)
    {
        var topo = new TreeTopology(size, trees, fanout);
        for (int t = 0; t < topo.Trees; t++)
        {
            var seen = new bool[size];
            var queue = new Queue<int>([topo.Root(t)]);
            int reached = 0;
            while (queue.TryDequeue(out int rank))
            {
                Assert.False(seen[rank], $"rank {rank} reached twice in tree {t}");
                seen[rank] = true;
                reached++;
                foreach (int child in topo.Children(t, rank))
                {
                    Assert.Equal(rank, topo.Parent(t, child));
                    queue.Enqueue(child);
                }
            }
            Assert.Equal(size, reached);
            Assert.Equal(1, Enumerable.Range(0, size).Count(r => topo.Parent(t, r) == -1));
        }
    }

    [Fact]
    public void AtAuroraScaleTheTreesHaveDistinctRootsAndDisjointInteriors()
    {
        var topo = new TreeTopology(10_624, 4, 0);
        var interiors = new List<HashSet<int>>();
        for (int t = 0; t < topo.Trees; t++)
        {
            interiors.Add(Enumerable.Range(0, topo.Size).Where(r => topo.Children(t, r).Any()).ToHashSet());
            Assert.Contains(topo.Root(t), interiors[t]);
        }
        Assert.Equal(4, Enumerable.Range(0, 4).Select(topo.Root).Distinct().Count());
        for (int a = 0; a < interiors.Count; a++)
        {
            for (int b = a + 1; b < interiors.Count; b++)
            {
                Assert.Empty(interiors[a].Intersect(interiors[b]));
            }
        }
    }

    [Fact]
    public void APathBelongsToTheTreeItsFnv1aHashNamesAndTheTreesShareThePaths()
    {
        var topo = new TreeTopology(64, 4, 0);
        var used = new int[4];
        for (int i = 0; i < 400; i++)
        {
            string path = $"/lus/proj/env/lib/python3.11/site-packages/m{i}.py";
            int tree = topo.TreeOf(path);
            Assert.Equal((int)(Protocol.Fnv1a64(path) % 4), tree);
            Assert.Equal(tree, topo.TreeOf(path));
            used[tree]++;
        }
        Assert.All(used, n => Assert.InRange(n, 50, 150));
        Assert.Equal(0, new TreeTopology(64, 1, 0).TreeOf("/lus/proj/env/lib/python3.11/site-packages/m1.py"));
    }
}
