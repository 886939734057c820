// Frame parsing as a pure function: the cap is checked before the payload is awaited.
using System.Buffers;
using Copper.Interop;
using Xunit;

namespace Copper.Tests;

public class FramingTests
{
    private static byte[] Frame(uint length, byte op, ushort reserved = 0, int actualPayload = -1)
    {
        int n = actualPayload < 0 ? (int)length : actualPayload;
        byte[] b = new byte[Protocol.HeaderSize + n];
        Framing.WriteHeader(b, op, 7, (int)length);
        BitConverter.TryWriteBytes(b.AsSpan(6), reserved);
        return b;
    }

    [Fact]
    public void ReadsAWholeFrameAndAdvances()
    {
        byte[] two = Frame(3, (byte)Op.Stat).Concat(Frame(0, (byte)Op.Ping)).ToArray();
        var seq = new ReadOnlySequence<byte>(two);
        Assert.True(Framing.TryReadFrame(ref seq, out Frame f, out _));
        Assert.Equal((byte)Op.Stat, f.Op);
        Assert.Equal(7u, f.RequestId);
        Assert.Equal(3, f.Payload.Length);
        Assert.True(Framing.TryReadFrame(ref seq, out f, out _));
        Assert.Equal((byte)Op.Ping, f.Op);
        Assert.Equal(0, seq.Length);
    }

    [Fact]
    public void WaitsForTheRestOfATruncatedFrame()
    {
        var seq = new ReadOnlySequence<byte>(Frame(10, (byte)Op.Stat, actualPayload: 4));
        Assert.False(Framing.TryReadFrame(ref seq, out _, out FrameError e));
        Assert.Equal(FrameError.None, e);
        var shortHeader = new ReadOnlySequence<byte>(new byte[5]);
        Assert.False(Framing.TryReadFrame(ref shortHeader, out _, out e));
        Assert.Equal(FrameError.None, e);
    }

    [Fact]
    public void RejectsOversizedLengthBeforeThePayloadArrives()
    {
        var seq = new ReadOnlySequence<byte>(Frame(Protocol.MaxPayload + 1, (byte)Op.Stat, actualPayload: 0));
        Assert.False(Framing.TryReadFrame(ref seq, out _, out FrameError e));
        Assert.Equal(FrameError.TooLarge, e);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(Protocol.MaxOp + 1)]
    [InlineData(0x7f)]
    public void RejectsUnknownOpcodes(byte op)
    {
        var seq = new ReadOnlySequence<byte>(Frame(0, op));
        Assert.False(Framing.TryReadFrame(ref seq, out _, out FrameError e));
        Assert.Equal(FrameError.UnknownOp, e);
    }

    [Fact]
    public void RejectsNonZeroReservedBits()
    {
        var seq = new ReadOnlySequence<byte>(Frame(0, (byte)Op.Ping, reserved: 1));
        Assert.False(Framing.TryReadFrame(ref seq, out _, out FrameError e));
        Assert.Equal(FrameError.BadReserved, e);
    }
}
