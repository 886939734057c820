// The agent's own mount: answers from the node cache (the same answers and the same tree as
// the shim). The mount's one fallback rule lives here, and only here: wherever the cache
// answers with a status of Copper's own (negative: it could not ask, the answer would not fit
// a reply, the file is larger than -M...), the real file system at that path answers, for
// every operation, as the shim falls back. So every answer leaving this backend is 0 or an
// errno; a real errno from the cache (ENOENT, EACCES...) is an answer and stays one.
using Copper.Interop;

namespace Copper.Agent;

internal sealed class NodeCacheBackend(NodeCache cache) : IFuseBackend
{
    public string StatfsPath => cache.MirrorRoot;

    public StatAnswer Lstat(string path)
    {
        StatAnswer a = cache.StatAsync(path, follow: false, CancellationToken.None).GetAwaiter().GetResult();
        return a.Status >= 0 ? a : RealFileSystem.Stat(path, follow: false);
    }

    public LinkAnswer ReadLink(string path)
    {
        LinkAnswer a = cache.ReadLinkAsync(path, CancellationToken.None).GetAwaiter().GetResult();
        return a.Status >= 0 ? a : RealFileSystem.ReadLink(path);
    }

    public int Access(string path, int mode)
    {
        int s = cache.AccessAsync(path, mode, CancellationToken.None).GetAwaiter().GetResult();
        return s >= 0 ? s : RealFileSystem.Access(path, mode);
    }

    public DirAnswer List(string path)
    {
        DirAnswer a = cache.ListDirAsync(path, CancellationToken.None).GetAwaiter().GetResult();
        return a.Status >= 0 ? a : RealFileSystem.List(path);
    }

    /// <summary>The materialized copy, or else the real file itself (what the shim opens when Copper cannot).</summary>
    public OpenAnswer Open(string path)
    {
        OpenAnswer a = cache.OpenAsync(path, CancellationToken.None).GetAwaiter().GetResult();
        if (a.Status >= 0)
        {
            return a;
        }
        StatAnswer real = RealFileSystem.Stat(path, follow: true);
        if (real.Status != 0)
        {
            return new OpenAnswer(real.Status, 0, default, []);
        }
        OpenKind kind = (real.St.Mode & Interop.Libc.S_IFMT) == Interop.Libc.S_IFDIR ? OpenKind.Dir : OpenKind.File;
        return new OpenAnswer(0, kind, real.St, PathBytes.Encode(path));
    }

    /// <summary>Never asks anyone: "not known here" (negative) means the entry goes without attributes.</summary>
    public int PeekLstat(string path, byte direntType, out CopperStat st) => cache.PeekLstat(path, direntType, out st);
}
