// The agent's second door: the prefix mounted read-only with libfuse3's low-level API, served
// from the same answers as the shim. This only composes the parts: the session with libfuse
// (FuseSession.cs: load, mount, the loop, the one guard, the counts), the entry points
// (FuseHandlers.cs), the operations (FuseOps.cs) and the inode table (FuseInodes.cs). What is
// served, and the fallback to the real file system, is the backend's (FuseBackend.cs).
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

internal sealed class FuseMount : IDisposable
{
    private readonly FuseSession _session;
    private readonly FuseOps _ops;

    private FuseMount(string mountPoint, FuseSession session, FuseOps ops)
    {
        MountPoint = mountPoint;
        _session = session;
        _ops = ops;
    }

    public string MountPoint { get; }

    /// <summary>
    /// Mounts <paramref name="mountPoint"/> and serves it on libfuse's threads. With
    /// <paramref name="kernelCaching"/> the kernel keeps entries, attributes and negative lookups
    /// for <paramref name="timeout"/> seconds, and file pages and listings (keep_cache, no-open);
    /// without it the kernel caches nothing and every client operation reaches the backend (the
    /// benchmarks' PFS model). <paramref name="onRead"/> hears the bytes of each read served.
    /// Refuses a mount point that holds entries (the mount would hide them).
    /// </summary>
    public static FuseMount Start(IFuseBackend fs, ILogger log, string mountPoint, double timeout, bool kernelCaching = true, Action<long>? onRead = null)
    {
        var session = new FuseSession(log);
        var ops = new FuseOps(fs, session.ForgetAttributes, timeout, kernelCaching, onRead);
        session.Mount(ops, mountPoint);
        return new FuseMount(mountPoint, session, ops);
    }

    /// <summary>FUSE requests served, by operation (for `copper stats`).</summary>
    public void DescribeTo(System.Text.Json.Utf8JsonWriter w)
    {
        w.WriteString("fuse_mount", MountPoint);
        _session.DescribeTo(w);
    }

    public void Dispose()
    {
        _session.Dispose();
        _ops.Dispose();
    }
}
