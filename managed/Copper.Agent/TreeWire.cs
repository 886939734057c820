// Messages between agents (one MPI tag; MPI keeps their order between two ranks).
// Every message starts with a 24-byte head, little-endian:
//   u8 kind, u8 op, u8 flags, u8 0, u16 tree, u16 0, i32 status, i32 aux, u64 id
// kind    body
// Request i64 arg (access mode, or the size cap of a fetch), then the path (UTF-8)
// Reply   per op: Stat/Lstat a copper_stat; ReadLink the target; Access nothing;
//         ListDir entries (u64 ino, u8 type, u8 0, u16 name length, name);
//         Fetch u32 kind, u32 0, i64 size, copper_stat (then Chunk messages follow)
// Chunk   aux = index, flags bit 0 = LZ4; i32 raw length, then the chunk.
//         status != 0 ends the transfer early (the file could not be relayed)
// Alive   id 0: "still serving your requests", about once a second to each child with a
//         request in service. Any message from a parent resets the child's patience.
// Join / JoinAck (per tree), Subtree (aux = nodes joined below and at the sender), Shutdown
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
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
}

internal enum TreeOp : byte
{
    None = 0,
    Stat = 1,
    Lstat = 2,
    ReadLink = 3,
    Access = 4,
    ListDir = 5,
    Fetch = 6,
}

internal readonly record struct TreeHead(TreeKind Kind, TreeOp Op, byte Flags, int Tree, int Status, int Aux, ulong Id);

internal static class TreeWire
{
    public const int HeadSize = 24;
    public const int StatSize = 120;

    public static bool TryReadHead(ReadOnlySpan<byte> m, out TreeHead head)
    {
        head = default;
        if (m.Length < HeadSize || m[0] is < (byte)TreeKind.Request or > (byte)TreeKind.Shutdown)
        {
            return false;
        }
        head = new TreeHead((TreeKind)m[0], (TreeOp)m[1], m[2], BinaryPrimitives.ReadUInt16LittleEndian(m[4..]),
            BinaryPrimitives.ReadInt32LittleEndian(m[8..]), BinaryPrimitives.ReadInt32LittleEndian(m[12..]),
            BinaryPrimitives.ReadUInt64LittleEndian(m[16..]));
        return true;
    }

    public static byte[] Message(TreeKind kind, TreeOp op, int tree, int status, int aux, ulong id, int bodyLength, byte flags = 0)
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

    public static byte[] Control(TreeKind kind, int tree, int aux = 0) => Message(kind, TreeOp.None, tree, 0, aux, 0, 0);

    public static byte[] Request(TreeOp op, int tree, ulong id, long arg, string path)
    {
        byte[] bytes = PathBytes.Encode(path); // a name that is not UTF-8 crosses the tree as its bytes
        byte[] m = Message(TreeKind.Request, op, tree, 0, 0, id, 8 + bytes.Length);
        BinaryPrimitives.WriteInt64LittleEndian(m.AsSpan(HeadSize), arg);
        bytes.CopyTo(m.AsSpan(HeadSize + 8));
        return m;
    }

    public static bool TryReadRequest(ReadOnlySpan<byte> m, out long arg, out string path)
    {
        arg = 0;
        path = "";
        if (m.Length < HeadSize + 9 || m.Length > HeadSize + 8 + Protocol.MaxPath)
        {
            return false;
        }
        arg = BinaryPrimitives.ReadInt64LittleEndian(m[HeadSize..]);
        ReadOnlySpan<byte> p = m[(HeadSize + 8)..];
        if (p[0] != (byte)'/' || p.IndexOf((byte)0) >= 0)
        {
            return false;
        }
        path = PathBytes.Decode(p);
        return true;
    }

    public static byte[] StatReply(TreeOp op, ulong id, StatAnswer a)
    {
        byte[] m = Message(TreeKind.Reply, op, 0, a.Status, 0, id, StatSize);
        CopperStat st = a.St;
        MemoryMarshal.Write(m.AsSpan(HeadSize), in st);
        return m;
    }

    public static CopperStat ReadStat(ReadOnlySpan<byte> body) =>
        body.Length >= StatSize ? MemoryMarshal.Read<CopperStat>(body) : default;

    public static byte[] BytesReply(TreeOp op, ulong id, int status, ReadOnlySpan<byte> body)
    {
        byte[] m = Message(TreeKind.Reply, op, 0, status, 0, id, body.Length);
        body.CopyTo(m.AsSpan(HeadSize));
        return m;
    }

    public static byte[] DirReply(ulong id, DirAnswer a)
    {
        int n = 0;
        foreach (DirEntry e in a.Entries)
        {
            n += 12 + e.Name.Length;
        }
        byte[] m = Message(TreeKind.Reply, TreeOp.ListDir, 0, a.Status, a.Entries.Count, id, n);
        Span<byte> s = m.AsSpan(HeadSize);
        foreach (DirEntry e in a.Entries)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(s, e.Ino);
            s[8] = e.Type;
            s[9] = 0;
            BinaryPrimitives.WriteUInt16LittleEndian(s[10..], (ushort)e.Name.Length);
            e.Name.CopyTo(s[12..]);
            s = s[(12 + e.Name.Length)..];
        }
        return m;
    }

    public static List<DirEntry>? ReadDir(ReadOnlySpan<byte> body, int count)
    {
        var list = new List<DirEntry>(Math.Clamp(count, 0, 1 << 16));
        while (body.Length > 0)
        {
            if (body.Length < 12)
            {
                return null;
            }
            int len = BinaryPrimitives.ReadUInt16LittleEndian(body[10..]);
            if (body.Length < 12 + len || len == 0)
            {
                return null;
            }
            list.Add(new DirEntry(body.Slice(12, len).ToArray(), BinaryPrimitives.ReadUInt64LittleEndian(body), body[8]));
            body = body[(12 + len)..];
        }
        return list.Count == count ? list : null;
    }

    public static byte[] FetchReply(ulong id, int status, OpenKind kind, CopperStat st, long size)
    {
        byte[] m = Message(TreeKind.Reply, TreeOp.Fetch, 0, status, 0, id, 16 + StatSize);
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
        byte[] m = Message(TreeKind.Chunk, TreeOp.Fetch, 0, 0, index, id, 4 + c.Wire.Length, c.Compressed ? (byte)1 : (byte)0);
        BinaryPrimitives.WriteInt32LittleEndian(m.AsSpan(HeadSize), c.RawLength);
        c.Wire.CopyTo(m.AsSpan(HeadSize + 4));
        return m;
    }

    public static byte[] ChunkAbort(ulong id, int index, int status) =>
        Message(TreeKind.Chunk, TreeOp.Fetch, 0, status == 0 ? Protocol.StatusFallback : status, index, id, 0);

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
