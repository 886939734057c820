// Frame parsing as a pure function over a ReadOnlySequence (Kestrel's Http2FrameReader
// shape): the size cap and the header are checked before the payload is waited for.
using System.Buffers;
using System.Buffers.Binary;

namespace Copper.Interop;

public enum FrameError
{
    None,
    TooLarge,
    UnknownOp,
    BadReserved,
}

public readonly struct Frame
{
    public Frame(byte op, byte flags, uint requestId, ReadOnlySequence<byte> payload)
    {
        Op = op;
        Flags = flags;
        RequestId = requestId;
        Payload = payload;
    }

    public byte Op { get; }
    public byte Flags { get; }
    public uint RequestId { get; }
    public ReadOnlySequence<byte> Payload { get; }
}

public static class Framing
{
    /// <summary>
    /// Reads one frame from the front of <paramref name="buffer"/>. Returns false when more
    /// bytes are needed or the frame is malformed (then <paramref name="error"/> is set and the
    /// connection must be closed). On success the buffer is advanced past the frame.
    /// </summary>
    public static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, out Frame frame, out FrameError error)
    {
        frame = default;
        error = FrameError.None;
        if (buffer.Length < Protocol.HeaderSize)
        {
            return false;
        }
        Span<byte> head = stackalloc byte[Protocol.HeaderSize];
        buffer.Slice(0, Protocol.HeaderSize).CopyTo(head);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(head);
        byte op = head[4];
        byte flags = head[5];
        ushort reserved = BinaryPrimitives.ReadUInt16LittleEndian(head[6..]);
        uint requestId = BinaryPrimitives.ReadUInt32LittleEndian(head[8..]);
        if (length > Protocol.MaxPayload)
        {
            error = FrameError.TooLarge;
            return false;
        }
        byte bareOp = (byte)(op & ~Protocol.Reply);
        if (bareOp == 0 || bareOp > Protocol.MaxOp)
        {
            error = FrameError.UnknownOp;
            return false;
        }
        if (reserved != 0)
        {
            error = FrameError.BadReserved;
            return false;
        }
        if (buffer.Length < Protocol.HeaderSize + (long)length)
        {
            return false;
        }
        frame = new Frame(op, flags, requestId, buffer.Slice(Protocol.HeaderSize, length));
        buffer = buffer.Slice(Protocol.HeaderSize + (long)length);
        return true;
    }

    /// <summary>Writes a frame header into <paramref name="destination"/> (12 bytes).</summary>
    public static void WriteHeader(Span<byte> destination, byte op, uint requestId, int payloadLength)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, (uint)payloadLength);
        destination[4] = op;
        destination[5] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[6..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], requestId);
    }
}
