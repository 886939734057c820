// The messages between agents (TreeWire): every kind built is parsed back to what was put
// in, names that are not UTF-8 cross as their bytes, and malformed or truncated messages
// are refused rather than misread.
using System.Buffers.Binary;
using System.Text;
using Copper.Agent;
using Copper.Interop;
using Xunit;

namespace Copper.Tests.Unit;

public class TreeWireTests
{
    private static CopperStat SampleStat(long size = 12345) => new()
    {
        Dev = 0x801, Ino = 0x1234_5678_9abc, Nlink = 1, Mode = 0x81ED, Uid = 1000, Gid = 100, Rdev = 0,
        Size = size, Blksize = 4096, Blocks = 32, AtimeSec = 1_700_000_001, AtimeNsec = 2,
        MtimeSec = 1_700_000_003, MtimeNsec = 4, CtimeSec = 1_700_000_005, CtimeNsec = 999_999_999,
    };

    private static TreeHead Head(byte[] m)
    {
        Assert.True(TreeWire.TryReadHead(m, out TreeHead h));
        return h;
    }

    public static TheoryData<string> Paths => new()
    {
        "/",
        "/lus/proj/env/lib/python3.11/site-packages/numpy/__init__.py",
        "/données/日本語/🐍.py",
        PathBytes.Decode([.. "/lus/caf"u8, 0xE9, .. "/x"u8]),   // a Latin-1 name
        PathBytes.Decode([.. "/lus/"u8, 0xFF]),                  // a lone 0xFF
        PathBytes.Decode([.. "/lus/"u8, 0xED, 0xB2, 0x80]),      // the UTF-8 form of a surrogate: not UTF-8
        "/lus/\U00010080",                                       // low surrogate U+DC80 inside a valid pair
        "/" + new string('a', Protocol.MaxPath - 1),
    };

    [Theory]
    [MemberData(nameof(Paths), DisableDiscoveryEnumeration = true)] // lone surrogates do not survive the serialization of discovered cases
    public void ARequestCarriesItsOpTreeIdArgumentAndPathBytes(string path)
    {
        byte[] m = TreeWire.Request(TreeOp.Fetch, 3, 0xDEAD_BEEF_0000_0042ul, 10L << 30, path);
        TreeHead h = Head(m);
        Assert.Equal(new TreeHead(TreeKind.Request, TreeOp.Fetch, 0, 3, 0, 0, 0xDEAD_BEEF_0000_0042ul), h);
        Assert.Equal(PathBytes.Encode(path), m.AsSpan(TreeWire.HeadSize + 8).ToArray());
        Assert.True(TreeWire.TryReadRequest(m, out long arg, out string back));
        Assert.Equal(10L << 30, arg);
        Assert.Equal(path, back);
    }

    [Fact]
    public void ANameThatIsNotUtf8CrossesAsItsOwnBytes()
    {
        byte[] raw = [.. "/lus/caf"u8, 0xE9, 0xFF, .. "/\u00e9"u8];
        byte[] m = TreeWire.Request(TreeOp.Lstat, 0, 1, 0, PathBytes.Decode(raw));
        Assert.Equal(raw, m.AsSpan(TreeWire.HeadSize + 8).ToArray());
        Assert.True(TreeWire.TryReadRequest(m, out _, out string path));
        Assert.Equal(raw, PathBytes.Encode(path));
        // Two names that differ only in a byte that is not UTF-8 stay two names.
        byte[] other = [.. "/lus/caf"u8, 0xE8, 0xFF, .. "/\u00e9"u8];
        Assert.NotEqual(path, PathBytes.Decode(other));
    }

    [Fact]
    public void TheHeadIsLittleEndianAtItsDrawnOffsets()
    {
        byte[] m = TreeWire.Message(TreeKind.Reply, TreeOp.ReadLink, 0x0102, -1, 0x0A0B0C0D, 0x1122334455667788ul, 5, flags: 1);
        Assert.Equal(TreeWire.HeadSize + 5, m.Length);
        Assert.Equal(
            new byte[] { 2, 3, 1, 0, 0x02, 0x01, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0D, 0x0C, 0x0B, 0x0A, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11 },
            m.AsSpan(0, TreeWire.HeadSize).ToArray());
        Assert.Equal(new TreeHead(TreeKind.Reply, TreeOp.ReadLink, 1, 0x0102, -1, 0x0A0B0C0D, 0x1122334455667788ul), Head(m));
    }

    [Theory]
    [InlineData((int)TreeKind.Alive, 0, 0)]
    [InlineData((int)TreeKind.Join, 2, 0)]
    [InlineData((int)TreeKind.JoinAck, 65535, 0)]
    [InlineData((int)TreeKind.Subtree, 0, 10_624)]
    [InlineData((int)TreeKind.Shutdown, 1, 0)]
    public void ControlMessagesAreAHeadOnly(int kindByte, int tree, int aux)
    {
        var kind = (TreeKind)kindByte;
        byte[] m = TreeWire.Control(kind, tree, aux);
        Assert.Equal(TreeWire.HeadSize, m.Length);
        Assert.Equal(new TreeHead(kind, TreeOp.None, 0, tree, 0, aux, 0), Head(m));
    }

    [Theory]
    [InlineData((int)TreeOp.Stat, 0)]
    [InlineData((int)TreeOp.Lstat, 2)]          // ENOENT is an answer like any other
    [InlineData((int)TreeOp.Stat, Protocol.StatusFallback)]
    public void AStatReplyRoundTrips(int opByte, int status)
    {
        var op = (TreeOp)opByte;
        CopperStat st = SampleStat();
        byte[] m = TreeWire.StatReply(op, 77, new StatAnswer(status, st));
        Assert.Equal(TreeWire.HeadSize + TreeWire.StatSize, m.Length);
        Assert.Equal(new TreeHead(TreeKind.Reply, op, 0, 0, status, 0, 77), Head(m));
        Assert.Equal(st, TreeWire.ReadStat(m.AsSpan(TreeWire.HeadSize)));
    }

    [Fact]
    public void AShortStatBodyReadsAsNoStat()
    {
        byte[] m = TreeWire.StatReply(TreeOp.Stat, 1, new StatAnswer(0, SampleStat()));
        Assert.Equal(default, TreeWire.ReadStat(m.AsSpan(TreeWire.HeadSize, TreeWire.StatSize - 1)));
    }

    [Fact]
    public void ALinkReplyCarriesTheTargetBytesAndAnAccessReplyOnlyAStatus()
    {
        byte[] target = [.. "../lib/caf"u8, 0xE9, .. ".so.1"u8];
        byte[] link = TreeWire.BytesReply(TreeOp.ReadLink, 9, 0, target);
        Assert.Equal(new TreeHead(TreeKind.Reply, TreeOp.ReadLink, 0, 0, 0, 0, 9), Head(link));
        Assert.Equal(target, link.AsSpan(TreeWire.HeadSize).ToArray());

        byte[] access = TreeWire.BytesReply(TreeOp.Access, 10, 13 /* EACCES */, []);
        Assert.Equal(TreeWire.HeadSize, access.Length);
        Assert.Equal(13, Head(access).Status);
    }

    private static readonly DirEntry[] Entries =
    [
        new("numpy"u8.ToArray(), 11, 4),
        new("__init__.py"u8.ToArray(), 12, 8),
        new([.. "caf"u8, 0xE9], ulong.MaxValue, 10),
        new(Encoding.UTF8.GetBytes("日本語"), 0, 0),
        new(Enumerable.Repeat((byte)'x', 255).ToArray(), 14, 8),
    ];

    private static void AssertSameEntries(IReadOnlyList<DirEntry> expected, IReadOnlyList<DirEntry> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Name, actual[i].Name);
            Assert.Equal(expected[i].Ino, actual[i].Ino);
            Assert.Equal(expected[i].Type, actual[i].Type);
        }
    }

    [Fact]
    public void AListingRoundTripsWithItsEntryCountInAux()
    {
        byte[] m = TreeWire.DirReply(5, new DirAnswer(0, Entries));
        TreeHead h = Head(m);
        Assert.Equal(new TreeHead(TreeKind.Reply, TreeOp.ListDir, 0, 0, 0, Entries.Length, 5), h);
        List<DirEntry>? back = TreeWire.ReadDir(m.AsSpan(TreeWire.HeadSize), h.Aux);
        Assert.NotNull(back);
        AssertSameEntries(Entries, back);
    }

    [Fact]
    public void AnEmptyOrFailedListingRoundTrips()
    {
        byte[] empty = TreeWire.DirReply(6, new DirAnswer(0, []));
        Assert.Equal(TreeWire.HeadSize, empty.Length);
        Assert.Empty(TreeWire.ReadDir([], Head(empty).Aux)!);

        byte[] failed = TreeWire.DirReply(7, new DirAnswer(20 /* ENOTDIR */, []));
        Assert.Equal(20, Head(failed).Status);
    }

    [Fact]
    public void AMalformedListingIsRefused()
    {
        byte[] m = TreeWire.DirReply(5, new DirAnswer(0, Entries));
        byte[] body = m.AsSpan(TreeWire.HeadSize).ToArray();
        Assert.Null(TreeWire.ReadDir(body.AsSpan(0, body.Length - 1), Entries.Length));   // last name cut
        Assert.Null(TreeWire.ReadDir(body.AsSpan(0, 11), 1));                              // entry head cut
        Assert.Null(TreeWire.ReadDir(body, Entries.Length - 1));                           // count disagrees
        Assert.Null(TreeWire.ReadDir(body, Entries.Length + 1));
        byte[] emptyName = new byte[12];
        Assert.Null(TreeWire.ReadDir(emptyName, 1));
        byte[] longName = new byte[12 + 4];
        BinaryPrimitives.WriteUInt16LittleEndian(longName.AsSpan(10), 5);                  // says 5, has 4
        Assert.Null(TreeWire.ReadDir(longName, 1));
    }

    [Theory]
    [InlineData(0, OpenKind.File, 5L << 30)]
    [InlineData(0, OpenKind.Dir, 0)]
    [InlineData(Protocol.StatusTooBig, (OpenKind)0, 0)]
    [InlineData(13, (OpenKind)0, 0)]
    public void AFetchReplyRoundTrips(int status, OpenKind kind, long size)
    {
        CopperStat st = SampleStat(size);
        byte[] m = TreeWire.FetchReply(42, status, kind, st, size);
        Assert.Equal(new TreeHead(TreeKind.Reply, TreeOp.Fetch, 0, 0, status, 0, 42), Head(m));
        Assert.True(TreeWire.TryReadFetchReply(m.AsSpan(TreeWire.HeadSize), out OpenKind k, out long n, out CopperStat back));
        Assert.Equal(kind, k);
        Assert.Equal(size, n);
        Assert.Equal(st, back);
    }

    [Fact]
    public void ATruncatedFetchReplyOrANegativeSizeIsRefused()
    {
        byte[] m = TreeWire.FetchReply(42, 0, OpenKind.File, SampleStat(), 100);
        Assert.False(TreeWire.TryReadFetchReply(m.AsSpan(TreeWire.HeadSize, 16 + TreeWire.StatSize - 1), out _, out _, out _));
        byte[] negative = TreeWire.FetchReply(42, 0, OpenKind.File, SampleStat(), -1);
        Assert.False(TreeWire.TryReadFetchReply(negative.AsSpan(TreeWire.HeadSize), out _, out _, out _));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AChunkRoundTripsWithItsIndexAndCompressionFlag(bool compressible)
    {
        byte[] raw = new byte[100_000];
        if (compressible)
        {
            for (int i = 0; i < raw.Length; i++)
            {
                raw[i] = (byte)"import numpy as np\n"[i % 19];
            }
        }
        else
        {
            new Random(7).NextBytes(raw);
        }
        WireChunk c = ChunkCodec.Encode(raw);
        Assert.Equal(compressible, c.Compressed);

        byte[] m = TreeWire.Chunk(99, 17, c);
        TreeHead h = Head(m);
        Assert.Equal(new TreeHead(TreeKind.Chunk, TreeOp.Fetch, compressible ? (byte)1 : (byte)0, 0, 0, 17, 99), h);
        WireChunk? back = TreeWire.ReadChunk(h, m.AsSpan(TreeWire.HeadSize));
        Assert.NotNull(back);
        Assert.Equal(c.Compressed, back.Compressed);
        Assert.Equal(raw.Length, back.RawLength);
        Assert.Equal(c.Wire, back.Wire);
        Assert.Equal(raw, ChunkCodec.Decode(back));
    }

    [Fact]
    public void AnEmptyChunkRoundTrips()
    {
        byte[] m = TreeWire.Chunk(1, 0, ChunkCodec.Encode([]));
        WireChunk? back = TreeWire.ReadChunk(Head(m), m.AsSpan(TreeWire.HeadSize));
        Assert.NotNull(back);
        Assert.Equal([], ChunkCodec.Decode(back)!);
    }

    [Fact]
    public void AChunkWithoutItsLengthOrWithANegativeLengthIsRefused()
    {
        byte[] m = TreeWire.Chunk(1, 0, ChunkCodec.Encode("abc"u8));
        TreeHead h = Head(m);
        Assert.Null(TreeWire.ReadChunk(h, m.AsSpan(TreeWire.HeadSize, 3)));
        BinaryPrimitives.WriteInt32LittleEndian(m.AsSpan(TreeWire.HeadSize), -1);
        Assert.Null(TreeWire.ReadChunk(h, m.AsSpan(TreeWire.HeadSize)));
    }

    [Fact]
    public void AnAbortedTransferSaysWhyAndNeverSaysSuccess()
    {
        byte[] m = TreeWire.ChunkAbort(8, 3, 5 /* EIO */);
        Assert.Equal(new TreeHead(TreeKind.Chunk, TreeOp.Fetch, 0, 0, 5, 3, 8), Head(m));
        Assert.Equal(TreeWire.HeadSize, m.Length);
        Assert.Equal(Protocol.StatusFallback, Head(TreeWire.ChunkAbort(8, 3, 0)).Status);
    }

    [Fact]
    public void AHeadThatIsShortOrOfAnUnknownKindIsRefused()
    {
        byte[] m = TreeWire.Control(TreeKind.Alive, 0);
        Assert.False(TreeWire.TryReadHead(m.AsSpan(0, TreeWire.HeadSize - 1), out _));
        Assert.False(TreeWire.TryReadHead([], out _));
        m[0] = 0;
        Assert.False(TreeWire.TryReadHead(m, out _));
        m[0] = (byte)TreeKind.Shutdown + 1;
        Assert.False(TreeWire.TryReadHead(m, out _));
        m[0] = 0xFF;
        Assert.False(TreeWire.TryReadHead(m, out _));
    }

    [Fact]
    public void AMalformedRequestIsRefused()
    {
        byte[] good = TreeWire.Request(TreeOp.Stat, 0, 1, 0, "/a");
        Assert.True(TreeWire.TryReadRequest(good, out _, out _));

        Assert.False(TreeWire.TryReadRequest(good.AsSpan(0, TreeWire.HeadSize + 8), out _, out _));      // no path
        Assert.False(TreeWire.TryReadRequest(good.AsSpan(0, TreeWire.HeadSize + 4), out _, out _));      // argument cut
        Assert.False(TreeWire.TryReadRequest(TreeWire.Request(TreeOp.Stat, 0, 1, 0, "a/b"), out _, out _));
        Assert.False(TreeWire.TryReadRequest(TreeWire.Request(TreeOp.Stat, 0, 1, 0, "/a\0b"), out _, out _));
        Assert.False(TreeWire.TryReadRequest(TreeWire.Request(TreeOp.Stat, 0, 1, 0, "/" + new string('a', Protocol.MaxPath)), out _, out _));
    }
}
