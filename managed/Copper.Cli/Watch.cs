// copper stats --watch [SECONDS] [--count N]: the job's live numbers, refreshed every SECONDS
// (default 2); copper summary [-v PREFIX] [--json FILE]: the same numbers once, as a job
// summary (stop_copper.sh prints it and writes FILE before it stops the agents).
//
// Both read what `copper stats` reads: every agent of the prefix on this machine, and where
// the root of the job runs here, the last report of every node of the job. Rates come from
// two samples: each frame compares the counters with the previous sample's (the first frame
// waits one interval for its second sample). A node other than this machine's counters reach
// the root about a second per tree level after they change (and only then: unchanged counters
// are current), so its rate is as fresh as that; its age is how long ago it was last heard of.
//
// "Direct would have made about N": N is the sum over nodes of the requests that reached
// each agent from the job's processes, one file-system operation each. It is a lower
// estimate of what the processes would have asked the shared file system without Copper:
// the shim answers repeated questions itself (they never reach the agent), and reading a
// file directly takes an open, reads and a close, counted here as one. "Saved" is N minus
// the file-system operations the agents made.
//
// On a terminal each frame replaces the previous one (q or Ctrl-C ends the watch); when
// standard output is not a terminal, each frame is printed after the previous one, plain.
using System.Globalization;
using System.Text;
using System.Text.Json;

internal static partial class Cli
{
    /// <summary>One look at the agents: when it was taken and every node's counters.</summary>
    private sealed class Sample(List<(string Dir, JsonDocument? Stats, string? Error)> agents) : IDisposable
    {
        public readonly List<(string Dir, JsonDocument? Stats, string? Error)> Agents = agents;
        public readonly DateTimeOffset Taken = DateTimeOffset.UtcNow;
        public readonly long Ticks = System.Diagnostics.Stopwatch.GetTimestamp();
        private (List<JsonElement> Nodes, bool Job)? _nodes;

        public List<JsonElement> Nodes => (_nodes ??= Cli.Nodes(Agents)).Nodes;

        public bool Job => (_nodes ??= Cli.Nodes(Agents)).Job;

        public void Dispose()
        {
            foreach ((_, JsonDocument? stats, _) in Agents)
            {
                stats?.Dispose();
            }
        }
    }

    /// <summary>The job's totals of one sample (and, with a previous sample, its request rate).</summary>
    private sealed class Totals
    {
        public int Nodes, Reporting;
        public long Requests, Hits, Misses, Coalesced, Pfs, PfsBytes, FromParent, ToChildren, Degraded, MirrorFiles, MirrorBytes;
        public long Started = long.MaxValue;
        public double? Rate;
        public List<long> Silent = [];

        public double? HitRatio => Lookups(Hits, Misses, Coalesced) is > 0 and long n ? (double)(Hits + Coalesced) / n : null;

        public long Saved => Math.Max(0, Requests - Pfs);
    }

    private static long Lookups(long hits, long misses, long coalesced) => hits + misses + coalesced;

    /// <summary>Hits and coalesced waits (answered without a fetch of their own) over every cache lookup.</summary>
    private static double? HitRatio(JsonElement e) =>
        Lookups(Num(e, "cache_hits"), Num(e, "cache_misses"), Num(e, "coalesced")) is > 0 and long n
            ? (double)(Num(e, "cache_hits") + Num(e, "coalesced")) / n
            : null;

    private static bool Reported(JsonElement e) => e.TryGetProperty("requests", out _);

    /// <summary>Requests from the job's processes: all requests but those about the agent itself (copper stats and the like).</summary>
    private static long JobRequests(JsonElement e) => Math.Max(0, Num(e, "requests") - Num(e, "control_requests"));

    private static Totals Sum(Sample s, Sample? before)
    {
        var t = new Totals { Nodes = s.Nodes.Count };
        foreach (JsonElement e in s.Nodes)
        {
            if (Silent(e))
            {
                t.Silent.Add(Num(e, "node"));
            }
            if (!Reported(e))
            {
                continue;
            }
            t.Reporting++;
            t.Requests += JobRequests(e);
            t.Hits += Num(e, "cache_hits");
            t.Misses += Num(e, "cache_misses");
            t.Coalesced += Num(e, "coalesced");
            t.Pfs += Num(e, "pfs_ops");
            t.PfsBytes += Num(e, "pfs_bytes");
            t.FromParent += Num(e, "bytes_from_parent");
            t.ToChildren += Num(e, "bytes_to_children");
            t.Degraded += Num(e, "degraded");
            t.MirrorFiles += Num(e, "mirror_files");
            t.MirrorBytes += Num(e, "mirror_held_bytes");
            if (Num(e, "started_unix") is > 0 and long started)
            {
                t.Started = Math.Min(t.Started, started);
            }
        }
        if (before != null)
        {
            t.Rate = 0;
            foreach (JsonElement e in s.Nodes)
            {
                t.Rate += Rate(e, before, s) ?? 0;
            }
        }
        return t;
    }

    /// <summary>Requests per second of node <paramref name="e"/> between two samples; null when it has no earlier sample.</summary>
    private static double? Rate(JsonElement e, Sample before, Sample now)
    {
        if (!Reported(e))
        {
            return null;
        }
        long node = Num(e, "node");
        foreach (JsonElement b in before.Nodes)
        {
            if (Num(b, "node") == node && Reported(b))
            {
                double seconds = (double)(now.Ticks - before.Ticks) / System.Diagnostics.Stopwatch.Frequency;
                return seconds > 0 ? Math.Max(0, JobRequests(e) - JobRequests(b)) / seconds : null;
            }
        }
        return null;
    }

    private static string Bytes(long n)
    {
        string[] units = ["B", "K", "M", "G", "T"];
        double v = n;
        int u = 0;
        while (v >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }
        return u == 0 ? string.Create(CultureInfo.InvariantCulture, $"{n}B") : string.Create(CultureInfo.InvariantCulture, $"{v:0.0}{units[u]}");
    }

    private static string Percent(double? r) => r is double v ? string.Create(CultureInfo.InvariantCulture, $"{v * 100:0.0}%") : "-";

    private static string Duration(long seconds) =>
        seconds >= 3600 ? $"{seconds / 3600}h{seconds % 3600 / 60:00}m{seconds % 60:00}s"
        : seconds >= 60 ? $"{seconds / 60}m{seconds % 60:00}s" : $"{seconds}s";

    private const string Estimate =
        "the requests that reached the agents from the job's processes, one file-system operation each " +
        "(a lower estimate: the shim answers repeats itself, and reading a file directly takes more than one operation)";

    /// <summary>One frame: a line per node (at most <paramref name="maxRows"/>), the totals, what was saved.</summary>
    private static string Frame(string prefix, Sample s, Sample? before, double interval, int maxRows)
    {
        var sb = new StringBuilder();
        Totals t = Sum(s, before);
        string where = s.Job ? $"{t.Nodes} node(s) of the job" : $"{t.Nodes} agent(s) on this machine";
        sb.Append(CultureInfo.InvariantCulture, $"Copper {prefix}: {where}, {s.Taken:yyyy-MM-dd HH:mm:ss} UTC, every {interval:0.###} s\n");
        sb.Append(CultureInfo.InvariantCulture,
            $"{"node",-6}{"age",6}{"requests",11}{"req/s",9}{"hit%",8}{"from-parent",12}{"to-children",12}{"pfs-ops",9}{"degraded",9}{"mirror",9}\n");
        int shown = 0;
        foreach (JsonElement e in s.Nodes)
        {
            if (shown++ == maxRows)
            {
                sb.Append(CultureInfo.InvariantCulture, $"... {s.Nodes.Count - maxRows} more node(s)\n");
                break;
            }
            string age = e.TryGetProperty("age_s", out JsonElement a) && a.ValueKind == JsonValueKind.Number
                ? string.Create(CultureInfo.InvariantCulture, $"{a.GetDouble():0}s") : Reported(e) ? "0s" : "-";
            if (!Reported(e))
            {
                sb.Append(CultureInfo.InvariantCulture, $"{Num(e, "node"),-6}{age,6}  silent, never reported\n");
                continue;
            }
            string rate = before != null && Rate(e, before, s) is double r ? string.Create(CultureInfo.InvariantCulture, $"{r:0.0}") : "-";
            sb.Append(CultureInfo.InvariantCulture,
                $"{Num(e, "node"),-6}{age,6}{JobRequests(e),11}{rate,9}{Percent(HitRatio(e)),8}{Bytes(Num(e, "bytes_from_parent")),12}{Bytes(Num(e, "bytes_to_children")),12}{Num(e, "pfs_ops"),9}{Num(e, "degraded"),9}{Bytes(Num(e, "mirror_held_bytes")),9}");
            sb.Append(Silent(e) ? "  silent\n" : "\n");
        }
        string total = t.Rate is double tr ? string.Create(CultureInfo.InvariantCulture, $"{tr:0.0}") : "-";
        sb.Append(CultureInfo.InvariantCulture,
            $"{"total",-6}{"",6}{t.Requests,11}{total,9}{Percent(t.HitRatio),8}{Bytes(t.FromParent),12}{Bytes(t.ToChildren),12}{t.Pfs,9}{t.Degraded,9}{Bytes(t.MirrorBytes),9}\n");
        sb.Append(CultureInfo.InvariantCulture,
            $"file system: {t.Pfs} operations ({Bytes(t.PfsBytes)} read); direct would have made about {t.Requests} (saved {t.Saved})\n");
        sb.Append("  (about: the requests that reached the agents, one operation each; a lower estimate)\n");
        if (t.Silent.Count > 0)
        {
            sb.Append(CultureInfo.InvariantCulture, $"silent: node(s) {string.Join(' ', t.Silent)}\n");
        }
        foreach ((string dir, JsonDocument? stats, string? error) in s.Agents)
        {
            if (stats == null)
            {
                sb.Append(CultureInfo.InvariantCulture, $"unreachable: {Path.GetFileName(dir)} ({error})\n");
            }
        }
        return sb.ToString();
    }

    /// <summary>copper stats --watch: frames until q, Ctrl-C, <paramref name="count"/> frames, or no agent is left.</summary>
    private static int Watch(string prefix, double interval, int count)
    {
        bool tty = !Console.IsOutputRedirected;
        bool keys = tty && !Console.IsInputRedirected;
        using var stop = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true; // end the loop below, restore the terminal, exit 0
            stop.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        Sample? before = null;
        int frames = 0;
        int rc = 0;
        try
        {
            before = new Sample(Query(prefix));
            if (before.Agents.Count == 0)
            {
                Console.Error.WriteLine($"copper: no agent for {prefix} on this machine (runtime dir {RuntimeDir()})");
                return 1;
            }
            if (tty)
            {
                Console.Out.Write("\x1b[H\x1b[2J");
                Console.Out.Write($"Copper {prefix}: first numbers in {interval:0.###} s (q or Ctrl-C to stop)\n");
                Console.Out.Flush();
            }
            while (!stop.IsCancellationRequested && Wait(interval, keys, stop))
            {
                var now = new Sample(Query(prefix));
                if (now.Agents.Count == 0)
                {
                    now.Dispose();
                    Console.Error.WriteLine($"copper: the agents of {prefix} are gone");
                    rc = 1;
                    break;
                }
                int rows = int.MaxValue;
                if (tty)
                {
                    try
                    {
                        rows = Math.Max(1, Console.WindowHeight - 8);
                    }
                    catch (IOException)
                    {
                    }
                }
                string frame = Frame(prefix, now, before, interval, rows);
                // A terminal shows one frame in place; elsewhere frames follow each other, plain.
                Console.Out.Write(tty ? "\x1b[H\x1b[2J" + frame + "(q or Ctrl-C to stop)\n" : frame + "\n");
                Console.Out.Flush();
                before.Dispose();
                before = now;
                if (++frames == count)
                {
                    break;
                }
            }
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
            before?.Dispose();
        }
        return rc;
    }

    /// <summary>Waits <paramref name="seconds"/>; false when q was pressed or the watch was cancelled.</summary>
    private static bool Wait(double seconds, bool keys, CancellationTokenSource stop)
    {
        DateTime until = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < until)
        {
            if (stop.Token.WaitHandle.WaitOne(keys ? 100 : (int)Math.Max(1, (until - DateTime.UtcNow).TotalMilliseconds)))
            {
                return false;
            }
            try
            {
                while (keys && Console.KeyAvailable)
                {
                    if (Console.ReadKey(intercept: true).Key == ConsoleKey.Q)
                    {
                        return false;
                    }
                }
            }
            catch (InvalidOperationException)
            {
                keys = false; // no console to read keys from after all
            }
        }
        return true;
    }

    /// <summary>copper summary [-v PREFIX] [--json FILE]: the job's numbers once (stdout), and as JSON in FILE.</summary>
    private static int Summary(string[] args)
    {
        string prefix = DefaultPrefix();
        string? file = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "-v" when i + 1 < args.Length:
                    prefix = args[++i];
                    break;
                case "--json" when i + 1 < args.Length:
                    file = Path.GetFullPath(args[++i]);
                    break;
                default:
                    Console.Error.WriteLine($"copper: unknown argument '{args[i]}'");
                    Usage(Console.Error);
                    return 2;
            }
        }
        prefix = Normalize(prefix);
        using var s = new Sample(Query(prefix));
        if (s.Agents.Count == 0)
        {
            Console.Error.WriteLine($"copper: no agent for {prefix} on this machine (runtime dir {RuntimeDir()})");
            return 1;
        }
        Totals t = Sum(s, null);
        long duration = t.Started == long.MaxValue ? -1 : Math.Max(0, s.Taken.ToUnixTimeSeconds() - t.Started);
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"Copper job summary ({prefix}, {Environment.MachineName}):\n");
        sb.Append(CultureInfo.InvariantCulture, $"  nodes          {t.Nodes} ({t.Reporting} reported{(t.Silent.Count > 0 ? "; silent: " + string.Join(' ', t.Silent) : "")})\n");
        sb.Append(CultureInfo.InvariantCulture, $"  duration       {(duration < 0 ? "-" : Duration(duration))}\n");
        sb.Append(CultureInfo.InvariantCulture, $"  requests       {t.Requests} from the job's processes; cache hit ratio {Percent(t.HitRatio)}\n");
        sb.Append(CultureInfo.InvariantCulture, $"  file system    {t.Pfs} operations, {Bytes(t.PfsBytes)} read; direct would have made about {t.Requests} (saved {t.Saved})\n");
        sb.Append(CultureInfo.InvariantCulture, $"  over the tree  {Bytes(t.FromParent)} from parents, {Bytes(t.ToChildren)} to children\n");
        sb.Append(CultureInfo.InvariantCulture, $"  degraded       {t.Degraded} answers read from the file system (parent unreachable)\n");
        sb.Append(CultureInfo.InvariantCulture, $"  mirror         {Bytes(t.MirrorBytes)} held over all nodes ({t.MirrorFiles} files copied in)\n");
        foreach ((string dir, JsonDocument? stats, string? error) in s.Agents)
        {
            if (stats == null)
            {
                sb.Append(CultureInfo.InvariantCulture, $"  unreachable    {Path.GetFileName(dir)} ({error})\n");
            }
        }
        if (file != null)
        {
            try
            {
                WriteSummary(file, prefix, s, t, duration);
                sb.Append(CultureInfo.InvariantCulture, $"  written to     {file}\n");
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Console.Out.Write(sb.ToString());
                Console.Error.WriteLine($"copper: cannot write {file}: {ex.Message}");
                return 1;
            }
        }
        Console.Out.Write(sb.ToString());
        return s.Agents.Any(a => a.Stats == null) ? 1 : 0;
    }

    private static void WriteSummary(string file, string prefix, Sample s, Totals t, long duration)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("prefix", prefix);
            w.WriteString("host", Environment.MachineName);
            w.WriteString("time", s.Taken.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture));
            if (duration >= 0)
            {
                w.WriteNumber("duration_s", duration);
            }
            else
            {
                w.WriteNull("duration_s");
            }
            w.WriteNumber("nodes", t.Nodes);
            w.WriteNumber("nodes_reported", t.Reporting);
            w.WriteStartArray("silent");
            foreach (long n in t.Silent)
            {
                w.WriteNumberValue(n);
            }
            w.WriteEndArray();
            w.WriteNumber("requests", t.Requests);
            w.WriteNumber("cache_hits", t.Hits);
            w.WriteNumber("cache_misses", t.Misses);
            w.WriteNumber("coalesced", t.Coalesced);
            if (t.HitRatio is double ratio)
            {
                w.WriteNumber("hit_ratio", Math.Round(ratio, 4));
            }
            else
            {
                w.WriteNull("hit_ratio");
            }
            w.WriteNumber("pfs_ops", t.Pfs);
            w.WriteNumber("pfs_bytes", t.PfsBytes);
            w.WriteNumber("direct_ops_estimate", t.Requests);
            w.WriteNumber("pfs_ops_saved", t.Saved);
            w.WriteString("direct_ops_estimate_is", Estimate);
            w.WriteNumber("bytes_from_parent", t.FromParent);
            w.WriteNumber("bytes_to_children", t.ToChildren);
            w.WriteNumber("degraded", t.Degraded);
            w.WriteNumber("mirror_files", t.MirrorFiles);
            w.WriteNumber("mirror_held_bytes", t.MirrorBytes);
            w.WriteStartArray("per_node");
            foreach (JsonElement e in s.Nodes)
            {
                w.WriteStartObject();
                w.WriteNumber("node", Num(e, "node"));
                if (e.TryGetProperty("age_s", out JsonElement age))
                {
                    w.WritePropertyName("age_s");
                    age.WriteTo(w);
                }
                w.WriteBoolean("silent", Silent(e));
                if (Reported(e))
                {
                    w.WriteNumber("requests", JobRequests(e));
                    foreach (string c in (string[])["cache_hits", "cache_misses", "coalesced", "pfs_ops", "pfs_bytes",
                        "bytes_from_parent", "bytes_to_children", "degraded", "mirror_files", "mirror_bytes", "mirror_held_bytes", "mirror_high_water", "evictions", "bytes_evicted",
                        "meta_entries", "meta_high_water", "meta_evicted"])
                    {
                        w.WriteNumber(c, Num(e, c));
                    }
                    if (HitRatio(e) is double r)
                    {
                        w.WriteNumber("hit_ratio", Math.Round(r, 4));
                    }
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        // Written whole or not at all: a reader never sees half a summary.
        string temp = file + ".tmp-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        try
        {
            File.WriteAllBytes(temp, ms.ToArray());
            File.Move(temp, file, overwrite: true);
        }
        finally
        {
            File.Delete(temp);
        }
    }
}
