// copper: the command-line tool for a running Copper.
//   copper stats  [-v PREFIX] [--json]   counters of every agent of PREFIX on this machine, and
//                                        where the root of an MPI job runs here, of every node
//                                        of the job (its last report, its age, "silent")
//   copper stats --watch [SECONDS] [--count N]   the job's live numbers, refreshed (Watch.cs)
//   copper summary [-v PREFIX] [--json FILE]     the job's numbers once, as stop_copper.sh prints them
//   copper status [-v PREFIX]            which agents run, and their place in the tree
//   copper manifest save [-v PREFIX] FILE   merge what the job asked the file system (every
//                                        tree's root's record) into FILE
//   copper verify [-v PREFIX] -- CMD...  calls of CMD that missed Copper (Verify.cs)
// Agents are found in the runtime directory ($COPPER_RUNTIME_DIR, else
// /tmp/copper-run-<uid>) as <fnv1a64(prefix)>[.n<k>]/agent.sock and asked over their socket.
using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Copper.Interop;

return Cli.Run(args);

internal static partial class Cli
{
    private static readonly string[] Columns =
    [
        "requests", "cache_hits", "cache_misses", "coalesced", "forwarded_up", "child_requests",
        "bytes_from_parent", "bytes_to_children", "pfs_ops", "pfs_bytes", "degraded",
        "mirror_held_bytes", "mirror_high_water", "evictions", "bytes_evicted",
        "meta_entries", "meta_high_water", "meta_evicted",
    ];

    public static int Run(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Usage(Console.Out);
            return args.Length == 0 ? 2 : 0;
        }
        string command = args[0];
        if (command == "manifest")
        {
            return Manifest(args);
        }
        if (command == "verify")
        {
            return Verify(args[1..]);
        }
        if (command == "summary")
        {
            return Summary(args[1..]);
        }
        string prefix = DefaultPrefix();
        bool json = false;
        double? watch = null;
        int count = 0;
        for (int i = 1; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "-v" when i + 1 < args.Length:
                    prefix = args[++i];
                    break;
                case "--json":
                    json = true;
                    break;
                case "--watch":
                    watch = 2;
                    if (i + 1 < args.Length && double.TryParse(args[i + 1], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double seconds))
                    {
                        if (seconds is < 0.1 or > 86400)
                        {
                            Console.Error.WriteLine($"copper: --watch: the interval must be 0.1 to 86400 seconds, got '{args[i + 1]}'");
                            return 2;
                        }
                        watch = seconds;
                        i++;
                    }
                    break;
                case "--count" when i + 1 < args.Length:
                    if (!int.TryParse(args[++i], NumberStyles.None, CultureInfo.InvariantCulture, out count) || count < 1)
                    {
                        Console.Error.WriteLine($"copper: --count: a positive number of frames, got '{args[i]}'");
                        return 2;
                    }
                    break;
                default:
                    Console.Error.WriteLine($"copper: unknown argument '{args[i]}'");
                    Usage(Console.Error);
                    return 2;
            }
        }
        prefix = Normalize(prefix);
        if (command is not ("stats" or "status"))
        {
            Console.Error.WriteLine($"copper: unknown command '{command}'");
            Usage(Console.Error);
            return 2;
        }
        if ((watch != null || count > 0) && (command != "stats" || json || watch == null))
        {
            Console.Error.WriteLine("copper: --watch (and --count) go with 'copper stats' only, without --json");
            return 2;
        }
        if (watch is double interval)
        {
            return Watch(prefix, interval, count);
        }
        List<(string Dir, JsonDocument? Stats, string? Error)> agents = Query(prefix);
        if (agents.Count == 0)
        {
            Console.Error.WriteLine($"copper: no agent for {prefix} on this machine (runtime dir {RuntimeDir()})");
            return 1;
        }
        if (agents.Count == 1 && agents[0].Dir == RuntimeDir() && agents[0].Error is { } unreadable)
        {
            Console.Error.WriteLine($"copper: no agent for {prefix} reachable: {unreadable}");
            return 1;
        }
        int rc = agents.Any(a => a.Stats == null) ? 1 : 0;
        if (command == "status")
        {
            PrintStatus(prefix, agents);
        }
        else if (json)
        {
            PrintJson(prefix, agents);
        }
        else
        {
            PrintTable(prefix, agents);
        }
        return rc;
    }

    private static void Usage(TextWriter w)
    {
        w.WriteLine("usage: copper stats  [-v PREFIX] [--json]   counters per node and in total (every node of the job where its root runs)");
        w.WriteLine("       copper stats  [-v PREFIX] --watch [SECONDS] [--count N]");
        w.WriteLine("                     the job's live numbers every SECONDS (default 2): per node hit ratio, requests/s,");
        w.WriteLine("                     bytes over the tree, file-system operations and what they saved, degraded answers,");
        w.WriteLine("                     mirror size; q or Ctrl-C stops; not on a terminal, plain frames; N frames and exit");
        w.WriteLine("       copper summary [-v PREFIX] [--json FILE]   the job's numbers once (what stop_copper.sh prints), and as JSON");
        w.WriteLine("       copper status [-v PREFIX]            agents running for PREFIX and their tree places");
        w.WriteLine("       copper manifest save [-v PREFIX] FILE   merge the job's manifest (what the roots of its trees");
        w.WriteLine("                                    asked the file system; this node's agent gathers them) into FILE;");
        w.WriteLine("                                    replay it with launch_copper.sh -m FILE");
        w.WriteLine("       copper verify [-v PREFIX] [--keep-trace DIR] -- CMD ARGS...");
        w.WriteLine("                     run CMD as a job's rank (LD_PRELOAD/LD_AUDIT of PREFIX's agents, COPPER_PREFIX)");
        w.WriteLine("                     under strace -f; list, by directory, every file-system call that reached a");
        w.WriteLine("                     real path behind a Copper path CMD used, and count the calls through Copper.");
        w.WriteLine("                     Exit 0 none, 1 some, 2 bad usage, 3 no agent serves PREFIX, 4 cannot trace.");
        w.WriteLine("PREFIX defaults to /tmp/$USER/copper ($COPPER_PREFIX when set, for verify); agents are found under");
        w.WriteLine("$COPPER_RUNTIME_DIR or /tmp/copper-run-<uid>.");
    }

    /// <summary>
    /// copper manifest save [-v PREFIX] FILE: this machine's agent (node 0's when nodes are
    /// simulated) gathers the record of every tree's root of its job and writes FILE.
    /// </summary>
    private static int Manifest(string[] args)
    {
        string prefix = DefaultPrefix();
        string? file = null;
        if (args.Length < 2 || args[1] != "save")
        {
            Console.Error.WriteLine("copper: manifest: the one subcommand is 'save'");
            Usage(Console.Error);
            return 2;
        }
        for (int i = 2; i < args.Length; i++)
        {
            if (args[i] == "-v" && i + 1 < args.Length)
            {
                prefix = args[++i];
            }
            else if (file == null && !args[i].StartsWith('-'))
            {
                file = args[i];
            }
            else
            {
                Console.Error.WriteLine($"copper: unknown argument '{args[i]}'");
                Usage(Console.Error);
                return 2;
            }
        }
        if (file == null)
        {
            Console.Error.WriteLine("copper: manifest save needs a FILE");
            Usage(Console.Error);
            return 2;
        }
        prefix = Normalize(prefix);
        file = Path.GetFullPath(file);
        string dir = Path.Combine(RuntimeDir(), Places.PrefixHash(prefix));
        try
        {
            // A large manifest takes a while to merge and write.
            using Socket s = Connect(Path.Combine(dir, Protocol.SocketName), 120_000);
            byte[] reply = Exchange(s, (byte)Op.ManifestSave, Encoding.UTF8.GetBytes(file));
            int status = BinaryPrimitives.ReadInt32LittleEndian(reply);
            string said = Encoding.UTF8.GetString(reply.AsSpan(Marshal.SizeOf<ReplyHead>()));
            if (status != 0)
            {
                Console.Error.WriteLine($"copper: {(said.Length > 0 ? said : $"the agent answered status {status}")}");
                return 1;
            }
            Console.Out.WriteLine(said);
            return 0;
        }
        catch (Exception ex) when (ex is SocketException or IOException or InvalidDataException)
        {
            Console.Error.WriteLine($"copper: no agent for {prefix} reachable at {dir}: {ex.Message}");
            return 1;
        }
    }

    private static string Normalize(string p) =>
        Places.Normalize(p.StartsWith('/') ? p : Path.Combine(Environment.CurrentDirectory, p));

    private static string RuntimeDir() => Places.RuntimeDir(GetUid());

    [LibraryImport("libc", EntryPoint = "getuid")]
    private static partial uint GetUid();

    private static List<(string, JsonDocument?, string?)> Query(string prefix)
    {
        string runtime = RuntimeDir();
        string hash = Places.PrefixHash(prefix);
        var dirs = new List<(int Node, string Dir)>();
        var result = new List<(string, JsonDocument?, string?)>();
        string[] found = [];
        try
        {
            found = Directory.Exists(runtime) ? Directory.GetDirectories(runtime, hash + "*") : [];
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException or IOException)
        {
            // Another user's runtime directory (COPPER_RUNTIME_DIR pointed at it) is closed to us.
            result.Add((runtime, null, $"cannot read the runtime dir: {ex.Message}"));
        }
        foreach (string d in found)
        {
            string name = Path.GetFileName(d);
            if (name == hash)
            {
                dirs.Add((0, d));
            }
            else if (name.StartsWith(hash + ".n", StringComparison.Ordinal) && int.TryParse(name.AsSpan(hash.Length + 2), NumberStyles.None, CultureInfo.InvariantCulture, out int k))
            {
                dirs.Add((k, d));
            }
        }
        dirs.Sort((a, b) => a.Node.CompareTo(b.Node));
        foreach ((_, string dir) in dirs)
        {
            try
            {
                result.Add((dir, JsonDocument.Parse(AskStats(Path.Combine(dir, Protocol.SocketName))), null));
            }
            catch (Exception ex) when (ex is SocketException or IOException or JsonException or InvalidDataException)
            {
                result.Add((dir, null, ex.Message));
            }
        }
        return result;
    }

    private static byte[] AskStats(string socketPath)
    {
        using Socket s = Connect(socketPath);
        byte[] reply = Exchange(s, (byte)Op.Stats, []);
        int status = BinaryPrimitives.ReadInt32LittleEndian(reply);
        if (status != 0)
        {
            throw new InvalidDataException($"agent answered status {status}");
        }
        return reply[Marshal.SizeOf<ReplyHead>()..];
    }

    /// <summary>A greeted connection to the agent at <paramref name="socketPath"/>, checked to run as this user.</summary>
    private static Socket Connect(string socketPath, int timeoutMs = 5000)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            s.ReceiveTimeout = timeoutMs;
            s.SendTimeout = timeoutMs;
            s.Connect(new UnixDomainSocketEndPoint(socketPath));
            // Like the shim, believe only an agent of our own uid (SO_PEERCRED: pid, uid, gid).
            Span<byte> cred = stackalloc byte[12];
            if (s.GetRawSocketOption(1 /* SOL_SOCKET */, 17 /* SO_PEERCRED */, cred) < 12)
            {
                throw new InvalidDataException("the agent's credentials cannot be read");
            }
            uint peer = BinaryPrimitives.ReadUInt32LittleEndian(cred[4..]);
            if (peer != GetUid())
            {
                throw new InvalidDataException($"the process at {socketPath} runs as uid {peer}, not as you: not asked");
            }
            var hello = new Hello { Magic = Protocol.Magic, Major = Protocol.Major, Minor = Protocol.Minor, Pid = (uint)Environment.ProcessId };
            byte[] payload = new byte[Marshal.SizeOf<Hello>()];
            MemoryMarshal.Write(payload, in hello);
            Exchange(s, (byte)Op.Hello, payload);
            return s;
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    private static byte[] Exchange(Socket s, byte op, byte[] payload)
    {
        byte[] frame = new byte[Protocol.HeaderSize + payload.Length];
        Framing.WriteHeader(frame, op, 1, payload.Length);
        payload.CopyTo(frame, Protocol.HeaderSize);
        s.Send(frame);
        byte[] head = ReadExactly(s, Protocol.HeaderSize);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(head);
        if (length > Protocol.MaxPayload || head[4] != (op | Protocol.Reply))
        {
            throw new InvalidDataException("unexpected reply from the agent");
        }
        return ReadExactly(s, (int)length);
    }

    private static byte[] ReadExactly(Socket s, int n)
    {
        byte[] buf = new byte[n];
        int got = 0;
        while (got < n)
        {
            int r = s.Receive(buf, got, n - got, SocketFlags.None);
            if (r == 0)
            {
                throw new IOException("the agent closed the connection");
            }
            got += r;
        }
        return buf;
    }

    private static long Num(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.Number ? v.GetInt64() : 0;

    /// <summary>
    /// Every node to show: each agent here answers for itself (fresh), and the root of a job
    /// adds the last report of every other node of the job (with age_s and silent).
    /// </summary>
    private static (List<JsonElement> Nodes, bool Job) Nodes(List<(string Dir, JsonDocument? Stats, string? Error)> agents)
    {
        var local = agents.Where(a => a.Stats != null).Select(a => a.Stats!.RootElement).ToList();
        var seen = local.Select(e => Num(e, "node")).ToHashSet();
        var nodes = new List<JsonElement>(local);
        bool job = false;
        foreach (JsonElement e in local)
        {
            if (e.TryGetProperty("job", out JsonElement j) && j.TryGetProperty("entries", out JsonElement entries))
            {
                job = true;
                nodes.AddRange(entries.EnumerateArray().Where(x => seen.Add(Num(x, "node"))));
            }
        }
        nodes.Sort((a, b) => Num(a, "node").CompareTo(Num(b, "node")));
        return (nodes, job);
    }

    private static bool Silent(JsonElement e) => e.TryGetProperty("silent", out JsonElement s) && s.ValueKind == JsonValueKind.True;

    private static void PrintTable(string prefix, List<(string Dir, JsonDocument? Stats, string? Error)> agents)
    {
        var sb = new StringBuilder();
        (List<JsonElement> nodes, bool job) = Nodes(agents);
        if (job)
        {
            sb.Append(CultureInfo.InvariantCulture, $"Copper {prefix}: {nodes.Count} node(s) of the job (its root runs here; other nodes as last reported)\n");
        }
        else
        {
            sb.Append(CultureInfo.InvariantCulture, $"Copper {prefix}: {agents.Count} agent(s) on this machine\n");
        }
        sb.Append(CultureInfo.InvariantCulture, $"{"node",-6}");
        foreach (string c in Columns)
        {
            sb.Append(CultureInfo.InvariantCulture, $" {c,17}");
        }
        sb.Append('\n');
        var total = new long[Columns.Length];
        foreach ((string dir, JsonDocument? stats, string? error) in agents)
        {
            if (stats == null)
            {
                sb.Append(CultureInfo.InvariantCulture, $"{Path.GetFileName(dir),-6} unreachable: {error}\n");
            }
        }
        foreach (JsonElement e in nodes)
        {
            sb.Append(CultureInfo.InvariantCulture, $"{Num(e, "node"),-6}");
            for (int i = 0; i < Columns.Length; i++)
            {
                long v = Num(e, Columns[i]);
                total[i] += v;
                sb.Append(CultureInfo.InvariantCulture, $" {v,17}");
            }
            if (e.TryGetProperty("age_s", out JsonElement age) && age.ValueKind == JsonValueKind.Number && age.GetDouble() >= 2)
            {
                string state = Silent(e) ? "silent, " : "";
                sb.Append(CultureInfo.InvariantCulture, $"  {state}last report {age.GetDouble():0} s ago");
            }
            else if (Silent(e))
            {
                sb.Append("  silent, never reported");
            }
            sb.Append('\n');
        }
        sb.Append(CultureInfo.InvariantCulture, $"{"total",-6}");
        foreach (long v in total)
        {
            sb.Append(CultureInfo.InvariantCulture, $" {v,17}");
        }
        sb.Append('\n');
        foreach ((_, JsonDocument? stats, _) in agents)
        {
            if (stats?.RootElement is { } e && e.TryGetProperty("replay_state", out JsonElement state) && state.GetString() != "none")
            {
                sb.Append(CultureInfo.InvariantCulture,
                    $"replay node {Num(e, "node")}: {state.GetString()}, {Num(e, "replay_done")} of {Num(e, "replay_entries")} entries, {Num(e, "replay_files")} files, {Num(e, "replay_bytes")} bytes, {Num(e, "replay_changed")} changed, {Num(e, "replay_vanished")} vanished, {Num(e, "replay_ms")} ms");
                if (e.TryGetProperty("replay_nodes_done", out JsonElement nd))
                {
                    sb.Append(CultureInfo.InvariantCulture, $"; {nd.GetInt64()} node(s) done");
                }
                if (e.TryGetProperty("replay_message", out JsonElement msg))
                {
                    sb.Append(CultureInfo.InvariantCulture, $" ({msg.GetString()})");
                }
                sb.Append('\n');
            }
        }
        Console.Out.Write(sb.ToString());
    }

    private static void PrintJson(string prefix, List<(string Dir, JsonDocument? Stats, string? Error)> agents)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("prefix", prefix);
            (List<JsonElement> nodes, bool job) = Nodes(agents);
            w.WriteBoolean("job", job);
            w.WriteStartArray("nodes");
            var total = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (JsonElement e in nodes)
            {
                w.WriteStartObject();
                foreach (JsonProperty p in e.EnumerateObject())
                {
                    if (p.Name == "job")
                    {
                        continue; // listed as nodes
                    }
                    p.WriteTo(w);
                    if (p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt64(out long v) && p.Name is not ("node" or "rank" or "nodes" or "trees" or "fanout" or "started_unix"))
                    {
                        total[p.Name] = total.GetValueOrDefault(p.Name) + v;
                    }
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("silent");
            foreach (JsonElement e in nodes.Where(Silent))
            {
                w.WriteNumberValue(Num(e, "node"));
            }
            w.WriteEndArray();
            w.WriteStartObject("total");
            foreach (var kv in total)
            {
                w.WriteNumber(kv.Key, kv.Value);
            }
            w.WriteEndObject();
            w.WriteStartArray("unreachable");
            foreach ((string dir, JsonDocument? stats, string? error) in agents)
            {
                if (stats == null)
                {
                    w.WriteStartObject();
                    w.WriteString("dir", dir);
                    w.WriteString("error", error);
                    w.WriteEndObject();
                }
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        Console.Out.WriteLine(Encoding.UTF8.GetString(ms.ToArray()));
    }

    private static void PrintStatus(string prefix, List<(string Dir, JsonDocument? Stats, string? Error)> agents)
    {
        Console.Out.WriteLine($"Copper {prefix}:");
        foreach ((string dir, JsonDocument? stats, string? error) in agents)
        {
            if (stats == null)
            {
                Console.Out.WriteLine($"  {Path.GetFileName(dir)}: unreachable ({error})");
                continue;
            }
            JsonElement e = stats.RootElement;
            string place = e.TryGetProperty("parents", out JsonElement parents)
                ? $"rank {Num(e, "rank")} of {Num(e, "nodes")}, parents {parents.GetRawText()}, root of {e.GetProperty("root_of").GetRawText()}"
                : "single agent (reads the file system itself)";
            Console.Out.WriteLine($"  node {Num(e, "node")}: {place}; {Num(e, "requests")} requests, {Num(e, "pfs_ops")} file-system operations");
        }
    }
}
