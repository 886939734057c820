// Names as bytes (PathBytes): valid UTF-8 decodes as usual, every other byte becomes the
// lone surrogate U+DC00 + byte, and Encode gives back exactly the bytes decoded.
using System.Runtime.InteropServices;
using System.Text;
using Copper.Agent;
using Xunit;

namespace Copper.Tests.Unit;

public class PathBytesTests
{
    public static TheoryData<byte[], string> Names => new()
    {
        { "/lus/proj/numpy/__init__.py"u8.ToArray(), "/lus/proj/numpy/__init__.py" },
        { Encoding.UTF8.GetBytes("/données/日本語/🐍.py"), "/données/日本語/🐍.py" },
        { [.. "/caf"u8, 0xE9], "/caf\uDCE9" },                                   // Latin-1 é
        { [0xFF], "\uDCFF" },                                                     // a lone 0xFF
        { [0x80], "\uDC80" },
        { [0xC3, 0xA9, 0xFF, 0xE2, 0x82], "é\uDCFF\uDCE2\uDC82" },                 // a cut 3-byte sequence
        { [0xED, 0xB2, 0x80], "\uDCED\uDCB2\uDC80" },                             // the UTF-8 form of U+DC80: not UTF-8
        { [0xC0, 0xAF], "\uDCC0\uDCAF" },                                         // an overlong '/'
        { [0xF0, 0x90, 0x82, 0x80], "\U00010080" },                               // U+10080: its low surrogate is U+DC80
        { [0xF0, 0x90, 0x82, 0x80, 0xFF], "\U00010080\uDCFF" },
        { [], "" },
    };

    [Theory]
    [MemberData(nameof(Names), DisableDiscoveryEnumeration = true)] // lone surrogates do not survive the serialization of discovered cases
    public void DecodeAndEncodeAreInverses(byte[] bytes, string text)
    {
        Assert.Equal(text, PathBytes.Decode(bytes));
        Assert.Equal(bytes, PathBytes.Encode(text));
        Assert.Equal(bytes.Length, PathBytes.ByteCount(text));
    }

    [Fact]
    public void APairWhoseLowSurrogateLiesInTheEscapeRangeIsOneCharacterNotAByte()
    {
        Assert.Equal(new byte[] { 0xF0, 0x90, 0x82, 0x80 }, PathBytes.Encode("\U00010080"));
        Assert.Equal(new byte[] { 0xF0, 0x90, 0x83, 0xBF }, PathBytes.Encode("\U000100FF"));
        Assert.Equal(4, PathBytes.ByteCount("\U00010080"));
    }

    [Fact]
    public void AnEscapedByteCountsAsOneByte()
    {
        // Encoding.UTF8 would count a lone surrogate as the 3 bytes of U+FFFD.
        Assert.Equal(4, PathBytes.ByteCount("caf\uDCE9"));
        Assert.Equal(256, PathBytes.ByteCount(string.Concat(Enumerable.Repeat("\uDCFF", 256))));
        Assert.Equal(256, PathBytes.ByteCount(string.Concat(Enumerable.Repeat("é", 128))));
    }

    [Fact]
    public void EverySingleByteAndEveryPairOfBytesRoundTrips()
    {
        byte[] pair = new byte[2];
        for (int a = 0; a < 256; a++)
        {
            byte[] one = [(byte)a];
            Assert.Equal(one, PathBytes.Encode(PathBytes.Decode(one)));
            for (int b = 0; b < 256; b++)
            {
                pair[0] = (byte)a;
                pair[1] = (byte)b;
                string s = PathBytes.Decode(pair);
                Assert.Equal(pair, PathBytes.Encode(s));
                Assert.Equal(2, PathBytes.ByteCount(s));
            }
        }
    }

    [Fact]
    public void DistinctBytesNeverDecodeToTheSameString()
    {
        var seen = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        for (int a = 0x80; a < 256; a++)
        {
            byte[] latin = [(byte)'/', (byte)a];
            Assert.True(seen.TryAdd(PathBytes.Decode(latin), latin));
        }
        Assert.True(seen.TryAdd(PathBytes.Decode("/\uFFFD"u8), [(byte)'/', 0xEF, 0xBF, 0xBD]));
    }

    [Fact]
    public void ASurrogateThatNoDecodeProducesBecomesTheReplacementCharacter()
    {
        Assert.Equal("a\uFFFD"u8.ToArray(), PathBytes.Encode("a\uD800"));
        Assert.Equal(new byte[] { 0xEF, 0xBF, 0xBD, 0xFF }, PathBytes.Encode("\uDC00\uDCFF"));
    }

    [Fact]
    public unsafe void TheMarshallerHandsTheKernelTheBytesAndATerminatingNul()
    {
        byte* p = PathMarshaller.ConvertToUnmanaged("/caf\uDCE9");
        try
        {
            Assert.Equal(new byte[] { (byte)'/', (byte)'c', (byte)'a', (byte)'f', 0xE9, 0 }, new ReadOnlySpan<byte>(p, 6).ToArray());
            Assert.Equal(5, MemoryMarshal.CreateReadOnlySpanFromNullTerminated(p).Length);
        }
        finally
        {
            PathMarshaller.Free(p);
        }
        Assert.True(PathMarshaller.ConvertToUnmanaged(null) == null);
    }
}
