// A Copper MPI job on this machine for tests: launch_copper.sh --simulate-nodes N in a
// private runtime, log and trace directory; run applications on chosen nodes; read the
// agents' counters through `copper stats --json`; stop and clean up on dispose.
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Copper.Interop;

namespace Copper.Tests;

public sealed class CopperJob : IDisposable
{
    public const string NumpyCode = "import numpy; a = numpy.arange(1000.0); print(numpy.__file__, float((a * a).sum()))";
    public const string Packages = "/usr/lib/python3/dist-packages";

    public CopperJob(int nodes, string tag, string launchArgs = "", string? agent = null)
    {
        Nodes = nodes;
        Root = Harness.TempDir(tag);
        Prefix = Path.Combine(Root, "copper");
        TraceDir = Path.Combine(Root, "trace");
        LogDir = Path.Combine(Root, "logs");
        Env = new Dictionary<string, string?>
        {
            ["COPPER_RUNTIME_DIR"] = Path.Combine(Root, "run"),
            ["COPPER_AGENT_ARGS"] = "--pfs-trace-dir " + TraceDir,
            ["COPPER_AGENT"] = agent,
        };
        LaunchArgs = launchArgs;
    }

    public int Nodes { get; }
    public string Root { get; }
    public string Prefix { get; }
    public string TraceDir { get; }
    public string LogDir { get; }
    public string LaunchArgs { get; }
    public Dictionary<string, string?> Env { get; }

    public static string LaunchScript => Path.Combine(Harness.Bin, "launch_copper.sh");
    public static string StopScript => Path.Combine(Harness.Bin, "stop_copper.sh");
    public static string Cli => Path.Combine(Harness.Bin, "copper");

    public ProcResult Launch(int timeoutSeconds = 60) =>
        Harness.Bash($"{LaunchScript} -v {Prefix} -n {Nodes} -d {LogDir} -s {timeoutSeconds} {LaunchArgs}", Env, (timeoutSeconds + 30) * 1000);

    public void LaunchOrFail()
    {
        ProcResult r = Launch();
        if (r.ExitCode != 0)
        {
            throw new InvalidOperationException("launch failed: " + r + "\n" + JobOutput());
        }
    }

    public string JobOutput()
    {
        var sb = new StringBuilder();
        if (Directory.Exists(LogDir))
        {
            foreach (string f in Directory.GetFiles(LogDir, "copper-mpiexec.*.out"))
            {
                sb.Append(File.ReadAllText(f));
            }
        }
        return sb.ToString();
    }

    /// <summary>The shell words that run a command through Copper on node <paramref name="node"/>.</summary>
    public string Through(int node) =>
        $"COPPER_PREFIX={Prefix} COPPER_NODE={node} LD_PRELOAD={Harness.Preload} LD_AUDIT={Harness.Audit} COPPER_RUNTIME_DIR={Env["COPPER_RUNTIME_DIR"]}";

    /// <summary>Runs <paramref name="code"/> with python3 through Copper, <paramref name="ranks"/> processes per listed node, all at once.</summary>
    public List<(int Node, int Rank, ProcResult Result)> Python(IEnumerable<int> nodes, int ranks, string code = NumpyCode)
    {
        string dir = Path.Combine(Root, "runs-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "code.py"), code);
        var script = new StringBuilder("set -u\n");
        var which = new List<(int, int)>();
        foreach (int k in nodes)
        {
            for (int r = 0; r < ranks; r++)
            {
                which.Add((k, r));
                script.Append($"( {Through(k)} PYTHONPATH={Prefix}{Packages} {Harness.Python} {dir}/code.py >{dir}/out.{k}.{r} 2>{dir}/err.{k}.{r}; echo $? >{dir}/rc.{k}.{r} ) &\n");
            }
        }
        script.Append("wait\n");
        ProcResult all = Harness.Bash(script.ToString(), timeoutMs: 300_000);
        if (all.ExitCode != 0)
        {
            throw new InvalidOperationException(all.ToString());
        }
        return which.Select(w => (w.Item1, w.Item2, new ProcResult(
            int.Parse(File.ReadAllText($"{dir}/rc.{w.Item1}.{w.Item2}").Trim()),
            File.ReadAllText($"{dir}/out.{w.Item1}.{w.Item2}"),
            File.ReadAllText($"{dir}/err.{w.Item1}.{w.Item2}")))).ToList();
    }

    /// <summary>What `copper stats --json` reports, one element per reachable agent, by node.</summary>
    public Dictionary<int, JsonElement> Stats()
    {
        ProcResult r = Harness.Run(Cli, ["stats", "-v", Prefix, "--json"], Env);
        // Exit 1 with JSON: some agent did not answer (the reachable ones are listed).
        if (r.ExitCode != 0 && !(r.ExitCode == 1 && r.Stdout.TrimStart().StartsWith('{')))
        {
            throw new InvalidOperationException("copper stats failed: " + r);
        }
        using JsonDocument doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.GetProperty("nodes").EnumerateArray()
            .ToDictionary(e => e.GetProperty("node").GetInt32(), e => e.Clone());
    }

    /// <summary>
    /// The root agent's own answer to `copper stats` (node 0 here), asked of it alone (other
    /// agents are not asked, so their counters do not move): its counters, what it received of
    /// the job's reports, and "job", every node as the root last heard of it.
    /// </summary>
    public JsonElement RootStats()
    {
        string dir = Directory.GetDirectories(Env["COPPER_RUNTIME_DIR"]!).Single(d => !Path.GetFileName(d).Contains(".n"));
        using Socket s = AgentProcess.Connect(Path.Combine(dir, Protocol.SocketName));
        (_, byte[] payload) = AgentProcess.Request(s, Op.Stats, []);
        using JsonDocument doc = JsonDocument.Parse(payload.AsMemory(8));
        return doc.RootElement.Clone();
    }

    /// <summary>The (op, path) lines of node <paramref name="node"/>'s file-system trace.</summary>
    public List<(string Op, string Path)> Trace(int node)
    {
        string f = Path.Combine(TraceDir, $"pfs-trace.{node}.tsv");
        if (!File.Exists(f))
        {
            return [];
        }
        return File.ReadAllLines(f).Where(l => l.Length > 0).Select(l =>
        {
            int tab = l.IndexOf('\t');
            return (l[..tab], l[(tab + 1)..]);
        }).ToList();
    }

    public int AgentPid(int node)
    {
        foreach (string dir in Directory.GetDirectories(Env["COPPER_RUNTIME_DIR"]!))
        {
            string name = Path.GetFileName(dir);
            bool match = node == 0 ? !name.Contains(".n") : name.EndsWith(".n" + node, StringComparison.Ordinal);
            if (match && File.Exists(Path.Combine(dir, "agent.pid")))
            {
                return int.Parse(File.ReadAllText(Path.Combine(dir, "agent.pid")).Trim());
            }
        }
        throw new InvalidOperationException($"no agent pid for node {node}");
    }

    public ProcResult Stop() => Harness.Run(StopScript, ["-v", Prefix], Env);

    public void Dispose()
    {
        Stop();
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
