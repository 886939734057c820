// `copper manifest save` in an MPI job. With several trees (-T) each tree's root asks the file
// system for the paths of its own tree, so each holds a part of the job's record. The agent the
// save reaches (on whichever node the command runs) asks the root of every other tree for its
// record (ManifestAsk / ManifestRecord, straight to that rank over MPI, not along a tree: only
// the roots hold anything), waits a bounded time, and writes one manifest: the parts interleaved
// by when each path was first asked, merged into FILE as at stop. A root that does not answer in
// time is named in the reply; the file holds the others' records (with -m, that root merges its
// own into the job's file at its stop). FILE is written from the agent's node: a path it sees.
using System.Buffers.Binary;
using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

internal sealed partial class ManifestGather(TreePeers peers, ManifestRecorder recorder, string prefix)
{
    /// <summary>How long a save waits for the other roots' records (a root encodes its record on the pool).</summary>
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    private readonly ConcurrentDictionary<ulong, (int Rank, TaskCompletionSource<byte[]> Reply)> _waiting = new();
    private long _nextId;

    /// <summary>Every tree's root but this agent: the ranks whose records a save asks for.</summary>
    public int[] OtherRoots() =>
        Enumerable.Range(0, peers.Topo.Trees).Select(peers.Topo.Root).Where(r => r != peers.Rank).Distinct().Order().ToArray();

    /// <summary>Gathers the job's record and merges it into <paramref name="file"/>: 0 or an errno, and a line for the user.</summary>
    public async Task<(int Status, string Message)> SaveAsync(string file)
    {
        int[] roots = OtherRoots();
        Task<(List<(long, ManifestEntry)>? Record, string Why)>[] asks = roots.Select(AskAsync).ToArray();
        var parts = new List<List<(long FirstUse, ManifestEntry Entry)>> { recorder.SnapshotTimed() };
        var missing = new List<string>();
        for (int i = 0; i < roots.Length; i++)
        {
            (List<(long, ManifestEntry)>? record, string why) = await asks[i];
            if (record != null)
            {
                parts.Add(record);
            }
            else
            {
                missing.Add($"rank {roots[i]}'s ({why})");
            }
        }
        List<ManifestEntry> merged = Interleave(parts);
        try
        {
            string note = "";
            int total = await Task.Run(() => Manifest.Save(file, prefix, merged, out note));
            bool root = roots.Length < peers.Topo.Trees;
            string by = (peers.Topo.Trees == 1 ? "the tree's root" : $"the roots of {peers.Topo.Trees} trees") + (root ? "" : " and this agent");
            string said = $"manifest {file}: {total} entries ({merged.Count} recorded by {by}: {parts.Count} of {roots.Length + 1} agents)";
            if (missing.Count > 0)
            {
                said += $"; left out: the record of {string.Join(", ", missing)}; with -m, each root merges its own record into that file at its stop";
            }
            return (0, note.Length > 0 ? said + "; " + note : said);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return (13 /* EACCES */, $"cannot write the manifest {file}: {ex.Message}");
        }
    }

    /// <summary>A ManifestAsk or ManifestRecord (from the progress thread: nothing here blocks).</summary>
    public void OnMessage(int source, in TreeHead h, byte[] m)
    {
        if (h.Kind == TreeKind.ManifestRecord)
        {
            // Only the rank asked may answer, once.
            if (_waiting.TryGetValue(h.Id, out var w) && w.Rank == source && _waiting.TryRemove(h.Id, out _))
            {
                w.Reply.TrySetResult(m);
            }
            return;
        }
        ulong id = h.Id;
        _ = Task.Run(async () =>
        {
            try
            {
                byte[] body = Encode(prefix, recorder.SnapshotTimed());
                byte[] reply = TreeWire.Message(TreeKind.ManifestRecord, 0, 0, 0, 0, id, body.Length);
                body.CopyTo(reply, TreeWire.HeadSize);
                await peers.Send(source, reply);
            }
            catch (Exception ex) when (ex is IOException or InvalidOperationException)
            {
                LogSendFailed(peers.Log, source, ex.Message);
            }
        });
    }

    private async Task<(List<(long, ManifestEntry)>? Record, string Why)> AskAsync(int rank)
    {
        ulong id = (ulong)Interlocked.Increment(ref _nextId);
        var reply = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        _waiting[id] = (rank, reply);
        try
        {
            await peers.Send(rank, TreeWire.Message(TreeKind.ManifestAsk, 0, 0, 0, 0, id, 0));
            byte[] m = await reply.Task.WaitAsync(Patience);
            List<(long, ManifestEntry)>? record = TryDecode(m.AsSpan(TreeWire.HeadSize), prefix, out string why);
            return (record, record == null ? $"sent a record that cannot be read ({why})" : "");
        }
        catch (TimeoutException)
        {
            return (null, $"did not answer within {Patience.TotalSeconds:0} s");
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException)
        {
            return (null, $"could not be asked ({ex.Message})");
        }
        finally
        {
            _waiting.TryRemove(id, out _);
        }
    }

    /// <summary>A record on the wire: u32 L, the manifest's L bytes, then each entry's first-use time (i64).</summary>
    public static byte[] Encode(string prefix, List<(long FirstUse, ManifestEntry Entry)> record)
    {
        byte[] manifest = new Manifest(prefix, record.ConvertAll(x => x.Entry)).Encode();
        byte[] body = new byte[4 + manifest.Length + 8 * record.Count];
        BinaryPrimitives.WriteUInt32LittleEndian(body, (uint)manifest.Length);
        manifest.CopyTo(body, 4);
        for (int i = 0; i < record.Count; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(body.AsSpan(4 + manifest.Length + 8 * i), record[i].FirstUse);
        }
        return body;
    }

    /// <summary>Reads <see cref="Encode"/>'s bytes; null and why when damaged or another prefix's.</summary>
    public static List<(long FirstUse, ManifestEntry Entry)>? TryDecode(ReadOnlySpan<byte> body, string prefix, out string why)
    {
        why = "";
        uint length = body.Length < 4 ? uint.MaxValue : BinaryPrimitives.ReadUInt32LittleEndian(body);
        if (length > body.Length - 4L)
        {
            why = "truncated";
            return null;
        }
        Manifest? m = Manifest.TryDecode(body.Slice(4, (int)length), out why);
        if (m == null)
        {
            return null;
        }
        if (m.Prefix != prefix)
        {
            why = $"recorded for prefix {m.Prefix}";
            return null;
        }
        ReadOnlySpan<byte> times = body[(4 + (int)length)..];
        if (times.Length != 8L * m.Entries.Count)
        {
            why = "first-use times do not match the entries";
            return null;
        }
        var record = new List<(long, ManifestEntry)>(m.Entries.Count);
        for (int i = 0; i < m.Entries.Count; i++)
        {
            record.Add((BinaryPrimitives.ReadInt64LittleEndian(times[(8 * i)..]), m.Entries[i]));
        }
        return record;
    }

    /// <summary>
    /// The parts as one list in first-use order: each part keeps its own order, and the next entry
    /// is the earliest of the parts' next ones (the roots' clocks are the nodes' clocks).
    /// </summary>
    public static List<ManifestEntry> Interleave(IReadOnlyList<List<(long FirstUse, ManifestEntry Entry)>> parts)
    {
        var merged = new List<ManifestEntry>(parts.Sum(p => p.Count));
        int[] next = new int[parts.Count];
        while (true)
        {
            int best = -1;
            for (int p = 0; p < parts.Count; p++)
            {
                if (next[p] < parts[p].Count && (best < 0 || parts[p][next[p]].FirstUse < parts[best][next[best]].FirstUse))
                {
                    best = p;
                }
            }
            if (best < 0)
            {
                return merged;
            }
            merged.Add(parts[best][next[best]++].Entry);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not send this agent's manifest record to rank {Rank}: {Reason}")]
    private static partial void LogSendFailed(ILogger logger, int rank, string reason);
}
