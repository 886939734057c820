// C# mirror of interop/copper_protocol.h. The header is the definition; the test
// ProtocolLayoutTests compiles it and compares every size, offset and constant here.
using System.Runtime.InteropServices;

namespace Copper.Interop;

/// <summary>Request opcodes; a reply carries the request's opcode with <see cref="Protocol.Reply"/> set.</summary>
public enum Op : byte
{
    Hello = 1,
    Stat = 2,
    Lstat = 3,
    ReadLink = 4,
    Access = 5,
    ListDir = 6,
    Open = 7,
    Ping = 8,
    Stats = 9,
    ListDirPlus = 10,
    ManifestSave = 11,
}

public enum OpenKind : uint
{
    File = 1,
    Dir = 2,
}

public static class Protocol
{
    public const uint Magic = 0x52505043u;
    public const ushort Major = 1;
    public const ushort Minor = 1;
    public const int HeaderSize = 12;
    public const uint MaxPayload = 4u * 1024u * 1024u;
    public const int MaxPath = 4096;
    public const byte Reply = 0x80;
    public const byte MaxOp = 11;

    /// <summary>Copper's own statuses: the client must use the real path.</summary>
    public const int StatusFallback = -1;
    public const int StatusTooBig = -2;
    public const int StatusTooLong = -3;

    public const ulong FnvOffset = 0xcbf29ce484222325ul;
    public const ulong FnvPrime = 0x100000001b3ul;
    public const string SocketName = "agent.sock";

    /// <summary>FNV-1a 64 over the UTF-8 bytes of <paramref name="s"/>, as copper_fnv1a64.</summary>
    public static ulong Fnv1a64(string s)
    {
        ulong h = FnvOffset;
        foreach (byte b in System.Text.Encoding.UTF8.GetBytes(s))
        {
            h ^= b;
            h *= FnvPrime;
        }
        return h;
    }
}

[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct FrameHeader
{
    public uint Length;
    public byte Op;
    public byte Flags;
    public ushort Reserved;
    public uint RequestId;
}

[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct Hello
{
    public uint Magic;
    public ushort Major;
    public ushort Minor;
    public uint Pid;
    public uint Reserved;
}

[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct HelloReply
{
    public uint Magic;
    public ushort Major;
    public ushort Minor;
    public uint AgentPid;
    public uint Node;
    public long MaxCacheable;
}

[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct ReplyHead
{
    public int Status;
    public uint Reserved;
}

/// <summary>The fields of struct stat an application can observe, fixed-width (copper_stat).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct CopperStat
{
    public ulong Dev;
    public ulong Ino;
    public ulong Nlink;
    public uint Mode;
    public uint Uid;
    public uint Gid;
    public uint Pad0;
    public ulong Rdev;
    public long Size;
    public long Blksize;
    public long Blocks;
    public long AtimeSec;
    public long AtimeNsec;
    public long MtimeSec;
    public long MtimeNsec;
    public long CtimeSec;
    public long CtimeNsec;
}

[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct AccessRequest
{
    public int Mode;
    public uint Reserved;
}

[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct CopperDirent
{
    public ulong Ino;
    public byte Type;
    public byte Pad0;
    public ushort NameLength;
    public uint Pad1;
}

[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct ListDirRequest
{
    public const uint CachedOnly = 1;
    public uint Flags;
    public uint Reserved;
}

[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct CopperDirentPlus
{
    public CopperDirent De;
    public int LstatStatus;
    public uint OpenKind;
    public CopperStat St;
}

[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct OpenReply
{
    public uint Kind;
    public uint Reserved;
    public CopperStat St;
}
