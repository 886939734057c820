// One request path for every door (DESIGN decision 5): the local server (the shim) and the
// tree's parent side (a child agent) parse the same request bodies with Requests.TryParse
// and answer them with Answers.AnswerAsync, which asks the NodeCache and encodes the reply
// in the shim-agent protocol (interop/copper_protocol.h): a copper_reply_head, then the
// operation's body. The tree's child side builds its requests with Requests.Encode and
// reads the replies with the Answers.Read* decoders. A new operation means: the header and
// its C# mirror (Protocol.cs), the layout test, a case here, the cache, the upstream seam,
// and the shim.
using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Copper.Interop;

namespace Copper.Agent;

/// <summary>A parsed request: the operation, its normalized path, and its fixed part.</summary>
internal readonly record struct Request(Op Op, string Path, int Mode = 0, uint Flags = 0);

internal static class Requests
{
    /// <summary>The fixed part each operation carries before its path.</summary>
    public static int FixedSize(Op op) => op switch
    {
        Op.Access => Marshal.SizeOf<AccessRequest>(),
        Op.ListDirPlus => Marshal.SizeOf<ListDirRequest>(),
        _ => 0,
    };

    /// <summary>Parses a request body (fixed part, then the path): 0, or the status to answer.</summary>
    public static int TryParse(Op op, ReadOnlySequence<byte> payload, out Request request)
    {
        request = default;
        int fixedSize = FixedSize(op);
        if (payload.Length < fixedSize)
        {
            return Interop.Libc.EINVAL;
        }
        Span<byte> raw = stackalloc byte[8];
        payload.Slice(0, fixedSize).CopyTo(raw);
        int mode = op == Op.Access ? MemoryMarshal.Read<AccessRequest>(raw).Mode : 0;
        uint flags = op == Op.ListDirPlus ? MemoryMarshal.Read<ListDirRequest>(raw).Flags : 0;
        int status = PathPolicy.TryDecode(payload.Slice(fixedSize), out string path);
        if (status != 0)
        {
            return status;
        }
        request = new Request(op, path, mode, flags);
        return 0;
    }

    /// <inheritdoc cref="TryParse(Op, ReadOnlySequence{byte}, out Request)"/>
    public static int TryParse(Op op, ReadOnlyMemory<byte> payload, out Request request) =>
        TryParse(op, new ReadOnlySequence<byte>(payload), out request);

    /// <summary>The body of a request: its fixed part, then the path's bytes.</summary>
    public static byte[] Encode(in Request r)
    {
        int fixedSize = FixedSize(r.Op);
        byte[] path = PathBytes.Encode(r.Path);
        byte[] body = new byte[fixedSize + path.Length];
        if (r.Op == Op.Access)
        {
            var a = new AccessRequest { Mode = r.Mode };
            MemoryMarshal.Write(body, in a);
        }
        else if (r.Op == Op.ListDirPlus)
        {
            var l = new ListDirRequest { Flags = r.Flags };
            MemoryMarshal.Write(body, in l);
        }
        path.CopyTo(body, fixedSize);
        return body;
    }
}

/// <summary>Answers parsed requests from the node's cache, as shim-agent protocol replies.</summary>
internal sealed class Answers(NodeCache cache, Counters counters)
{
    /// <summary>The reply payload for <paramref name="r"/> (a copper_reply_head, then the body).</summary>
    public async ValueTask<byte[]> AnswerAsync(Request r, CancellationToken ct)
    {
        switch (r.Op)
        {
            case Op.Stat:
            case Op.Lstat:
            {
                StatAnswer a = await cache.StatAsync(r.Path, r.Op == Op.Stat, ct);
                return a.Status == 0 ? Concat(Head(0), StructBytes(a.St)) : Head(a.Status);
            }
            case Op.ReadLink:
            {
                LinkAnswer a = await cache.ReadLinkAsync(r.Path, ct);
                return a.Status == 0 ? Concat(Head(0), a.Target) : Head(a.Status);
            }
            case Op.Access:
                return Head(await cache.AccessAsync(r.Path, r.Mode, ct));
            case Op.ListDir:
            {
                DirAnswer a = await cache.ListDirAsync(r.Path, ct);
                return a.Status == 0 ? EncodeListing(a.Entries) : Head(a.Status);
            }
            case Op.ListDirPlus:
            {
                if ((r.Flags & ListDirRequest.CachedOnly) != 0 && !cache.HasListing(r.Path))
                {
                    return Head(Protocol.StatusFallback);
                }
                DirAnswer a = await cache.ListDirAsync(r.Path, ct);
                return a.Status == 0 ? EncodeListing(a.Entries, cache, r.Path) : Head(a.Status);
            }
            case Op.Open:
            {
                OpenAnswer a = await cache.OpenAsync(r.Path, ct);
                if (a.Status != 0)
                {
                    return Head(a.Status);
                }
                var reply = new OpenReply { Kind = (uint)a.Kind, St = a.St };
                counters.Served(a.St.Size);
                return Concat(Head(0), StructBytes(reply), a.LocalPath);
            }
            default:
                return Head(Interop.Libc.EINVAL);
        }
    }

    /// <summary>A LISTDIR reply: u32 count, then count x (copper_dirent, name).</summary>
    public static byte[] EncodeListing(IReadOnlyList<DirEntry> entries) => EncodeListing(entries, null, null);

    /// <summary>
    /// A LISTDIR reply; with <paramref name="plusDir"/> (the listed directory), a LISTDIRPLUS
    /// reply: each entry also says what <paramref name="cache"/> already knows of it (its lstat;
    /// an entry that is not a symlink has the same stat) and whether its file is materialized.
    /// Nothing is fetched for it, so the file system sees no extra operation.
    /// </summary>
    private static byte[] EncodeListing(IReadOnlyList<DirEntry> entries, NodeCache? cache, string? plusDir)
    {
        int entrySize = plusDir == null ? Marshal.SizeOf<CopperDirent>() : Marshal.SizeOf<CopperDirentPlus>();
        long size = 8 + 4;
        foreach (DirEntry e in entries)
        {
            size += entrySize + e.Name.Length;
        }
        if (size > Protocol.MaxPayload)
        {
            return Head(Protocol.StatusTooLong);
        }
        byte[] buf = new byte[size];
        Head(0).CopyTo(buf, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(8), (uint)entries.Count);
        int at = 12;
        string prefix = plusDir == "/" ? "/" : plusDir + "/";
        foreach (DirEntry e in entries)
        {
            var d = new CopperDirent { Ino = e.Ino, Type = e.Type, NameLength = (ushort)e.Name.Length };
            if (plusDir == null)
            {
                MemoryMarshal.Write(buf.AsSpan(at), in d);
            }
            else
            {
                string child = prefix + PathBytes.Decode(e.Name);
                var p = new CopperDirentPlus
                {
                    De = d,
                    LstatStatus = cache!.PeekLstat(child, e.Type, out CopperStat st),
                    OpenKind = cache.PeekMaterialized(child) ? (uint)OpenKind.File : 0,
                    St = st,
                };
                MemoryMarshal.Write(buf.AsSpan(at), in p);
            }
            at += entrySize;
            e.Name.CopyTo(buf, at);
            at += e.Name.Length;
        }
        return buf;
    }

    public static byte[] Head(int status)
    {
        byte[] b = new byte[8];
        BinaryPrimitives.WriteInt32LittleEndian(b, status);
        return b;
    }

    public static byte[] StructBytes<T>(in T value)
        where T : unmanaged
    {
        byte[] b = new byte[Marshal.SizeOf<T>()];
        MemoryMarshal.Write(b, in value);
        return b;
    }

    public static byte[] Concat(params byte[][] parts)
    {
        int n = 0;
        foreach (byte[] p in parts)
        {
            n += p.Length;
        }
        byte[] all = new byte[n];
        int at = 0;
        foreach (byte[] p in parts)
        {
            p.CopyTo(all, at);
            at += p.Length;
        }
        return all;
    }

    // ---- decoders, for the tree's child side (the reply as the parent encoded it) ----

    /// <summary>The status of a reply (Copper's own fallback when it is too short to have one).</summary>
    public static int Status(ReadOnlySpan<byte> reply) =>
        reply.Length >= Marshal.SizeOf<ReplyHead>() ? BinaryPrimitives.ReadInt32LittleEndian(reply) : Protocol.StatusFallback;

    private static ReadOnlySpan<byte> Body(ReadOnlySpan<byte> reply) => reply[Marshal.SizeOf<ReplyHead>()..];

    public static StatAnswer ReadStat(ReadOnlySpan<byte> reply)
    {
        int status = Status(reply);
        if (status != 0)
        {
            return new StatAnswer(status, default);
        }
        ReadOnlySpan<byte> body = Body(reply);
        return body.Length >= Marshal.SizeOf<CopperStat>()
            ? new StatAnswer(0, MemoryMarshal.Read<CopperStat>(body))
            : new StatAnswer(Protocol.StatusFallback, default);
    }

    public static LinkAnswer ReadLink(ReadOnlySpan<byte> reply)
    {
        int status = Status(reply);
        return status == 0 ? new LinkAnswer(0, Body(reply).ToArray()) : new LinkAnswer(status, []);
    }

    /// <summary>A LISTDIR reply: u32 count, then count x (copper_dirent, name).</summary>
    public static DirAnswer ReadListing(ReadOnlySpan<byte> reply)
    {
        int status = Status(reply);
        if (status != 0)
        {
            return new DirAnswer(status, []);
        }
        ReadOnlySpan<byte> body = Body(reply);
        int entrySize = Marshal.SizeOf<CopperDirent>();
        if (body.Length < 4)
        {
            return new DirAnswer(Protocol.StatusFallback, []);
        }
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(body);
        body = body[4..];
        var list = new List<DirEntry>((int)Math.Min(count, 1 << 16));
        for (uint i = 0; i < count; i++)
        {
            if (body.Length < entrySize)
            {
                return new DirAnswer(Protocol.StatusFallback, []);
            }
            CopperDirent d = MemoryMarshal.Read<CopperDirent>(body);
            if (d.NameLength == 0 || body.Length < entrySize + d.NameLength)
            {
                return new DirAnswer(Protocol.StatusFallback, []);
            }
            list.Add(new DirEntry(body.Slice(entrySize, d.NameLength).ToArray(), d.Ino, d.Type));
            body = body[(entrySize + d.NameLength)..];
        }
        return body.IsEmpty ? new DirAnswer(0, list) : new DirAnswer(Protocol.StatusFallback, []);
    }
}
