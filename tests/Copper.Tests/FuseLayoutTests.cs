// Interop.Fuse.cs mirrors libfuse3's structs; this test compiles the real headers and fails
// when a size, an offset or a bit-field position disagrees.
using System.Reflection;
using System.Runtime.InteropServices;
using Xunit;

namespace Copper.Tests;

public class FuseLayoutTests
{
    private static readonly Lazy<Dictionary<string, long>> CValues = new(() =>
    {
        string dir = Harness.TempDir("fuselayout");
        string exe = Harness.CompileC(Harness.Program("fuse_layout.c"), Path.Combine(dir, "fuse_layout"), "-I/usr/include/fuse3");
        ProcResult r = Harness.Run(exe, []);
        Directory.Delete(dir, recursive: true);
        Assert.Equal(0, r.ExitCode);
        return r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' '))
            .ToDictionary(p => p[0], p => long.Parse(p[1]));
    });

    // The agent's interop files are compiled into this test project too (see the .csproj), so
    // these are the very declarations the agent uses.
    private static Type Mirror(string name) => name == "StatBuf"
        ? typeof(Copper.Agent.Interop.Libc.StatBuf)
        : typeof(Copper.Agent.Interop.Fuse).GetNestedType(name, BindingFlags.Public)!;

    [Theory]
    [InlineData("fuse_args", "Args")]
    [InlineData("fuse_entry_param", "EntryParam")]
    [InlineData("fuse_file_info", "FuseFileInfo")]
    [InlineData("fuse_loop_config_v1", "LoopConfig")]
    [InlineData("fuse_lowlevel_ops", "Ops")]
    [InlineData("statvfs", "StatVfs")]
    [InlineData("fuse_conn_info", "ConnInfo")]
    [InlineData("stat", "StatBuf")]
    public void SizesAgree(string c, string cs) => Assert.Equal(CValues.Value["sizeof." + c], Marshal.SizeOf(Mirror(cs)));

    [Theory]
    [InlineData("fuse_args", "argv", "Args", "Argv")]
    [InlineData("fuse_args", "allocated", "Args", "Allocated")]
    [InlineData("fuse_entry_param", "attr", "EntryParam", "Attr")]
    [InlineData("fuse_entry_param", "attr_timeout", "EntryParam", "AttrTimeout")]
    [InlineData("fuse_entry_param", "entry_timeout", "EntryParam", "EntryTimeout")]
    [InlineData("fuse_file_info", "fh", "FuseFileInfo", "Fh")]
    [InlineData("fuse_file_info", "lock_owner", "FuseFileInfo", "LockOwner")]
    [InlineData("fuse_file_info", "poll_events", "FuseFileInfo", "PollEvents")]
    [InlineData("fuse_loop_config_v1", "max_idle_threads", "LoopConfig", "MaxIdleThreads")]
    [InlineData("statvfs", "f_flag", "StatVfs", "Flag")]
    [InlineData("fuse_conn_info", "capable", "ConnInfo", "Capable")]
    [InlineData("fuse_conn_info", "want", "ConnInfo", "Want")]
    [InlineData("fuse_conn_info", "time_gran", "ConnInfo", "TimeGran")]
    [InlineData("statvfs", "f_namemax", "StatVfs", "Namemax")]
    [InlineData("fuse_lowlevel_ops", "lookup", "Ops", "Lookup")]
    [InlineData("fuse_lowlevel_ops", "forget", "Ops", "Forget")]
    [InlineData("fuse_lowlevel_ops", "getattr", "Ops", "Getattr")]
    [InlineData("fuse_lowlevel_ops", "setattr", "Ops", "Setattr")]
    [InlineData("fuse_lowlevel_ops", "readlink", "Ops", "Readlink")]
    [InlineData("fuse_lowlevel_ops", "mknod", "Ops", "Mknod")]
    [InlineData("fuse_lowlevel_ops", "mkdir", "Ops", "Mkdir")]
    [InlineData("fuse_lowlevel_ops", "unlink", "Ops", "Unlink")]
    [InlineData("fuse_lowlevel_ops", "rmdir", "Ops", "Rmdir")]
    [InlineData("fuse_lowlevel_ops", "symlink", "Ops", "Symlink")]
    [InlineData("fuse_lowlevel_ops", "rename", "Ops", "Rename")]
    [InlineData("fuse_lowlevel_ops", "link", "Ops", "Link")]
    [InlineData("fuse_lowlevel_ops", "open", "Ops", "Open")]
    [InlineData("fuse_lowlevel_ops", "read", "Ops", "Read")]
    [InlineData("fuse_lowlevel_ops", "write", "Ops", "Write")]
    [InlineData("fuse_lowlevel_ops", "release", "Ops", "Release")]
    [InlineData("fuse_lowlevel_ops", "opendir", "Ops", "Opendir")]
    [InlineData("fuse_lowlevel_ops", "readdir", "Ops", "Readdir")]
    [InlineData("fuse_lowlevel_ops", "releasedir", "Ops", "Releasedir")]
    [InlineData("fuse_lowlevel_ops", "statfs", "Ops", "Statfs")]
    [InlineData("fuse_lowlevel_ops", "setxattr", "Ops", "Setxattr")]
    [InlineData("fuse_lowlevel_ops", "removexattr", "Ops", "Removexattr")]
    [InlineData("fuse_lowlevel_ops", "access", "Ops", "Access")]
    [InlineData("fuse_lowlevel_ops", "create", "Ops", "Create")]
    [InlineData("fuse_lowlevel_ops", "write_buf", "Ops", "WriteBuf")]
    [InlineData("fuse_lowlevel_ops", "forget_multi", "Ops", "ForgetMulti")]
    [InlineData("fuse_lowlevel_ops", "fallocate", "Ops", "Fallocate")]
    [InlineData("fuse_lowlevel_ops", "readdirplus", "Ops", "Readdirplus")]
    [InlineData("fuse_lowlevel_ops", "copy_file_range", "Ops", "CopyFileRange")]
    [InlineData("fuse_lowlevel_ops", "lseek", "Ops", "Lseek")]
    public void OffsetsAgree(string c, string cField, string cs, string csField) =>
        Assert.Equal(CValues.Value[$"offset.{c}.{cField}"], (long)Marshal.OffsetOf(Mirror(cs), csField));

    [Fact]
    public void BitFieldsAgree()
    {
        Assert.Equal((long)Copper.Agent.Interop.Fuse.CapNoOpenSupport, CValues.Value["const.FUSE_CAP_NO_OPEN_SUPPORT"]);
        Assert.Equal((long)Copper.Agent.Interop.Fuse.CapNoOpendirSupport, CValues.Value["const.FUSE_CAP_NO_OPENDIR_SUPPORT"]);
        Assert.Equal((long)Copper.Agent.Interop.Fuse.CapCacheSymlinks, CValues.Value["const.FUSE_CAP_CACHE_SYMLINKS"]);
        Assert.Equal((long)Copper.Agent.Interop.Fuse.KeepCache, CValues.Value["bit.keep_cache"]);
        Assert.Equal((long)Copper.Agent.Interop.Fuse.CacheReaddir, CValues.Value["bit.cache_readdir"]);
        Assert.Equal((long)Copper.Agent.Interop.Fuse.DirectIo, CValues.Value["bit.direct_io"]);
    }
}
