// The shape of the agents' trees. Agent ranks 0..N-1 sit at positions 0..N-1 of a
// k-ary tree (position 0 is the root; the children of p are k*p+1 .. k*p+k). With T
// trees, tree t rotates the ranks by t*N/T, so each tree has another root and other
// interior nodes, and a path's tree is FNV-1a(path) mod T: every path is read from the
// file system by exactly one root.
using System.Text;
using Copper.Interop;

namespace Copper.Agent;

internal sealed class TreeTopology
{
    public TreeTopology(int size, int trees, int fanout)
    {
        if (size < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(size));
        }
        Size = size;
        Trees = Math.Clamp(trees, 1, size);
        Fanout = fanout > 0 ? Math.Max(2, fanout) : DefaultFanout(size);
    }

    public int Size { get; }

    public int Trees { get; }

    public int Fanout { get; }

    /// <summary>Fan-out for <paramref name="size"/> nodes: about the cube root, so depth stays near 3 (2..32).</summary>
    public static int DefaultFanout(int size) => Math.Clamp((int)Math.Ceiling(Math.Cbrt(size) - 1e-9), 2, 32);

    private int Offset(int tree) => (int)((long)tree * Size / Trees);

    public int RankAt(int tree, int position) => (position + Offset(tree)) % Size;

    public int PositionOf(int tree, int rank) => ((rank - Offset(tree)) % Size + Size) % Size;

    public int Root(int tree) => RankAt(tree, 0);

    /// <summary>The parent rank of <paramref name="rank"/> in <paramref name="tree"/>, or -1 for the root.</summary>
    public int Parent(int tree, int rank)
    {
        int p = PositionOf(tree, rank);
        return p == 0 ? -1 : RankAt(tree, (p - 1) / Fanout);
    }

    public IEnumerable<int> Children(int tree, int rank)
    {
        long first = (long)PositionOf(tree, rank) * Fanout + 1;
        for (long c = first; c < first + Fanout && c < Size; c++)
        {
            yield return RankAt(tree, (int)c);
        }
    }

    public int TreeOf(string path) => Trees == 1 ? 0 : (int)(Protocol.Fnv1a64(path) % (ulong)Trees);

    public string Describe(int rank)
    {
        var sb = new StringBuilder();
        for (int t = 0; t < Trees; t++)
        {
            sb.Append(t == 0 ? "" : "; ").Append("tree ").Append(t).Append(": parent ").Append(Parent(t, rank))
              .Append(", children [").Append(string.Join(',', Children(t, rank))).Append(']');
        }
        return sb.ToString();
    }
}
