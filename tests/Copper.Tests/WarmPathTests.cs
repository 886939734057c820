// A warm process (the node already holds what it needs) answers most stats and opens from
// one listing per directory (LISTDIRPLUS), without a round trip per file; and a
// remembered mirror copy that vanished never breaks an open.
using System.Text.Json;
using Copper.Interop;
using Xunit;

namespace Copper.Tests;

public class WarmPathTests
{
    private static long Requests(AgentProcess agent)
    {
        using var s = agent.Connect();
        (_, byte[] payload) = AgentProcess.Request(s, Op.Stats, []);
        using JsonDocument doc = JsonDocument.Parse(payload.AsMemory(8));
        return doc.RootElement.GetProperty("requests").GetInt64();
    }

    [Fact]
    public void WarmImportAsksTheAgentForAFractionOfItsFiles()
    {
        using var agent = new AgentProcess("warm");
        var env = agent.ClientEnv();
        env["PYTHONPATH"] = agent.Prefix + CopperJob.Packages;
        string[] args = ["-c", CopperJob.NumpyCode];
        ProcResult direct = Harness.Run(Harness.Python, args);
        long before = Requests(agent);
        ProcResult cold = Harness.Run(Harness.Python, args, env);
        long afterCold = Requests(agent);
        ProcResult warm = Harness.Run(Harness.Python, args, env);
        long afterWarm = Requests(agent);
        string expected = direct.Stdout.Replace(CopperJob.Packages, agent.Prefix + CopperJob.Packages, StringComparison.Ordinal);
        Assert.Equal(expected, cold.Stdout);
        Assert.Equal(expected, warm.Stdout);
        long coldRequests = afterCold - before - 1, warmRequests = afterWarm - afterCold - 1;
        // Cold: every file is asked for (about 250). Warm: about one listing per directory.
        Assert.True(coldRequests > 150, $"cold import made {coldRequests} requests");
        Assert.True(warmRequests < coldRequests / 3, $"warm import made {warmRequests} requests, cold {coldRequests}");
    }

    [Fact]
    public void RememberedMirrorCopyThatVanishedStillOpensCorrectly()
    {
        using var agent = new AgentProcess("vanish");
        using var tree = new TestTree();
        string file = Path.Combine(tree.Dir, "data.txt");
        string want = File.ReadAllText(file);
        var env = agent.ClientEnv(audit: false);
        string copper = agent.Prefix + file;
        // Materialize it, then (new process) list the directory, delete the node-local copy, open.
        Assert.Equal(want, Harness.Run("cat", [copper], env).Stdout);
        string script = $"""
            import os, sys
            os.listdir({Quote(agent.Prefix + tree.Dir)})
            os.unlink({Quote(agent.MirrorRoot + file)})
            sys.stdout.write(open({Quote(copper)}).read())
            """;
        ProcResult r = Harness.Run(Harness.Python, ["-c", script], env);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(want, r.Stdout);
    }

    private static string Quote(string s) => "'" + s.Replace("\\", "\\\\").Replace("'", "\\'") + "'";
}
