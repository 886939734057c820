// The job's counters, gathered over tree 0 for `copper stats` on the launch node. Every
// agent sends its own counters (the JSON of Counters.ToJson) to its parent in tree 0 once a
// second while they change, at least every HeartbeatTicks seconds while they do not, and at
// stop; each parent keeps the latest entry of every node of its subtree and forwards the
// entries that changed; the root holds the job's picture. Each entry carries its age, so a
// node that stopped reporting shows its last counters, how old they are, and "silent".
//
// A parent that acknowledges no report for `patience` (or that requests already gave up on)
// is taken as gone: reports then go to the root directly, and nothing more is sent to it. What an agent holds also names
// who is alive for the stop: Shutdown goes to every node heard from lately (so a subtree
// under a dead node still stops cleanly) and to no node that fell silent.
//
// Report body (after the tree head): entries, each i32 rank, i32 age in ms, i32 length, then
// that many bytes of the node's counters JSON.
using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

internal sealed partial class TreeStats : IDisposable
{
    public const int HeartbeatTicks = 3;
    public static readonly TimeSpan SilentAfter = TimeSpan.FromSeconds(10);
    private const int MaxEntryBytes = 64 * 1024;
    private static readonly TimeSpan Every = TimeSpan.FromSeconds(1);

    private readonly TreePeers peers;
    private readonly long _patienceTicks;
    private readonly int _parent;   // in tree 0; -1 on the root
    private readonly int _root;
    private readonly Lock _lock = new();
    private readonly Dictionary<int, Entry> _latest = new(); // by rank: this node and its subtree; protected by _lock
    private readonly CancellationTokenSource _stopping = new();
    private long _unackedSince;     // Stopwatch timestamp of the oldest report not acknowledged, 0 if none; protected by _lock
    private bool _parentSilent;     // protected by _lock
    private int _ticks;
    private long _reportFrames, _reportBytes; // received (Interlocked)

    private readonly Func<int, bool> _parentDown;

    /// <param name="parentDown">By tree: true while requests gave up on that parent (TreeChild).</param>
    public TreeStats(TreePeers peers, TimeSpan patience, Func<int, bool> parentDown)
    {
        this.peers = peers;
        _parentDown = parentDown;
        _patienceTicks = (long)(Math.Max(patience.TotalSeconds, 1) * Stopwatch.Frequency);
        _parent = peers.Topo.Parent(0, peers.Rank);
        _root = peers.Topo.Root(0);
    }

    private sealed class Entry(byte[] json, long heard)
    {
        public byte[] Json = json;
        public long Heard = heard;  // Stopwatch timestamp the counters were taken at
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
        while (!_stopping.Token.WaitHandle.WaitOne(Every))
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
            Report(force: ++_ticks % HeartbeatTicks == 0);
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException)
        {
            LogReportFailed(peers.Log, ex.Message);
        }
    }

    /// <summary>Takes this node's counters; on a non-root, sends what changed (with <paramref name="force"/>, at least its own).</summary>
    private Task? Report(bool force)
    {
        byte[] own = peers.Counters.ToJson(peers.Rank);
        long now = Stopwatch.GetTimestamp();
        var entries = new List<(int Rank, int AgeMs, byte[] Json)>();
        int target;
        lock (_lock)
        {
            if (_latest.TryGetValue(peers.Rank, out Entry? self))
            {
                if (!self.Json.AsSpan().SequenceEqual(own))
                {
                    self.Json = own;
                    self.Dirty = true;
                }
                self.Heard = now;
            }
            else
            {
                _latest[peers.Rank] = new Entry(own, now);
            }
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
            if (force)
            {
                _latest[peers.Rank].Dirty = true;
            }
            foreach ((int rank, Entry e) in _latest)
            {
                if (e.Dirty)
                {
                    e.Dirty = false;
                    entries.Add((rank, (int)Math.Clamp((now - e.Heard) * 1000 / Stopwatch.Frequency, 0, int.MaxValue), e.Json));
                }
            }
            if (entries.Count == 0)
            {
                return null;
            }
            target = _parentSilent ? _root : _parent;
            if (_unackedSince == 0)
            {
                _unackedSince = now;
            }
        }
        return peers.Send(target, Message(entries));
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
                long heard = now - (long)age * Stopwatch.Frequency / 1000;
                if (!_latest.TryGetValue(rank, out Entry? e))
                {
                    _latest[rank] = new Entry(s.Slice(12, length).ToArray(), heard);
                }
                else if (heard >= e.Heard)
                {
                    e.Json = s.Slice(12, length).ToArray();
                    e.Heard = heard;
                    e.Dirty = true;
                }
                s = s[(12 + length)..];
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
