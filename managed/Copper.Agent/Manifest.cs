// A job's manifest: every path the job asked the file system about, what it asked (lstat,
// stat, readlink, listing, open and the file's data, access) and the identity the path had
// (size, mtime, ctime, inode, device, type), or the error it answered, in first-use order.
// The next launch replays it (Replay.cs): the answers are asked again, so nothing stale is
// served; the manifest only says what to fetch, never carries data. The format is
// docs/manifest.md: a 40-byte head, the prefix, then the entries, each path sharing its
// leading bytes with the previous one, the numbers as LEB128 varints; a checksum (FNV-1a 64
// of everything after the head) finds corruption and a stated length finds truncation.
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Text;
using Copper.Interop;

namespace Copper.Agent;

/// <summary>What a job asked of one path (bits of <see cref="ManifestEntry.Asked"/>).</summary>
[Flags]
internal enum Asked : byte
{
    Lstat = 1,
    Stat = 2,
    ReadLink = 4,
    List = 8,
    Open = 16,
    Access = 32,
}

/// <summary>
/// One path of a manifest. <paramref name="Error"/> is 0 when the path existed (then the
/// identity fields hold what its first answer said), else the errno it answered.
/// <paramref name="AccessModes"/>: bit m set when access(path, m) was asked.
/// </summary>
internal sealed record ManifestEntry(string Path, Asked Asked, int Error, byte AccessModes,
    uint Mode, long Size, long MtimeNs, long CtimeNs, ulong Ino, ulong Dev)
{
    public static ManifestEntry Of(string path, Asked asked, int error, in CopperStat st) =>
        error != 0
            ? new ManifestEntry(path, asked, error, 0, 0, 0, 0, 0, 0, 0)
            : new ManifestEntry(path, asked, 0, 0, st.Mode, st.Size, Ns(st.MtimeSec, st.MtimeNsec), Ns(st.CtimeSec, st.CtimeNsec), st.Ino, st.Dev);

    private static long Ns(long sec, long nsec) => sec * 1_000_000_000 + nsec;

    /// <summary>True when <paramref name="st"/> is the version this entry recorded.</summary>
    public bool SameIdentity(in CopperStat st) =>
        Error == 0 && st.Size == Size && st.Ino == Ino && st.Dev == Dev && (st.Mode & 0xF000) == (Mode & 0xF000)
        && Ns(st.MtimeSec, st.MtimeNsec) == MtimeNs && Ns(st.CtimeSec, st.CtimeNsec) == CtimeNs;
}

/// <summary>A manifest read from a file: its prefix and entries, in first-use order.</summary>
internal sealed record Manifest(string Prefix, IReadOnlyList<ManifestEntry> Entries)
{
    public const uint Magic = 0x464D5043u; // "CPMF"
    public const ushort Version = 1;
    public const int HeadSize = 40;

    /// <summary>Largest manifest file read (a bigger one is refused, not read).</summary>
    public const long MaxFileBytes = 256L << 20;

    /// <summary>
    /// The manifest's bytes. Head (little-endian): u32 magic "CPMF", u16 version, u16 flags 0,
    /// u32 prefix length, u32 entry count, u64 body length (the bytes after the head),
    /// u64 FNV-1a 64 of the body, u64 0. Body: the prefix's bytes, then each entry.
    /// </summary>
    public byte[] Encode()
    {
        var body = new MemoryStream();
        byte[] prefix = PathBytes.Encode(Prefix);
        body.Write(prefix);
        byte[] previous = [];
        Span<byte> v = stackalloc byte[10];
        foreach (ManifestEntry e in Entries)
        {
            byte[] path = PathBytes.Encode(e.Path);
            int shared = 0;
            while (shared < path.Length && shared < previous.Length && path[shared] == previous[shared])
            {
                shared++;
            }
            body.Write(v[..WriteVarint(v, (ulong)shared)]);
            body.Write(v[..WriteVarint(v, (ulong)(path.Length - shared))]);
            body.Write(path.AsSpan(shared));
            body.WriteByte((byte)e.Asked);
            if ((e.Asked & Asked.Access) != 0)
            {
                body.WriteByte(e.AccessModes);
            }
            body.Write(v[..WriteVarint(v, (ulong)e.Error)]);
            if (e.Error == 0)
            {
                body.Write(v[..WriteVarint(v, e.Mode)]);
                body.Write(v[..WriteVarint(v, (ulong)e.Size)]);
                body.Write(v[..WriteVarint(v, ZigZag(e.MtimeNs))]);
                body.Write(v[..WriteVarint(v, ZigZag(e.CtimeNs - e.MtimeNs))]);
                body.Write(v[..WriteVarint(v, e.Ino)]);
                body.Write(v[..WriteVarint(v, e.Dev)]);
            }
            previous = path;
        }
        byte[] b = body.ToArray();
        byte[] all = new byte[HeadSize + b.Length];
        Span<byte> h = all;
        BinaryPrimitives.WriteUInt32LittleEndian(h, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(h[4..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(h[8..], (uint)prefix.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(h[12..], (uint)Entries.Count);
        BinaryPrimitives.WriteUInt64LittleEndian(h[16..], (ulong)b.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(h[24..], Fnv(b));
        b.CopyTo(all, HeadSize);
        return all;
    }

    /// <summary>Reads a manifest; null and why when it is not one, is damaged or truncated.</summary>
    public static Manifest? TryDecode(ReadOnlySpan<byte> all, out string error)
    {
        error = "";
        if (all.Length == 0)
        {
            error = "the file is empty";
            return null;
        }
        if (all.Length < HeadSize || BinaryPrimitives.ReadUInt32LittleEndian(all) != Magic)
        {
            error = "not a Copper manifest (no CPMF head)";
            return null;
        }
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(all[4..]);
        if (version != Version)
        {
            error = $"manifest version {version}, this Copper reads version {Version}";
            return null;
        }
        uint prefixLength = BinaryPrimitives.ReadUInt32LittleEndian(all[8..]);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(all[12..]);
        ulong bodyLength = BinaryPrimitives.ReadUInt64LittleEndian(all[16..]);
        if ((ulong)(all.Length - HeadSize) < bodyLength)
        {
            error = $"truncated ({all.Length - HeadSize} of {bodyLength} bytes after the head)";
            return null;
        }
        if ((ulong)(all.Length - HeadSize) > bodyLength)
        {
            error = $"{(ulong)(all.Length - HeadSize) - bodyLength} bytes after its end";
            return null;
        }
        ReadOnlySpan<byte> body = all[HeadSize..];
        if (Fnv(body) != BinaryPrimitives.ReadUInt64LittleEndian(all[24..]))
        {
            error = "corrupt (checksum mismatch)";
            return null;
        }
        if (prefixLength > Protocol.MaxPath || prefixLength > body.Length)
        {
            error = "corrupt (prefix length)";
            return null;
        }
        string prefix = PathBytes.Decode(body[..(int)prefixLength]);
        int at = (int)prefixLength;
        var entries = new List<ManifestEntry>((int)Math.Min(count, 1u << 20));
        byte[] previous = [];
        try
        {
            for (uint i = 0; i < count; i++)
            {
                int shared = checked((int)ReadVarint(body, ref at));
                int rest = checked((int)ReadVarint(body, ref at));
                if (shared > previous.Length || rest > body.Length - at || shared + rest == 0 || shared + rest > Protocol.MaxPath)
                {
                    error = $"corrupt (entry {i}: path)";
                    return null;
                }
                byte[] path = new byte[shared + rest];
                previous.AsSpan(0, shared).CopyTo(path);
                body.Slice(at, rest).CopyTo(path.AsSpan(shared));
                at += rest;
                var asked = (Asked)Byte(body, ref at);
                byte modes = (asked & Asked.Access) != 0 ? Byte(body, ref at) : (byte)0;
                int err = checked((int)ReadVarint(body, ref at));
                ManifestEntry e;
                // Only what Copper writes: a normalized absolute path (a "..", which could lead a
                // file out of the mirror, or a NUL is damage, whoever wrote it).
                if (PathPolicy.TryDecode(new System.Buffers.ReadOnlySequence<byte>(path), out string p) != 0 || PathBytes.Decode(path) != p)
                {
                    error = $"corrupt (entry {i}: not a normalized absolute path)";
                    return null;
                }
                if (err != 0)
                {
                    e = new ManifestEntry(p, asked, err, modes, 0, 0, 0, 0, 0, 0);
                }
                else
                {
                    uint mode = checked((uint)ReadVarint(body, ref at));
                    long size = checked((long)ReadVarint(body, ref at));
                    long mtime = UnZigZag(ReadVarint(body, ref at));
                    long ctime = mtime + UnZigZag(ReadVarint(body, ref at));
                    ulong ino = ReadVarint(body, ref at);
                    ulong dev = ReadVarint(body, ref at);
                    e = new ManifestEntry(p, asked, 0, modes, mode, size, mtime, ctime, ino, dev);
                }
                entries.Add(e);
                previous = path;
            }
        }
        catch (Exception ex) when (ex is OverflowException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            error = "corrupt (an entry runs past the end)";
            return null;
        }
        if (at != body.Length)
        {
            error = "corrupt (bytes after the last entry)";
            return null;
        }
        return new Manifest(prefix, entries);
    }

    /// <summary>
    /// Reads <paramref name="file"/> as a manifest for <paramref name="prefix"/>; null and why
    /// (missing, empty, damaged, too large, another prefix's).
    /// </summary>
    public static Manifest? TryRead(string file, string prefix, out string error)
    {
        byte[] bytes;
        try
        {
            var info = new FileInfo(file);
            if (!info.Exists)
            {
                error = "no such file";
                return null;
            }
            if (info.Length > MaxFileBytes)
            {
                error = $"{info.Length} bytes, more than the {MaxFileBytes} read";
                return null;
            }
            bytes = File.ReadAllBytes(file);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            error = ex.Message;
            return null;
        }
        Manifest? m = TryDecode(bytes, out error);
        if (m != null && m.Prefix != prefix)
        {
            error = $"recorded for prefix {m.Prefix}, not {prefix}";
            return null;
        }
        return m;
    }

    /// <summary>
    /// This manifest's entries, then <paramref name="newer"/>'s: a path in both keeps its first
    /// place, gains what the newer run asked, and takes the newer identity.
    /// </summary>
    public Manifest Merge(IReadOnlyList<ManifestEntry> newer)
    {
        var index = new Dictionary<string, int>(Entries.Count + newer.Count, StringComparer.Ordinal);
        var all = new List<ManifestEntry>(Entries.Count + newer.Count);
        foreach (ManifestEntry e in Entries.Concat(newer))
        {
            if (index.TryGetValue(e.Path, out int at))
            {
                ManifestEntry old = all[at];
                all[at] = e with { Asked = old.Asked | e.Asked, AccessModes = (byte)(old.AccessModes | e.AccessModes) };
            }
            else
            {
                index[e.Path] = all.Count;
                all.Add(e);
            }
        }
        return this with { Entries = all };
    }

    /// <summary>
    /// Merges <paramref name="entries"/> into <paramref name="file"/> under an exclusive lock
    /// (agents of one job may save to one file at once). A file that is not a manifest of
    /// this prefix is replaced, and <paramref name="note"/> says so. Returns the entries written.
    /// </summary>
    public static int Save(string file, string prefix, IReadOnlyList<ManifestEntry> entries, out string note)
    {
        note = "";
        using FileStream fs = OpenLocked(file);
        byte[] old = new byte[fs.Length];
        fs.ReadExactly(old);
        var m = new Manifest(prefix, []);
        if (old.Length > 0)
        {
            if (TryDecode(old, out string why) is { } existing && existing.Prefix == prefix)
            {
                m = existing;
            }
            else
            {
                note = $"{file} was replaced: {(why.Length > 0 ? why : "recorded for another prefix")}";
            }
        }
        m = m.Merge(entries);
        byte[] bytes = m.Encode();
        fs.SetLength(0);
        fs.Position = 0;
        fs.Write(bytes);
        fs.Flush(flushToDisk: true);
        return m.Entries.Count;
    }

    private static FileStream OpenLocked(string file)
    {
        // FileShare.None takes an exclusive flock on Unix; another saver holds it for milliseconds.
        DateTime until = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            try
            {
                return new FileStream(file, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < until && File.Exists(file))
            {
                Thread.Sleep(20);
            }
        }
    }

    public static ulong Fnv(ReadOnlySpan<byte> data)
    {
        ulong h = Protocol.FnvOffset;
        foreach (byte b in data)
        {
            h = (h ^ b) * Protocol.FnvPrime;
        }
        return h;
    }

    private static ulong ZigZag(long v) => (ulong)((v << 1) ^ (v >> 63));

    private static long UnZigZag(ulong v) => (long)(v >> 1) ^ -(long)(v & 1);

    private static int WriteVarint(Span<byte> s, ulong v)
    {
        int n = 0;
        while (v >= 0x80)
        {
            s[n++] = (byte)(v | 0x80);
            v >>= 7;
        }
        s[n++] = (byte)v;
        return n;
    }

    private static byte Byte(ReadOnlySpan<byte> s, ref int at) => s[at++];

    private static ulong ReadVarint(ReadOnlySpan<byte> s, ref int at)
    {
        ulong v = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            byte b = s[at++];
            v |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return v;
            }
        }
        throw new OverflowException("varint too long");
    }
}

/// <summary>
/// What this agent asked the real file system, path by path, in first-use order: the record a
/// manifest is written from. Fed by <see cref="LocalFileSystemUpstream"/>.
/// </summary>
internal sealed class ManifestRecorder(int maxPaths = ManifestRecorder.DefaultMaxPaths)
{
    /// <summary>Most paths recorded (a job that reads more is rare; the rest is counted, not kept).</summary>
    public const int DefaultMaxPaths = 1 << 20;

    /// <summary>Most paths recorded: the agent records what a replay would use (--replay-max-entries).</summary>
    public int MaxPaths => maxPaths;

    /// <summary>Called once, when the first path is not recorded because the record is full.</summary>
    public Action? Full { get; set; }

    private readonly ConcurrentDictionary<string, Slot> _paths = new(StringComparer.Ordinal);
    private long _next;
    private long _dropped;

    private sealed class Slot(long order)
    {
        public readonly long Order = order;
        // When the path was first asked (UTC ticks): with several trees each root holds a part of
        // the job's record, and a save interleaves the parts in this order (ManifestGather.cs).
        public readonly long FirstUse = DateTime.UtcNow.Ticks;
        public readonly Lock Lock = new();
        public Asked Asked;
        public byte AccessModes;
        public Asked IdentityFrom;
        public int Error;
        public CopperStat St;
    }

    public int Count => _paths.Count;

    /// <summary>Paths not recorded because the record was full.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>
    /// Notes that <paramref name="what"/> was asked of <paramref name="path"/>. A status of 0
    /// with a stat gives the path its identity: the first one, except that an lstat's (the
    /// path itself, not what a symlink names) replaces a stat's or an open's.
    /// </summary>
    public void Record(string path, Asked what, int status, CopperStat? st = null, int accessMode = -1)
    {
        if (!_paths.TryGetValue(path, out Slot? slot))
        {
            if (_paths.Count >= maxPaths)
            {
                if (Interlocked.Increment(ref _dropped) == 1)
                {
                    Full?.Invoke();
                }
                return;
            }
            slot = _paths.GetOrAdd(path, _ => new Slot(Interlocked.Increment(ref _next)));
        }
        lock (slot.Lock)
        {
            slot.Asked |= what;
            if (accessMode is >= 0 and < 8)
            {
                slot.AccessModes |= (byte)(1 << accessMode);
            }
            if (st is { } known && status == 0 && (slot.IdentityFrom == 0 || (what == Asked.Lstat && slot.IdentityFrom != Asked.Lstat)))
            {
                slot.IdentityFrom = what;
                slot.St = known;
                slot.Error = 0;
            }
            else if (status > 0 && slot.IdentityFrom == 0 && slot.Error == 0 && what is Asked.Lstat or Asked.Stat or Asked.Open)
            {
                slot.Error = status;
            }
        }
    }

    /// <summary>The record so far, in first-use order.</summary>
    public List<ManifestEntry> Snapshot() => SnapshotTimed().ConvertAll(x => x.Entry);

    /// <summary>The record so far, in first-use order, each path with when it was first asked (UTC ticks).</summary>
    public List<(long FirstUse, ManifestEntry Entry)> SnapshotTimed()
    {
        var list = new List<(long Order, long FirstUse, ManifestEntry Entry)>(_paths.Count);
        foreach (var (path, slot) in _paths)
        {
            lock (slot.Lock)
            {
                ManifestEntry e = slot.IdentityFrom != 0
                    ? ManifestEntry.Of(path, slot.Asked, 0, slot.St)
                    : new ManifestEntry(path, slot.Asked, slot.Error, 0, 0, 0, 0, 0, 0, 0);
                list.Add((slot.Order, slot.FirstUse, e with { AccessModes = slot.AccessModes }));
            }
        }
        list.Sort((a, b) => a.Order.CompareTo(b.Order));
        return list.ConvertAll(x => (x.FirstUse, x.Entry));
    }
}
