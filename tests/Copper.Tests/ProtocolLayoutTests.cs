// The wire protocol is defined once, in interop/copper_protocol.h. This test compiles the
// header and fails when the C# mirror disagrees on any size, offset or constant.
using System.Runtime.InteropServices;
using Copper.Interop;
using Xunit;

namespace Copper.Tests;

public class ProtocolLayoutTests
{
    private static readonly Lazy<Dictionary<string, string>> CValues = new(() =>
    {
        string dir = Harness.TempDir("layout");
        string exe = Harness.CompileC(Harness.Program("layout.c"), Path.Combine(dir, "layout"), "-I", Path.Combine(Harness.RepoRoot, "interop"));
        ProcResult r = Harness.Run(exe, Array.Empty<string>());
        Directory.Delete(dir, recursive: true);
        Assert.Equal(0, r.ExitCode);
        return r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' '))
            .ToDictionary(p => p[0], p => p[1]);
    });

    private static long C(string key) => long.Parse(CValues.Value[key]);

    public static TheoryData<string, int> Sizes => new()
    {
        { "copper_frame_header", Marshal.SizeOf<FrameHeader>() },
        { "copper_hello", Marshal.SizeOf<Hello>() },
        { "copper_hello_reply", Marshal.SizeOf<HelloReply>() },
        { "copper_reply_head", Marshal.SizeOf<ReplyHead>() },
        { "copper_stat", Marshal.SizeOf<CopperStat>() },
        { "copper_access_req", Marshal.SizeOf<AccessRequest>() },
        { "copper_dirent", Marshal.SizeOf<CopperDirent>() },
        { "copper_dirent_plus", Marshal.SizeOf<CopperDirentPlus>() },
        { "copper_listdir_req", Marshal.SizeOf<ListDirRequest>() },
        { "copper_open_reply", Marshal.SizeOf<OpenReply>() },
    };

    [Theory]
    [MemberData(nameof(Sizes))]
    public void StructSizesAgree(string cName, int csharpSize) => Assert.Equal(C("sizeof." + cName), csharpSize);

    public static TheoryData<string, string, string> Offsets => new()
    {
        { "copper_frame_header", "length", "Length" },
        { "copper_frame_header", "op", "Op" },
        { "copper_frame_header", "flags", "Flags" },
        { "copper_frame_header", "reserved", "Reserved" },
        { "copper_frame_header", "request_id", "RequestId" },
        { "copper_hello", "magic", "Magic" },
        { "copper_hello", "major", "Major" },
        { "copper_hello", "minor", "Minor" },
        { "copper_hello", "pid", "Pid" },
        { "copper_hello_reply", "magic", "Magic" },
        { "copper_hello_reply", "agent_pid", "AgentPid" },
        { "copper_hello_reply", "node", "Node" },
        { "copper_hello_reply", "max_cacheable", "MaxCacheable" },
        { "copper_reply_head", "status", "Status" },
        { "copper_stat", "dev", "Dev" },
        { "copper_stat", "ino", "Ino" },
        { "copper_stat", "nlink", "Nlink" },
        { "copper_stat", "mode", "Mode" },
        { "copper_stat", "uid", "Uid" },
        { "copper_stat", "gid", "Gid" },
        { "copper_stat", "rdev", "Rdev" },
        { "copper_stat", "size", "Size" },
        { "copper_stat", "blksize", "Blksize" },
        { "copper_stat", "blocks", "Blocks" },
        { "copper_stat", "atime_sec", "AtimeSec" },
        { "copper_stat", "mtime_sec", "MtimeSec" },
        { "copper_stat", "mtime_nsec", "MtimeNsec" },
        { "copper_stat", "ctime_nsec", "CtimeNsec" },
        { "copper_access_req", "mode", "Mode" },
        { "copper_dirent", "ino", "Ino" },
        { "copper_dirent", "type", "Type" },
        { "copper_dirent", "name_length", "NameLength" },
        { "copper_listdir_req", "flags", "Flags" },
        { "copper_dirent_plus", "de", "De" },
        { "copper_dirent_plus", "lstat_status", "LstatStatus" },
        { "copper_dirent_plus", "open_kind", "OpenKind" },
        { "copper_dirent_plus", "st", "St" },
        { "copper_open_reply", "kind", "Kind" },
        { "copper_open_reply", "st", "St" },
    };

    private static readonly Dictionary<string, Type> Mirrors = new()
    {
        ["copper_frame_header"] = typeof(FrameHeader),
        ["copper_hello"] = typeof(Hello),
        ["copper_hello_reply"] = typeof(HelloReply),
        ["copper_reply_head"] = typeof(ReplyHead),
        ["copper_stat"] = typeof(CopperStat),
        ["copper_access_req"] = typeof(AccessRequest),
        ["copper_dirent"] = typeof(CopperDirent),
        ["copper_dirent_plus"] = typeof(CopperDirentPlus),
        ["copper_listdir_req"] = typeof(ListDirRequest),
        ["copper_open_reply"] = typeof(OpenReply),
    };

    [Theory]
    [MemberData(nameof(Offsets))]
    public void FieldOffsetsAgree(string cStruct, string cField, string csField) =>
        Assert.Equal(C($"offset.{cStruct}.{cField}"), (long)Marshal.OffsetOf(Mirrors[cStruct], csField));

    [Fact]
    public void ConstantsAgree()
    {
        Assert.Equal((long)Protocol.Magic, C("const.COPPER_PROTOCOL_MAGIC"));
        Assert.Equal((long)Protocol.Major, C("const.COPPER_PROTOCOL_MAJOR"));
        Assert.Equal((long)Protocol.Minor, C("const.COPPER_PROTOCOL_MINOR"));
        Assert.Equal((long)Protocol.HeaderSize, C("const.COPPER_HEADER_SIZE"));
        Assert.Equal((long)Protocol.MaxPayload, C("const.COPPER_MAX_PAYLOAD"));
        Assert.Equal((long)Protocol.MaxPath, C("const.COPPER_MAX_PATH"));
        Assert.Equal((long)Protocol.Reply, C("const.COPPER_REPLY"));
        Assert.Equal((long)Protocol.MaxOp, C("const.COPPER_OP_MAX"));
        Assert.Equal((long)Protocol.StatusFallback, C("const.COPPER_S_FALLBACK"));
        Assert.Equal((long)Protocol.StatusTooBig, C("const.COPPER_S_TOO_BIG"));
        Assert.Equal((long)Protocol.StatusTooLong, C("const.COPPER_S_TOO_LONG"));
        Assert.Equal((long)OpenKind.File, C("const.COPPER_OPEN_FILE"));
        Assert.Equal((long)OpenKind.Dir, C("const.COPPER_OPEN_DIR"));
        Assert.Equal((long)ListDirRequest.CachedOnly, C("const.COPPER_LISTDIR_CACHED_ONLY"));
        foreach (Op op in Enum.GetValues<Op>())
        {
            Assert.Equal(C("const.COPPER_OP_" + op.ToString().ToUpperInvariant()), (long)op);
        }
        Assert.Equal(Enum.GetValues<Op>().Length, (int)C("const.COPPER_OP_MAX"));
    }

    [Theory]
    [InlineData("/tmp/alice/copper")]
    [InlineData("")]
    public void SocketNameHashAgrees(string prefix) =>
        Assert.Equal(CValues.Value["fnv." + prefix], Protocol.Fnv1a64(prefix).ToString("x16"));
}
