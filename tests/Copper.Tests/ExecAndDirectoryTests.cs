// Directory reading (os.walk, os.scandir, os.listdir by path and by fd, readlink, realpath)
// and the exec family (subprocess, os.system, a shell) on Copper paths, differential
// against the real tree.
using Xunit;

namespace Copper.Tests;

public class ExecAndDirectoryTests
{
    [Fact]
    public void PythonDirectoryWalkIsTheSameThroughCopper()
    {
        using var agent = new AgentProcess("walk");
        string script = Harness.Program("walk.py");
        string root = "/usr/lib/python3/dist-packages/numpy/core";
        ProcResult direct = Harness.Run(Harness.Python, new[] { script, "", root });
        ProcResult viaCopper = Harness.Run(Harness.Python, new[] { script, agent.Prefix, root }, agent.ClientEnv());
        Assert.True(direct.ExitCode == 0, direct.ToString());
        Assert.True(viaCopper.ExitCode == 0, viaCopper.ToString());
        Assert.Contains("_multiarray_umath", direct.Stdout);
        Assert.Equal(direct.Stdout, viaCopper.Stdout);
    }

    [Fact]
    public void SymlinksAndRealpathResolveInsideThePrefix()
    {
        using var tree = new TestTree();
        using var agent = new AgentProcess("links");
        string script = Harness.Program("walk.py");
        ProcResult direct = Harness.Run(Harness.Python, new[] { script, "", tree.Dir + "/sub" });
        ProcResult viaCopper = Harness.Run(Harness.Python, new[] { script, agent.Prefix, tree.Dir + "/sub" }, agent.ClientEnv());
        Assert.Equal(direct.Stdout, viaCopper.Stdout);
        string py = "import os, sys; p = sys.argv[1]; print(os.path.realpath(p + '/link'), os.path.realpath(p + '/dirlink/inner.txt'), os.readlink(p + '/abslink'))";
        ProcResult real = Harness.Run(Harness.Python, new[] { "-c", py, tree.Dir });
        ProcResult copper = Harness.Run(Harness.Python, new[] { "-c", py, agent.Prefix + tree.Dir }, agent.ClientEnv());
        Assert.True(copper.ExitCode == 0, copper.ToString());
        // realpath stays under the prefix; readlink returns the stored target unchanged.
        string[] r = real.Stdout.Trim().Split(' ');
        string[] c = copper.Stdout.Trim().Split(' ');
        Assert.Equal(agent.Prefix + r[0], c[0]);
        Assert.Equal(agent.Prefix + r[1], c[1]);
        Assert.Equal(r[2], c[2]);
    }

    [Fact]
    public void ExecutingACopperPathRunsTheNodeLocalCopy()
    {
        using var agent = new AgentProcess("exec");
        string dir = Harness.TempDir("execdir");
        try
        {
            string tool = Path.Combine(dir, "hello.sh");
            File.WriteAllText(tool, "#!/bin/sh\necho \"hello $1 from $0\"\n");
            Harness.Run("chmod", new[] { "0755", tool });
            string copperTool = agent.Prefix + tool;
            string py = "import os, subprocess, sys\n" +
                "t = sys.argv[1]\n" +
                "print(subprocess.run([t, 'subprocess'], capture_output=True, text=True, check=True).stdout, end='')\n" +
                "sys.stdout.flush()\n" +
                "os.system(t + ' system')\n" +
                "env = dict(os.environ, PATH=os.path.dirname(t) + ':' + os.environ['PATH'])\n" +
                "print(subprocess.run(['hello.sh', 'path'], capture_output=True, text=True, check=True, env=env).stdout, end='')\n";
            ProcResult r = Harness.Run(Harness.Python, new[] { "-c", py, copperTool }, agent.ClientEnv());
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Contains($"hello subprocess from {copperTool}", r.Stdout);
            Assert.Contains($"hello system from {copperTool}", r.Stdout);
            Assert.Contains("hello path from", r.Stdout);
            Assert.True(File.Exists(agent.MirrorRoot + tool), "the node-local copy should have been materialized");

            // execvp's own PATH search (GNU env calls execvp) finds a program in a Copper directory.
            var env = agent.ClientEnv();
            env["PATH"] = Path.GetDirectoryName(copperTool) + ":/usr/bin:/bin";
            ProcResult viaExecvp = Harness.Run("/usr/bin/env", new[] { "hello.sh", "execvp" }, env);
            Assert.True(viaExecvp.ExitCode == 0, viaExecvp.ToString());
            Assert.Contains($"hello execvp from {copperTool}", viaExecvp.Stdout);

            // A missing Copper executable fails like a missing real one.
            ProcResult missing = Harness.Run(Harness.Python, new[] { "-c", "import subprocess, sys\ntry:\n    subprocess.run([sys.argv[1]])\nexcept FileNotFoundError:\n    print('ENOENT')", copperTool + ".nope" }, agent.ClientEnv());
            Assert.Equal("ENOENT", missing.Stdout.Trim());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
