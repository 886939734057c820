// Paths are bytes on Linux; .NET strings are UTF-16. A name that is not valid UTF-8 (a
// Latin-1 file name, a stray byte) must survive the trip through the agent (the mount, the
// tree, the cache, the mirror) byte for byte. So every byte that is not part of valid UTF-8
// becomes the lone surrogate U+DC00 + byte (Python's "surrogateescape"), which decoding valid
// UTF-8 never produces, and turns back into that byte on the way out: to the kernel through
// PathMarshaller, to clients and other agents through Encode.
using System.Buffers;
using System.Runtime.InteropServices;
using System.Runtime.InteropServices.Marshalling;
using System.Text;
using System.Text.Unicode;

namespace Copper.Agent;

internal static class PathBytes
{
    /// <summary>The string standing for <paramref name="bytes"/>; valid UTF-8 decodes as usual.</summary>
    public static string Decode(ReadOnlySpan<byte> bytes)
    {
        if (Utf8.IsValid(bytes))
        {
            return Encoding.UTF8.GetString(bytes);
        }
        var sb = new StringBuilder(bytes.Length);
        Span<char> pair = stackalloc char[2];
        while (!bytes.IsEmpty)
        {
            if (Rune.DecodeFromUtf8(bytes, out Rune r, out int used) == OperationStatus.Done)
            {
                sb.Append(pair[..r.EncodeToUtf16(pair)]);
            }
            else
            {
                sb.Append((char)(0xDC00 + bytes[0]));
                used = 1;
            }
            bytes = bytes[used..];
        }
        return sb.ToString();
    }

    /// <summary>The bytes <paramref name="s"/> stands for (the inverse of <see cref="Decode"/>).</summary>
    public static byte[] Encode(string s)
    {
        if (s.AsSpan().IndexOfAnyInRange('\uDC80', '\uDCFF') < 0)
        {
            return Encoding.UTF8.GetBytes(s);
        }
        var w = new ArrayBufferWriter<byte>(s.Length + 8);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                Write(w, new Rune(c, s[++i]));
            }
            else if (c is >= '\uDC80' and <= '\uDCFF')
            {
                w.GetSpan(1)[0] = (byte)(c - 0xDC00);
                w.Advance(1);
            }
            else
            {
                Write(w, char.IsSurrogate(c) ? Rune.ReplacementChar : new Rune(c));
            }
        }
        return w.WrittenSpan.ToArray();
    }

    /// <summary>How many bytes <paramref name="s"/> stands for.</summary>
    public static int ByteCount(string s) =>
        s.AsSpan().IndexOfAnyInRange('\uDC80', '\uDCFF') < 0 ? Encoding.UTF8.GetByteCount(s) : Encode(s).Length;

    private static void Write(ArrayBufferWriter<byte> w, Rune r)
    {
        int n = r.EncodeToUtf8(w.GetSpan(4));
        w.Advance(n);
    }
}

/// <summary>Marshals a path string to the NUL-terminated bytes it stands for (<see cref="PathBytes"/>).</summary>
[CustomMarshaller(typeof(string), MarshalMode.ManagedToUnmanagedIn, typeof(PathMarshaller))]
internal static unsafe class PathMarshaller
{
    public static byte* ConvertToUnmanaged(string? managed)
    {
        if (managed == null)
        {
            return null;
        }
        byte[] b = PathBytes.Encode(managed);
        byte* p = (byte*)NativeMemory.Alloc((nuint)b.Length + 1);
        b.CopyTo(new Span<byte>(p, b.Length));
        p[b.Length] = 0;
        return p;
    }

    public static void Free(byte* unmanaged) => NativeMemory.Free(unmanaged);
}
