// File chunks on the tree (ChunkCodec): LZ4 only when it makes a chunk at least 1/16
// smaller, and every chunk decodes to exactly its bytes or is refused.
using Copper.Agent;
using K4os.Compression.LZ4;
using Xunit;

namespace Copper.Tests.Unit;

public class ChunkCodecTests
{
    private static byte[] Text(int length)
    {
        byte[] b = new byte[length];
        ReadOnlySpan<byte> line = "def f(x):\n    return x + 1\n"u8;
        for (int i = 0; i < length; i++)
        {
            b[i] = line[i % line.Length];
        }
        return b;
    }

    private static byte[] Noise(int length, int seed = 1)
    {
        byte[] b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Theory]
    [InlineData(256)]
    [InlineData(4096)]
    [InlineData(ChunkCodec.ChunkBytes)]
    public void ACompressibleChunkTravelsCompressedAndDecodesToItsBytes(int length)
    {
        byte[] raw = Text(length);
        WireChunk c = ChunkCodec.Encode(raw);
        Assert.True(c.Compressed);
        Assert.Equal(length, c.RawLength);
        Assert.True(c.Wire.Length <= length - length / 16);
        Assert.Equal(raw, ChunkCodec.Decode(c));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(4096)]
    [InlineData(ChunkCodec.ChunkBytes)]
    public void AnIncompressibleChunkTravelsAsItIs(int length)
    {
        byte[] raw = Noise(length);
        WireChunk c = ChunkCodec.Encode(raw);
        Assert.False(c.Compressed);
        Assert.Equal(raw, c.Wire);
        Assert.Equal(raw, ChunkCodec.Decode(c));
    }

    [Fact]
    public void AChunkUnder256BytesIsNeverCompressed()
    {
        byte[] zeros = new byte[255];
        Assert.True(LZ4Codec.Encode(zeros, new byte[LZ4Codec.MaximumOutputSize(255)]) < 255 / 2);
        WireChunk c = ChunkCodec.Encode(zeros);
        Assert.False(c.Compressed);
        Assert.Equal(zeros, ChunkCodec.Decode(c));
    }

    [Fact]
    public void CompressionIsUsedExactlyWhenItSavesAtLeastASixteenth()
    {
        // Random bytes then a run of zeros: the longer the run, the more LZ4 saves. Walk the run
        // across the threshold and check the codec's choice against LZ4's own output size.
        const int Length = 4096;
        int threshold = Length - Length / 16;
        bool sawSmallSaving = false, sawEnoughSaving = false;
        for (int zeros = 0; zeros <= 1024; zeros += 4)
        {
            byte[] raw = Noise(Length, seed: 3);
            Array.Clear(raw, Length - zeros, zeros);
            int n = LZ4Codec.Encode(raw, new byte[LZ4Codec.MaximumOutputSize(Length)], LZ4Level.L00_FAST);
            WireChunk c = ChunkCodec.Encode(raw);
            Assert.Equal(n <= threshold, c.Compressed);
            Assert.Equal(raw, ChunkCodec.Decode(c));
            sawSmallSaving |= n < Length && n > threshold;
            sawEnoughSaving |= n <= threshold;
        }
        Assert.True(sawSmallSaving, "no chunk that LZ4 shrinks by less than 1/16");
        Assert.True(sawEnoughSaving, "no chunk that LZ4 shrinks by 1/16 or more");
    }

    [Fact]
    public void AChunkThatDoesNotDecodeToItsStatedLengthIsRefused()
    {
        byte[] raw = Text(8192);
        WireChunk c = ChunkCodec.Encode(raw);
        Assert.True(c.Compressed);
        Assert.Null(ChunkCodec.Decode(c with { RawLength = raw.Length + 1 }));
        Assert.Null(ChunkCodec.Decode(c with { RawLength = raw.Length - 1 }));
        Assert.Null(ChunkCodec.Decode(c with { RawLength = -1 }));
        Assert.Null(ChunkCodec.Decode(c with { RawLength = ChunkCodec.ChunkBytes + 1 }));
        Assert.Null(ChunkCodec.Decode(c with { Wire = c.Wire.AsSpan(0, c.Wire.Length / 2).ToArray() }));

        WireChunk plain = ChunkCodec.Encode(Noise(100));
        Assert.Null(ChunkCodec.Decode(plain with { RawLength = 99 }));
        Assert.Null(ChunkCodec.Decode(plain with { RawLength = 101 }));
    }
}
