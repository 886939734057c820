// The job's counters, gathered over tree 0 for `copper stats` on the launch node. An agent
// sends its own counters (the JSON of Counters.ToJson) to its parent in tree 0 when they
// changed (looked at once a second) and at stop; each parent keeps the latest entry of every
// node of its subtree and forwards the entries that changed; the root holds the job's picture.
// Each entry carries its age, so a node that stopped reporting shows its last counters, how
// old they are, and "silent".
//
// Unchanged counters are not sent again: liveness travels in Live frames, and one frame speaks
// for a whole subtree: "every node of my subtree was heard from within AGE ms, except these
// ranges" (never heard from, or longer ago than GroupAgeMs, each range with its own age, so one
// dying node does not age its siblings). Leaves send one every HeartbeatTicks seconds, on whole
// seconds of the clock, so the leaves of a subtree beat together; a parent sends its own in the
// tick after a Live from below made an entry fresher (and at least every HeartbeatTicks + 1
// ticks), so one wave climbs the tree per heartbeat and the root receives one frame of 28 bytes
// per child per wave, however many nodes idle below. Ages only grow on the way up (a group has
// the age of its oldest member), so the root never believes a node fresher than it is.
//
// A parent that acknowledges nothing for `patience` (or that requests already gave up on)
// is taken as gone: reports and Live frames then go to the root directly (a Live frame still
// speaks for the sender's subtree), and nothing more is sent to it. What an agent holds also
// names who is alive for the stop: Shutdown goes to every node heard from lately (so a subtree
// under a dead node still stops cleanly) and to no node that fell silent.
//
// Report body (after the tree head): entries, each i32 rank, i32 age of the counters in ms,
// i32 length, then that many bytes of the node's counters JSON.
// Live body: i32 the group's age in ms, then aux (the head's) exception ranges, ascending and
// disjoint, each i32 first rank, i32 count, i32 age in ms (-1: never heard from).
using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

internal sealed partial class TreeStats : IDisposable
{
    public const int HeartbeatTicks = 3;
    public static readonly TimeSpan SilentAfter = TimeSpan.FromSeconds(10);
    // In a Live frame's group: heard from within a heartbeat and the climb of a deep tree's wave.
    internal const int GroupAgeMs = (HeartbeatTicks + 2) * 1000;
    private const int MaxEntryBytes = 64 * 1024;

    private readonly TreePeers peers;
    private readonly long _patienceTicks;
    private readonly int _parent;   // in tree 0; -1 on the root
    private readonly int _root;
    private readonly Lock _lock = new();
    private readonly Dictionary<int, Entry> _latest = new(); // by rank: this node and its subtree; protected by _lock
    private readonly CancellationTokenSource _stopping = new();
    private long _unackedSince;     // Stopwatch timestamp of the oldest report not acknowledged, 0 if none; protected by _lock
    private bool _parentSilent;     // protected by _lock
    private bool _fresh;            // a Live from below made an entry fresher since the last Live sent; protected by _lock
    private long _lastLive;         // Unix second of the last Live sent; protected by _lock
    private byte[]? _ownKey;        // Counters.ActivityKey when this node's entry was last taken; protected by _lock
    private readonly bool _leaf;
    private long _reportFrames, _reportBytes, _liveFrames, _liveBytes; // received (Interlocked)

    private readonly Func<int, bool> _parentDown;

    /// <param name="parentDown">By tree: true while requests gave up on that parent (TreeChild).</param>
    public TreeStats(TreePeers peers, TimeSpan patience, Func<int, bool> parentDown)
    {
        this.peers = peers;
        _parentDown = parentDown;
        _patienceTicks = (long)(Math.Max(patience.TotalSeconds, 1) * Stopwatch.Frequency);
        _parent = peers.Topo.Parent(0, peers.Rank);
        _root = peers.Topo.Root(0);
        _leaf = !peers.Topo.Children(0, peers.Rank).Any();
    }

    private sealed class Entry(byte[] json, long taken)
    {
        public byte[] Json = json;
        public long Taken = taken;  // Stopwatch timestamp the counters were taken at
        public long Heard = taken;  // the latest word of the node's life (counters or a Live frame)
        public bool Dirty = true;   // not yet forwarded
    }

    public bool IsRoot => _parent < 0;

    public void Start()
    {
        Tick();
        new Thread(Loop) { IsBackground = true, Name = "copper-stats" }.Start();
    }

    /// <summary>Stops the periodic reports.</summary>
    public void Dispose() => _stopping.Cancel();

    private void Loop()
    {
        // Ticks fall just after whole seconds of the clock: nodes whose clocks agree beat together.
        while (!_stopping.Token.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(1010 - DateTimeOffset.UtcNow.Millisecond)))
        {
            Tick();
        }
    }

    /// <summary>Sends this node's last counters (and what changed below it) up; waits a little for the send.</summary>
    public async Task FinalReportAsync(TimeSpan wait)
    {
        _stopping.Cancel();
        if (Report(force: true) is { } sent)
        {
            await Task.WhenAny(sent, Task.Delay(wait));
        }
    }

    private void Tick()
    {
        try
        {
            Report(force: false);
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException)
        {
            LogReportFailed(peers.Log, ex.Message);
        }
    }

    /// <summary>
    /// Takes this node's counters; on a non-root, sends the entries that changed (with
    /// <paramref name="force"/>, at least its own) and, when due, a Live frame for its subtree.
    /// </summary>
    private Task? Report(bool force)
    {
        byte[] key = peers.Counters.ActivityKey(peers.Rank);
        long now = Stopwatch.GetTimestamp();
        long second = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var entries = new List<(int Rank, int AgeMs, byte[] Json)>();
        byte[]? live = null;
        int target;
        lock (_lock)
        {
            // The root's own entry is never sent: kept current for `copper stats`.
            bool changed = force || _parent < 0 || _ownKey == null || !_ownKey.AsSpan().SequenceEqual(key);
            _ownKey = key;
            if (!_latest.TryGetValue(peers.Rank, out Entry? self))
            {
                _latest[peers.Rank] = self = new Entry(peers.Counters.ToJson(peers.Rank), now);
            }
            else if (changed)
            {
                self.Json = peers.Counters.ToJson(peers.Rank);
                self.Taken = now;
                self.Dirty = true;
            }
            self.Heard = now;
            if (_parent < 0)
            {
                return null;
            }
            // Silent: no acknowledgement for the patience, or requests already gave up on it.
            if (!_parentSilent && ((_unackedSince != 0 && now - _unackedSince > _patienceTicks) || _parentDown(0)))
            {
                _parentSilent = true;
                _unackedSince = 0;
                foreach (Entry e in _latest.Values)
                {
                    e.Dirty = true;
                }
                LogParentSilent(peers.Log, _parent, _root);
            }
            foreach ((int rank, Entry e) in _latest)
            {
                if (e.Dirty)
                {
                    e.Dirty = false;
                    entries.Add((rank, AgeMs(now, e.Taken), e.Json));
                }
            }
            // (A clock set back counts as due: the last beat's second is no measure then.)
            if (_fresh || second - _lastLive > HeartbeatTicks || second < _lastLive || (_leaf && second % HeartbeatTicks == 0 && second != _lastLive))
            {
                live = Live(now);
                _fresh = false;
                _lastLive = second;
            }
            if (entries.Count == 0 && live == null)
            {
                return null;
            }
            target = _parentSilent ? _root : _parent;
            if (_unackedSince == 0)
            {
                _unackedSince = now;
            }
        }
        Task? sent = entries.Count > 0 ? peers.Send(target, Message(entries)) : null;
        if (live != null)
        {
            Task beat = peers.Send(target, live);
            sent ??= beat;
        }
        return sent;
    }

    private static int AgeMs(long now, long then) => (int)Math.Clamp((now - then) * 1000 / Stopwatch.Frequency, 0, int.MaxValue);

    /// <summary>The ranks of <paramref name="rank"/>'s subtree in tree 0, itself first, ascending (a level is a run of positions).</summary>
    internal static IEnumerable<int> Subtree(TreeTopology topo, int rank)
    {
        long lo = topo.PositionOf(0, rank), hi = lo;
        while (lo < topo.Size)
        {
            for (long p = lo; p <= Math.Min(hi, topo.Size - 1); p++)
            {
                yield return topo.RankAt(0, (int)p);
            }
            lo = lo * topo.Fanout + 1;
            hi = hi * topo.Fanout + topo.Fanout;
        }
    }

    /// <summary>A Live frame for this node's subtree as this node knows it (under _lock).</summary>
    private byte[] Live(long now) =>
        LiveMessage(Subtree(peers.Topo, peers.Rank).Select(rank => (rank, _latest.TryGetValue(rank, out Entry? e) ? AgeMs(now, e.Heard) : -1)));

    /// <summary>
    /// A Live frame from a subtree's (rank, age in ms; -1: never heard from), ranks ascending:
    /// the ages up to <see cref="GroupAgeMs"/> make the group, with the oldest of them as its
    /// age; the others become ranges, neighbours merged (a range takes its oldest age).
    /// </summary>
    internal static byte[] LiveMessage(IEnumerable<(int Rank, int AgeMs)> subtree)
    {
        int group = 0;
        var ranges = new List<(int First, int Count, int AgeMs)>();
        foreach ((int rank, int age) in subtree)
        {
            if (age is >= 0 and <= GroupAgeMs)
            {
                group = Math.Max(group, age);
            }
            else if (ranges.Count > 0 && ranges[^1].First + ranges[^1].Count == rank && (ranges[^1].AgeMs < 0) == (age < 0))
            {
                ranges[^1] = (ranges[^1].First, ranges[^1].Count + 1, Math.Max(ranges[^1].AgeMs, age));
            }
            else
            {
                ranges.Add((rank, 1, age));
            }
        }
        byte[] m = TreeWire.Message(TreeKind.Live, 0, 0, 0, ranges.Count, 0, 4 + 12 * ranges.Count);
        Span<byte> s = m.AsSpan(TreeWire.HeadSize);
        BinaryPrimitives.WriteInt32LittleEndian(s, group);
        s = s[4..];
        foreach ((int first, int count, int age) in ranges)
        {
            BinaryPrimitives.WriteInt32LittleEndian(s, first);
            BinaryPrimitives.WriteInt32LittleEndian(s[4..], count);
            BinaryPrimitives.WriteInt32LittleEndian(s[8..], age);
            s = s[12..];
        }
        return m;
    }

    /// <summary>
    /// Parses a Live frame of a job of <paramref name="size"/> nodes: the group's age and the
    /// ranges (end exclusive), or false for a malformed one (length, order, overlap, bounds).
    /// </summary>
    internal static bool TryReadLive(in TreeHead head, ReadOnlySpan<byte> m, int size, out int group, out (int First, int End, int AgeMs)[] ranges)
    {
        group = -1;
        ranges = [];
        ReadOnlySpan<byte> s = m[Math.Min(TreeWire.HeadSize, m.Length)..];
        int n = head.Aux;
        if (head.Kind != TreeKind.Live || n < 0 || s.Length != 4 + 12L * n)
        {
            return false;
        }
        group = BinaryPrimitives.ReadInt32LittleEndian(s);
        ranges = new (int, int, int)[n];
        int end = 0;
        for (int i = 0; i < n; i++)
        {
            ReadOnlySpan<byte> r = s.Slice(4 + 12 * i, 12);
            int first = BinaryPrimitives.ReadInt32LittleEndian(r);
            int count = BinaryPrimitives.ReadInt32LittleEndian(r[4..]);
            int age = BinaryPrimitives.ReadInt32LittleEndian(r[8..]);
            if (first < end || count < 1 || count > size - first || age < -1)
            {
                return false;
            }
            end = first + count;
            ranges[i] = (first, end, age);
        }
        return group >= 0;
    }

    private static byte[] Message(List<(int Rank, int AgeMs, byte[] Json)> entries)
    {
        int length = entries.Sum(e => 12 + e.Json.Length);
        byte[] m = TreeWire.Message(TreeKind.Report, 0, 0, 0, entries.Count, 0, length);
        Span<byte> s = m.AsSpan(TreeWire.HeadSize);
        foreach ((int rank, int age, byte[] json) in entries)
        {
            BinaryPrimitives.WriteInt32LittleEndian(s, rank);
            BinaryPrimitives.WriteInt32LittleEndian(s[4..], age);
            BinaryPrimitives.WriteInt32LittleEndian(s[8..], json.Length);
            json.CopyTo(s[12..]);
            s = s[(12 + json.Length)..];
        }
        return m;
    }

    /// <summary>A report from a node below (or, when its parent is gone, from anywhere below the root): kept, acknowledged.</summary>
    public void OnReport(int source, byte[] m)
    {
        Interlocked.Increment(ref _reportFrames);
        Interlocked.Add(ref _reportBytes, m.Length);
        long now = Stopwatch.GetTimestamp();
        ReadOnlySpan<byte> s = m.AsSpan(TreeWire.HeadSize);
        lock (_lock)
        {
            while (s.Length >= 12)
            {
                int rank = BinaryPrimitives.ReadInt32LittleEndian(s);
                int age = BinaryPrimitives.ReadInt32LittleEndian(s[4..]);
                int length = BinaryPrimitives.ReadInt32LittleEndian(s[8..]);
                if ((uint)rank >= (uint)peers.Topo.Size || rank == peers.Rank || age < 0 || length < 0 || length > MaxEntryBytes || length > s.Length - 12)
                {
                    LogBadReport(peers.Log, source);
                    break;
                }
                long taken = now - (long)age * Stopwatch.Frequency / 1000;
                if (!_latest.TryGetValue(rank, out Entry? e))
                {
                    _latest[rank] = new Entry(s.Slice(12, length).ToArray(), taken);
                }
                else if (taken >= e.Taken)
                {
                    // (Not older than what came by another way, such as straight from an orphan.)
                    e.Json = s.Slice(12, length).ToArray();
                    e.Taken = taken;
                    e.Heard = Math.Max(e.Heard, taken);
                    e.Dirty = true;
                }
                s = s[(12 + length)..];
            }
        }
        _ = peers.Send(source, TreeWire.Control(TreeKind.ReportAck, 0));
    }

    /// <summary>A Live frame from a node below (or an orphan): its subtree's entries get fresher, acknowledged.</summary>
    public void OnLive(int source, in TreeHead head, byte[] m)
    {
        Interlocked.Increment(ref _liveFrames);
        Interlocked.Add(ref _liveBytes, m.Length);
        if ((uint)source >= (uint)peers.Topo.Size || !TryReadLive(head, m, peers.Topo.Size, out int group, out (int First, int End, int AgeMs)[] ranges))
        {
            LogBadReport(peers.Log, source);
        }
        else
        {
            long now = Stopwatch.GetTimestamp();
            lock (_lock)
            {
                int i = 0;
                foreach (int rank in Subtree(peers.Topo, source))
                {
                    while (i < ranges.Length && ranges[i].End <= rank)
                    {
                        i++;
                    }
                    int age = i < ranges.Length && ranges[i].First <= rank ? ranges[i].AgeMs : group;
                    if (age >= 0 && rank != peers.Rank && _latest.TryGetValue(rank, out Entry? e))
                    {
                        long heard = now - (long)age * Stopwatch.Frequency / 1000;
                        if (heard > e.Heard)
                        {
                            e.Heard = heard;
                            _fresh = true;
                        }
                    }
                }
            }
        }
        _ = peers.Send(source, TreeWire.Control(TreeKind.ReportAck, 0));
    }

    public void OnAck(int source)
    {
        lock (_lock)
        {
            if (source == (_parentSilent ? _root : _parent))
            {
                _unackedSince = 0;
            }
        }
    }

    /// <summary>Nodes other than this one heard from within <see cref="SilentAfter"/>.</summary>
    public List<int> Heard()
    {
        long since = Stopwatch.GetTimestamp() - (long)(SilentAfter.TotalSeconds * Stopwatch.Frequency);
        lock (_lock)
        {
            return _latest.Where(kv => kv.Key != peers.Rank && kv.Value.Heard >= since).Select(kv => kv.Key).ToList();
        }
    }

    /// <summary>True for a node that reported once and has been silent for longer than <see cref="SilentAfter"/>.</summary>
    public bool Silent(int rank)
    {
        long since = Stopwatch.GetTimestamp() - (long)(SilentAfter.TotalSeconds * Stopwatch.Frequency);
        lock (_lock)
        {
            return _latest.TryGetValue(rank, out Entry? e) && e.Heard < since;
        }
    }

    /// <summary>
    /// On the root: "job": every node's last counters with their age and whether it is silent;
    /// a node never heard from is listed with its number only.
    /// </summary>
    public void DescribeTo(Utf8JsonWriter w)
    {
        // What reached this node (on the root: the job's reporting cost), whole messages.
        w.WriteNumber("stats_report_frames_received", Interlocked.Read(ref _reportFrames));
        w.WriteNumber("stats_report_bytes_received", Interlocked.Read(ref _reportBytes));
        w.WriteNumber("stats_live_frames_received", Interlocked.Read(ref _liveFrames));
        w.WriteNumber("stats_live_bytes_received", Interlocked.Read(ref _liveBytes));
        if (!IsRoot)
        {
            return;
        }
        long now = Stopwatch.GetTimestamp();
        var copy = new Dictionary<int, (byte[] Json, long Heard)>();
        lock (_lock)
        {
            foreach ((int rank, Entry e) in _latest)
            {
                copy[rank] = (e.Json, e.Heard);
            }
        }
        w.WriteStartObject("job");
        w.WriteNumber("nodes", peers.Topo.Size);
        w.WriteNumber("silent_after_s", SilentAfter.TotalSeconds);
        w.WriteStartArray("entries");
        for (int rank = 0; rank < peers.Topo.Size; rank++)
        {
            w.WriteStartObject();
            if (copy.TryGetValue(rank, out var entry))
            {
                double age = rank == peers.Rank ? 0 : (double)(now - entry.Heard) / Stopwatch.Frequency;
                try
                {
                    using JsonDocument doc = JsonDocument.Parse(entry.Json);
                    foreach (JsonProperty p in doc.RootElement.EnumerateObject())
                    {
                        if (p.Name is not ("age_s" or "silent"))
                        {
                            p.WriteTo(w);
                        }
                    }
                }
                catch (JsonException)
                {
                    w.WriteNumber("node", rank);
                }
                w.WriteNumber("age_s", Math.Round(age, 1));
                w.WriteBoolean("silent", age > SilentAfter.TotalSeconds);
            }
            else
            {
                w.WriteNumber("node", rank);
                w.WriteNull("age_s");
                w.WriteBoolean("silent", true);
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "tree 0: parent {Parent} acknowledges no report; reporting to the root {Root} directly")]
    private static partial void LogParentSilent(ILogger logger, int parent, int root);

    [LoggerMessage(Level = LogLevel.Warning, Message = "a malformed report from rank {Source} was dropped")]
    private static partial void LogBadReport(ILogger logger, int source);

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not report the counters: {Reason}")]
    private static partial void LogReportFailed(ILogger logger, string reason);
}
