// Messages between agents (one MPI tag; MPI keeps their order between two ranks).
// Every message starts with a 24-byte head, little-endian:
//   u8 kind, u8 op, u8 flags, u8 0, u16 tree, u16 0, i32 status, i32 aux, u64 id
// op is the shim-agent protocol's operation code (interop/copper_protocol.h), and requests
// and replies carry that protocol's bodies, so the tree asks the same questions with the
// same words as the shim (Requests.cs encodes and parses them, Answers.cs answers them):
// kind    body
// Request the operation's request body: its fixed part, then the path's bytes;
//         flags bit 1 (FlagReplay): asked by a replay, served after the applications' requests
// Reply   the operation's reply payload: copper_reply_head, then its body; status mirrors
//         the reply head's. OPEN is the tree's fetch: its reply body is
//         u32 kind, u32 0, i64 size, copper_stat, and Chunk messages follow
// Chunk   aux = index, flags bit 0 = LZ4; i32 raw length, then the chunk.
//         status != 0 ends the transfer early (the file could not be relayed)
// Alive   id 0: "still serving your requests", about once a second to each child with a
//         request in service. Any message from a parent resets the child's patience.
// Join / JoinAck (per tree), Subtree (aux = nodes joined below and at the sender), Shutdown
// Report  aux = entries: nodes' counters going up tree 0 (TreeStats); ReportAck answers it
// Replay  a batch of a manifest's replay list, tree 0, down (Replay.cs: ReplayWire)
// ReplayDone aux = a rank that has every entry of the replay, tree 0, up to the root
// ManifestAsk    `copper manifest save` on one agent asks each other tree's root for its record
//                (directly, not along a tree; ManifestGather.cs); no body
// ManifestRecord the answer, id echoed: u32 L, a manifest of L bytes (docs/manifest.md), then
//                each entry's first-use time (i64 UTC ticks)
// Live    aux = exception ranges: "my subtree in tree 0 is alive" instead of unchanged
//         counters (TreeStats); ReportAck answers it
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Copper.Interop;

namespace Copper.Agent;

internal enum TreeKind : byte
{
    Request = 1,
    Reply = 2,
    Chunk = 3,
    Alive = 4,
    Join = 5,
    JoinAck = 6,
    Subtree = 7,
    Shutdown = 8,
    Report = 9,
    ReportAck = 10,
    Replay = 11,
    ReplayDone = 12,
    ManifestAsk = 13,
    ManifestRecord = 14,
    Live = 15,
}

internal readonly record struct TreeHead(TreeKind Kind, Op Op, byte Flags, int Tree, int Status, int Aux, ulong Id);

internal static class TreeWire
{
    public const int HeadSize = 24;
    private static readonly int StatSize = Marshal.SizeOf<CopperStat>();

    public static bool TryReadHead(ReadOnlySpan<byte> m, out TreeHead head)
    {
        head = default;
        if (m.Length < HeadSize || m[0] is < (byte)TreeKind.Request or > (byte)TreeKind.Live /* the last kind */)
        {
            return false;
        }
        head = new TreeHead((TreeKind)m[0], (Op)m[1], m[2], BinaryPrimitives.ReadUInt16LittleEndian(m[4..]),
            BinaryPrimitives.ReadInt32LittleEndian(m[8..]), BinaryPrimitives.ReadInt32LittleEndian(m[12..]),
            BinaryPrimitives.ReadUInt64LittleEndian(m[16..]));
        return true;
    }

    public static byte[] Message(TreeKind kind, Op op, int tree, int status, int aux, ulong id, int bodyLength, byte flags = 0)
    {
        byte[] m = GC.AllocateUninitializedArray<byte>(HeadSize + bodyLength);
        Span<byte> s = m;
        s[0] = (byte)kind;
        s[1] = (byte)op;
        s[2] = flags;
        s[3] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(s[4..], (ushort)tree);
        BinaryPrimitives.WriteUInt16LittleEndian(s[6..], 0);
        BinaryPrimitives.WriteInt32LittleEndian(s[8..], status);
        BinaryPrimitives.WriteInt32LittleEndian(s[12..], aux);
        BinaryPrimitives.WriteUInt64LittleEndian(s[16..], id);
        return m;
    }

    public static byte[] Control(TreeKind kind, int tree, int aux = 0) => Message(kind, 0, tree, 0, aux, 0, 0);

    /// <summary>A request for the parent: the head, then <see cref="Requests.Encode"/>'s body.</summary>
    /// <summary>A request's flag: a replay asks it (Replay.cs); the parent serves it in its replay lane.</summary>
    public const byte FlagReplay = 2;

    public static byte[] Request(int tree, ulong id, in Request r, byte flags = 0)
    {
        byte[] body = Requests.Encode(r);
        byte[] m = Message(TreeKind.Request, r.Op, tree, 0, 0, id, body.Length, flags);
        body.CopyTo(m, HeadSize);
        return m;
    }

    /// <summary>Parses a request message's body: 0, or the status to answer it with.</summary>
    public static int TryReadRequest(byte[] m, in TreeHead head, out Request r)
    {
        r = default;
        if (m.Length > HeadSize + Requests.FixedSize(head.Op) + Protocol.MaxPath)
        {
            return Interop.Libc.ENAMETOOLONG;
        }
        return Requests.TryParse(head.Op, m.AsMemory(HeadSize), out r);
    }

    /// <summary>A reply: the head (status mirrored), then the reply payload as the shim would get it.</summary>
    public static byte[] Reply(Op op, ulong id, byte[] payload)
    {
        byte[] m = Message(TreeKind.Reply, op, 0, Answers.Status(payload), 0, id, payload.Length);
        payload.CopyTo(m, HeadSize);
        return m;
    }

    public static byte[] FetchReply(ulong id, int status, OpenKind kind, CopperStat st, long size)
    {
        byte[] m = Message(TreeKind.Reply, Op.Open, 0, status, 0, id, 16 + StatSize);
        Span<byte> s = m.AsSpan(HeadSize);
        BinaryPrimitives.WriteUInt32LittleEndian(s, (uint)kind);
        BinaryPrimitives.WriteUInt32LittleEndian(s[4..], 0);
        BinaryPrimitives.WriteInt64LittleEndian(s[8..], size);
        MemoryMarshal.Write(s[16..], in st);
        return m;
    }

    public static bool TryReadFetchReply(ReadOnlySpan<byte> body, out OpenKind kind, out long size, out CopperStat st)
    {
        kind = 0;
        size = 0;
        st = default;
        if (body.Length < 16 + StatSize)
        {
            return false;
        }
        kind = (OpenKind)BinaryPrimitives.ReadUInt32LittleEndian(body);
        size = BinaryPrimitives.ReadInt64LittleEndian(body[8..]);
        st = MemoryMarshal.Read<CopperStat>(body[16..]);
        return size >= 0;
    }

    public static byte[] Chunk(ulong id, int index, WireChunk c)
    {
        byte[] m = Message(TreeKind.Chunk, Op.Open, 0, 0, index, id, 4 + c.Wire.Length, c.Compressed ? (byte)1 : (byte)0);
        BinaryPrimitives.WriteInt32LittleEndian(m.AsSpan(HeadSize), c.RawLength);
        c.Wire.CopyTo(m.AsSpan(HeadSize + 4));
        return m;
    }

    public static byte[] ChunkAbort(ulong id, int index, int status) =>
        Message(TreeKind.Chunk, Op.Open, 0, status == 0 ? Protocol.StatusFallback : status, index, id, 0);

    public static WireChunk? ReadChunk(in TreeHead head, ReadOnlySpan<byte> body)
    {
        if (body.Length < 4)
        {
            return null;
        }
        int raw = BinaryPrimitives.ReadInt32LittleEndian(body);
        return raw < 0 ? null : new WireChunk(body[4..].ToArray(), (head.Flags & 1) != 0, raw);
    }
}
