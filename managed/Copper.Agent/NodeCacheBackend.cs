// The agent's own mount: answers from the node cache (the same answers and the same tree as
// the shim); where Copper cannot answer, the real file system does, as the shim falls back.
using Copper.Interop;

namespace Copper.Agent;

internal sealed class NodeCacheBackend(NodeCache cache) : IFuseBackend
{
    public string StatfsPath => cache.MirrorRoot;

    public StatAnswer Lstat(string path)
    {
        StatAnswer a = cache.StatAsync(path, follow: false, CancellationToken.None).GetAwaiter().GetResult();
        if (a.Status >= 0)
        {
            return a;
        }
        return Interop.Libc.Lstat(path, out Interop.Libc.StatBuf b) == 0 ? new StatAnswer(0, Interop.Libc.ToCopper(b)) : new StatAnswer(Interop.Libc.Errno, default);
    }

    public LinkAnswer ReadLink(string path) => cache.ReadLinkAsync(path, CancellationToken.None).GetAwaiter().GetResult();

    public int Access(string path, int mode)
    {
        int s = cache.AccessAsync(path, mode, CancellationToken.None).GetAwaiter().GetResult();
        return s >= 0 ? s : (Interop.Libc.Access(path, mode) == 0 ? 0 : Interop.Libc.Errno);
    }

    public DirAnswer List(string path) => cache.ListDirAsync(path, CancellationToken.None).GetAwaiter().GetResult();

    public OpenAnswer Open(string path) => cache.OpenAsync(path, CancellationToken.None).GetAwaiter().GetResult();

    public int PeekLstat(string path, byte direntType, out CopperStat st) => cache.PeekLstat(path, direntType, out st);
}
