// File data travels the tree in chunks, LZ4-compressed once (where the file system is
// read) when that makes the chunk at least 1/16 smaller; interior nodes relay the
// encoded chunk as they received it.
using K4os.Compression.LZ4;

namespace Copper.Agent;

/// <summary>A chunk as it travels: the bytes on the wire, whether they are LZ4, and the raw length.</summary>
internal sealed record WireChunk(byte[] Wire, bool Compressed, int RawLength);

internal static class ChunkCodec
{
    /// <summary>Bytes per chunk read from the file system (and the largest raw chunk on the wire).</summary>
    public const int ChunkBytes = 1 << 20;

    public static WireChunk Encode(ReadOnlySpan<byte> raw)
    {
        if (raw.Length >= 256)
        {
            byte[] target = GC.AllocateUninitializedArray<byte>(LZ4Codec.MaximumOutputSize(raw.Length));
            int n = LZ4Codec.Encode(raw, target, LZ4Level.L00_FAST);
            if (n > 0 && n <= raw.Length - raw.Length / 16)
            {
                return new WireChunk(target.AsSpan(0, n).ToArray(), true, raw.Length);
            }
        }
        return new WireChunk(raw.ToArray(), false, raw.Length);
    }

    /// <summary>The raw bytes of <paramref name="chunk"/>; null when it does not decode to its stated length.</summary>
    public static byte[]? Decode(WireChunk chunk)
    {
        if (!chunk.Compressed)
        {
            return chunk.Wire.Length == chunk.RawLength ? chunk.Wire : null;
        }
        if (chunk.RawLength < 0 || chunk.RawLength > ChunkBytes)
        {
            return null;
        }
        byte[] raw = GC.AllocateUninitializedArray<byte>(chunk.RawLength);
        int n = LZ4Codec.Decode(chunk.Wire, raw);
        return n == chunk.RawLength ? raw : null;
    }
}
