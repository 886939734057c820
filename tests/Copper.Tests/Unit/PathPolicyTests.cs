// Paths from clients (PathPolicy): decoded and checked again, normalized lexically so `..`
// never climbs above `/`, and the agent's own prefix stripped only where it is a whole
// leading path component.
using System.Buffers;
using System.Text;
using Copper.Agent;
using Copper.Interop;
using Xunit;
using Libc = Copper.Agent.Interop.Libc;

namespace Copper.Tests.Unit;

public class PathPolicyTests
{
    private const string Prefix = "/tmp/alice/copper";

    [Theory]
    [InlineData("/", "/")]
    [InlineData("/lus/proj", "/lus/proj")]
    [InlineData("/..", "/")]
    [InlineData("/../../..", "/")]
    [InlineData("/lus/../../etc/passwd", "/etc/passwd")]
    [InlineData("/lus/proj/../env/./lib", "/lus/env/lib")]
    [InlineData("//lus///proj//", "/lus/proj")]
    [InlineData("/./././", "/")]
    [InlineData("/lus/proj/", "/lus/proj")]
    [InlineData("/lus/proj/.", "/lus/proj")]
    [InlineData("/lus/proj/..", "/lus")]
    [InlineData("/lus/.../..a/.b", "/lus/.../..a/.b")]
    public void NormalizeCollapsesDotsAndSlashesAndClampsDotDotAtTheRoot(string path, string normal)
    {
        Assert.Equal(normal, PathPolicy.Normalize(path));
    }

    private static int Decode(byte[] raw, out string path) => PathPolicy.TryDecode(new ReadOnlySequence<byte>(raw), out path);

    [Fact]
    public void TryDecodeNormalizesAValidPath()
    {
        Assert.Equal(0, Decode("/lus/proj/../../../etc//passwd"u8.ToArray(), out string path));
        Assert.Equal("/etc/passwd", path);
        Assert.Equal(0, Decode(Encoding.UTF8.GetBytes("/données/日本語/🐍.py"), out path));
        Assert.Equal("/données/日本語/🐍.py", path);
    }

    [Fact]
    public void TryDecodeReadsAPathSplitAcrossBufferSegments()
    {
        byte[] whole = Encoding.UTF8.GetBytes("/lus/é/../x");
        var first = new Segment(whole.AsMemory(0, 6));   // cuts é in two
        Segment last = first.Append(whole.AsMemory(6));
        Assert.Equal(0, PathPolicy.TryDecode(new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length), out string path));
        Assert.Equal("/lus/x", path);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }

    [Fact]
    public void TryDecodeRefusesWhatNoFileSystemWouldLookUp()
    {
        Assert.Equal(Libc.ENOENT, Decode([], out _));
        Assert.Equal(Libc.EINVAL, Decode("lus/proj"u8.ToArray(), out _));
        Assert.Equal(Libc.EINVAL, Decode("/lus/a\0b"u8.ToArray(), out _));
        byte[] longest = Encoding.ASCII.GetBytes("/" + new string('a', Protocol.MaxPath - 2));
        Assert.Equal(0, Decode(longest, out _));
        byte[] tooLong = Encoding.ASCII.GetBytes("/" + new string('a', Protocol.MaxPath - 1));
        Assert.Equal(Libc.ENAMETOOLONG, Decode(tooLong, out _));
    }

    [Fact]
    public void TryDecodeKeepsTheBytesOfANameThatIsNotUtf8()
    {
        byte[] raw = [.. "/lus//caf"u8, 0xE9, .. "/./x"u8];
        Assert.Equal(0, Decode(raw, out string path));
        Assert.Equal([.. "/lus/caf"u8, 0xE9, .. "/x"u8], PathBytes.Encode(path));
    }

    [Theory]
    [InlineData(Prefix + "/etc/hosts", "/etc/hosts")]
    [InlineData(Prefix, "/")]
    [InlineData(Prefix + "/", "/")]
    [InlineData(Prefix + Prefix + "/etc", "/etc")]
    [InlineData(Prefix + Prefix + Prefix, "/")]
    [InlineData(Prefix + ".n3/lus/proj", "/lus/proj")]
    [InlineData(Prefix + ".n12", "/")]
    [InlineData(Prefix + ".n3" + Prefix + ".n3/lib", "/lib")]
    [InlineData(Prefix + ".n3" + Prefix + "/lib", "/lib")]
    [InlineData(Prefix + "/etc" + Prefix, "/etc" + Prefix)]
    public void StripOwnPrefixRemovesEveryLeadingPrefix(string path, string stripped)
    {
        Assert.Equal(stripped, PathPolicy.StripOwnPrefix(path, Prefix));
    }

    [Theory]
    [InlineData(Prefix + "foo/etc")]
    [InlineData(Prefix + "foo")]
    [InlineData(Prefix + ".old/etc")]
    [InlineData(Prefix + ".n/etc")]
    [InlineData(Prefix + ".nx/etc")]
    [InlineData(Prefix + ".n3x/etc")]
    [InlineData("/tmp/alice/coppe")]
    [InlineData("/etc" + Prefix)]
    [InlineData("/lus/proj")]
    public void StripOwnPrefixLeavesANameThatOnlyStartsWithThePrefixString(string path)
    {
        Assert.Equal(path, PathPolicy.StripOwnPrefix(path, Prefix));
    }
}
