// What an agent counts: requests served, cache hits and misses, coalesced waits, and
// real file-system operations by kind. Written as JSON for `copper stats` and at exit.
using System.Text.Json;

namespace Copper.Agent;

internal enum PfsOp
{
    Stat,
    Lstat,
    ReadLink,
    Access,
    OpenDir,
    ReadDir,
    Open,
    Read,
}

internal sealed class Counters
{
    private readonly long[] _pfs = new long[Enum.GetValues<PfsOp>().Length];
    private long _requests;
    private long _hits;
    private long _misses;
    private long _coalesced;
    private long _pfsBytes;
    private long _bytesServed;
    private long _connections;
    private long _rejected;
    private long _forwarded;
    private long _childRequests;
    private long _bytesFromParent;
    private long _bytesToChildren;
    private long _parentTimeouts;
    private long _degraded;
    private long _evictions;
    private long _bytesEvicted;
    private long _mirrorHeld;
    private long _mirrorHighWater;

    private long _metaEntries;
    private long _metaHighWater;
    private long _metaEvicted;

    /// <summary>The mirror's budget in bytes (0: none set).</summary>
    public long MirrorBudget { get; set; }

    /// <summary>The bound on metadata entries (0: none set).</summary>
    public long MetaBound { get; set; }
    private long _control;
    private long _mirrorFiles;
    private long _mirrorBytes;

    // When this agent started (Unix seconds): a constant, so an idle agent's counters stay
    // unchanged (TreeStats reports only what changed); the job's duration is computed from it.
    private readonly long _started = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public void Pfs(PfsOp op) => Interlocked.Increment(ref _pfs[(int)op]);

    public void AddPfsBytes(long n) => Interlocked.Add(ref _pfsBytes, n);

    /// <summary>A request of the job's (not one of <see cref="Control"/>'s).</summary>
    public void Request() => Interlocked.Increment(ref _requests);

    /// <summary>A request about the agent itself (ping, stats, manifest), written in requests too.</summary>
    public void Control() => Interlocked.Increment(ref _control);

    public void Hit() => Interlocked.Increment(ref _hits);

    public void Miss() => Interlocked.Increment(ref _misses);

    public void Coalesced() => Interlocked.Increment(ref _coalesced);

    public void Served(long bytes) => Interlocked.Add(ref _bytesServed, bytes);

    public void Connection() => Interlocked.Increment(ref _connections);

    public void Rejected() => Interlocked.Increment(ref _rejected);

    /// <summary>A request this agent sent up the tree.</summary>
    public void Forwarded() => Interlocked.Increment(ref _forwarded);

    /// <summary>A request a child agent sent here.</summary>
    public void ChildRequest() => Interlocked.Increment(ref _childRequests);

    public void FromParent(long bytes) => Interlocked.Add(ref _bytesFromParent, bytes);

    public void ToChildren(long bytes) => Interlocked.Add(ref _bytesToChildren, bytes);

    public void ParentTimeout() => Interlocked.Increment(ref _parentTimeouts);

    /// <summary>An answer read from the real file system because the parent could not give it.</summary>
    public void Degraded() => Interlocked.Increment(ref _degraded);

    /// <summary>A materialized file removed from the mirror to make room.</summary>
    public void Evicted(long bytes)
    {
        Interlocked.Increment(ref _evictions);
        Interlocked.Add(ref _bytesEvicted, bytes);
    }

    /// <summary>The mirror now holds (or has reserved) <paramref name="bytes"/>.</summary>
    public void MirrorSize(long bytes)
    {
        Interlocked.Exchange(ref _mirrorHeld, bytes);
        long high;
        while (bytes > (high = Interlocked.Read(ref _mirrorHighWater))
            && Interlocked.CompareExchange(ref _mirrorHighWater, bytes, high) != high)
        {
        }
    }

    /// <summary>The node now keeps <paramref name="entries"/> metadata entries.</summary>
    public void MetaSize(long entries)
    {
        Interlocked.Exchange(ref _metaEntries, entries);
        long high;
        while (entries > (high = Interlocked.Read(ref _metaHighWater))
            && Interlocked.CompareExchange(ref _metaHighWater, entries, high) != high)
        {
        }
    }

    /// <summary>Metadata entries evicted to stay within the bound.</summary>
    public void MetaEvicted(long entries) => Interlocked.Add(ref _metaEvicted, entries);

    /// <summary>A file materialized in the mirror (a file replaced by a newer version counts again).</summary>
    public void Mirrored(long bytes)
    {
        Interlocked.Increment(ref _mirrorFiles);
        Interlocked.Add(ref _mirrorBytes, bytes);
    }

    public long PfsTotal
    {
        get
        {
            long total = 0;
            for (int i = 0; i < _pfs.Length; i++)
            {
                total += Interlocked.Read(ref _pfs[i]);
            }
            return total;
        }
    }

    /// <summary>Facts about this agent's place in the job, written with the counters.</summary>
    public Action<Utf8JsonWriter>? Describe { get; set; }

    /// <summary>On the root of the tree: every node's counters (TreeStats), for `copper stats` and the file at exit.</summary>
    public Action<Utf8JsonWriter>? Job { get; set; }

    /// <summary>This agent's counters; with <paramref name="job"/>, also the job's (on the root).</summary>
    public byte[] ToJson(int node, bool job = false) => Write(node, job, activity: false);

    /// <summary>
    /// The counters without what asking about the agent itself changes (control requests, and
    /// connections, which the job's requests change too): equal on two calls when the job did
    /// nothing meanwhile, even if `copper stats --watch` polled this agent (TreeStats reports a
    /// node's counters only when this changed).
    /// </summary>
    public byte[] ActivityKey(int node) => Write(node, job: false, activity: true);

    private byte[] Write(int node, bool job, bool activity)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = false }))
        {
            w.WriteStartObject();
            w.WriteNumber("node", node);
            long control = activity ? 0 : Interlocked.Read(ref _control);
            w.WriteNumber("requests", Interlocked.Read(ref _requests) + control);
            w.WriteNumber("control_requests", control);
            w.WriteNumber("cache_hits", Interlocked.Read(ref _hits));
            w.WriteNumber("cache_misses", Interlocked.Read(ref _misses));
            w.WriteNumber("coalesced", Interlocked.Read(ref _coalesced));
            w.WriteNumber("connections", activity ? 0 : Interlocked.Read(ref _connections));
            w.WriteNumber("connections_rejected", Interlocked.Read(ref _rejected));
            w.WriteNumber("bytes_served", Interlocked.Read(ref _bytesServed));
            w.WriteNumber("forwarded_up", Interlocked.Read(ref _forwarded));
            w.WriteNumber("child_requests", Interlocked.Read(ref _childRequests));
            w.WriteNumber("bytes_from_parent", Interlocked.Read(ref _bytesFromParent));
            w.WriteNumber("bytes_to_children", Interlocked.Read(ref _bytesToChildren));
            w.WriteNumber("parent_timeouts", Interlocked.Read(ref _parentTimeouts));
            w.WriteNumber("degraded", Interlocked.Read(ref _degraded));
            w.WriteNumber("mirror_budget", MirrorBudget);
            w.WriteNumber("mirror_held_bytes", Interlocked.Read(ref _mirrorHeld));
            w.WriteNumber("mirror_high_water", Interlocked.Read(ref _mirrorHighWater));
            w.WriteNumber("evictions", Interlocked.Read(ref _evictions));
            w.WriteNumber("bytes_evicted", Interlocked.Read(ref _bytesEvicted));
            w.WriteNumber("meta_bound", MetaBound);
            w.WriteNumber("meta_entries", Interlocked.Read(ref _metaEntries));
            w.WriteNumber("meta_high_water", Interlocked.Read(ref _metaHighWater));
            w.WriteNumber("meta_evicted", Interlocked.Read(ref _metaEvicted));
            w.WriteNumber("pfs_bytes", Interlocked.Read(ref _pfsBytes));
            w.WriteNumber("pfs_ops", PfsTotal);
            w.WriteNumber("mirror_files", Interlocked.Read(ref _mirrorFiles));
            w.WriteNumber("mirror_bytes", Interlocked.Read(ref _mirrorBytes));
            w.WriteNumber("started_unix", _started);
            w.WriteStartObject("pfs_ops_by_kind");
            foreach (PfsOp op in Enum.GetValues<PfsOp>())
            {
                w.WriteNumber(op.ToString().ToLowerInvariant(), Interlocked.Read(ref _pfs[(int)op]));
            }
            w.WriteEndObject();
            Describe?.Invoke(w);
            if (job)
            {
                Job?.Invoke(w);
            }
            w.WriteEndObject();
        }
        return ms.ToArray();
    }
}
