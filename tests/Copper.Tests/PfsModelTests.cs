// copper-pfs-model, the benchmarks' PFS model, on its own: it serves its directory at the
// mount, lets the client kernel cache nothing (every operation reaches it and is counted),
// writes the counts in the JSON the benchmarks read (with --per-path also by path), and
// unmounts on SIGTERM. The agent no longer knows the model's options.
using System.Diagnostics;
using System.Text.Json;
using Xunit;

namespace Copper.Tests;

public class PfsModelTests
{
    private static readonly string Model = Path.Combine(Harness.Bin, "copper-pfs-model");

    private static bool IsMounted(string path) =>
        File.ReadAllLines("/proc/mounts").Any(l => l.Split(' ')[1] == path);

    [Fact]
    public void ServesCountsEveryOperationAndUnmountsOnTerm()
    {
        string root = Harness.TempDir("pfsmodel");
        string src = Path.Combine(root, "src"), mnt = Path.Combine(root, "mnt"), stats = Path.Combine(root, "model.json");
        Directory.CreateDirectory(Path.Combine(src, "d"));
        byte[] data = System.Security.Cryptography.RandomNumberGenerator.GetBytes(300_000);
        File.WriteAllBytes(Path.Combine(src, "d", "f"), data);
        File.CreateSymbolicLink(Path.Combine(src, "d", "l"), "f");
        var psi = new ProcessStartInfo(Model) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { src, "--mount", mnt, "--service-us", "0", "--model-stats", stats, "--per-path" })
        {
            psi.ArgumentList.Add(a);
        }
        using Process p = Process.Start(psi)!;
        var output = new System.Text.StringBuilder();
        p.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        p.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        try
        {
            var sw = Stopwatch.StartNew();
            while (!(IsMounted(mnt) && File.Exists(stats)))
            {
                Assert.False(p.HasExited, $"the model exited: {output}");
                Assert.True(sw.ElapsedMilliseconds < 20_000, "the model did not mount");
                Thread.Sleep(10);
            }
            ProcResult r = Harness.Bash($"""
                set -e
                for i in 1 2 3 4 5; do stat -c %s {mnt}/d/f; done
                readlink {mnt}/d/l
                ls {mnt}/d
                cat {mnt}/d/f | md5sum
                md5sum < {src}/d/f
                """);
            Assert.True(r.ExitCode == 0, r.ToString());
            string[] lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(["300000", "300000", "300000", "300000", "300000", "f", "f", "l"], lines[..8]);
            Assert.Equal(lines[9], lines[8]);

            Assert.Equal(0, Harness.Run("kill", ["-TERM", p.Id.ToString()]).ExitCode);
            Assert.True(p.WaitForExit(20_000), "the model did not stop on SIGTERM");
            Assert.Equal(0, p.ExitCode);
            Assert.False(IsMounted(mnt), "the model left its mount behind");

            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(stats));
            JsonElement byKind = doc.RootElement.GetProperty("ops_by_kind");
            Assert.Equal(["stat", "readlink", "access", "open", "opendir", "read"], byKind.EnumerateObject().Select(x => x.Name));
            long Kind(string k) => byKind.GetProperty(k).GetInt64();
            // Nothing cached by the kernel: each of the five stats looked the file up again.
            Assert.True(Kind("stat") >= 5, doc.RootElement.ToString());
            Assert.True(Kind("readlink") >= 1 && Kind("opendir") >= 1 && Kind("open") >= 1 && Kind("read") >= 1, doc.RootElement.ToString());
            Assert.Equal(Kind("stat") + Kind("readlink") + Kind("access") + Kind("open") + Kind("opendir"), doc.RootElement.GetProperty("metadata_ops").GetInt64());
            Assert.Equal(data.Length, doc.RootElement.GetProperty("bytes_read").GetInt64());
            // --per-path: the same operations by the path the client named (below the mount).
            JsonElement byPath = doc.RootElement.GetProperty("ops_by_path");
            Assert.True(byPath.GetProperty("/d/f").GetProperty("stat").GetInt64() >= 5, byPath.ToString());
            Assert.True(byPath.GetProperty("/d/f").GetProperty("open").GetInt64() >= 1, byPath.ToString());
            Assert.Equal(1, byPath.GetProperty("/d/l").GetProperty("readlink").GetInt64());
            Assert.True(byPath.GetProperty("/d").GetProperty("opendir").GetInt64() >= 1, byPath.ToString());
        }
        finally
        {
            if (!p.HasExited)
            {
                p.Kill();
                p.WaitForExit();
            }
            if (IsMounted(mnt))
            {
                Harness.Run("fusermount3", ["-uz", mnt]);
            }
            Directory.Delete(root, recursive: true);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public void MetadataServersServeThatManyOperationsAtOnce(int servers)
    {
        string root = Harness.TempDir("pfsmodel-mds");
        string src = Path.Combine(root, "src"), mnt = Path.Combine(root, "mnt"), stats = Path.Combine(root, "model.json");
        Directory.CreateDirectory(src);
        for (int i = 0; i < 8; i++)
        {
            File.WriteAllText(Path.Combine(src, $"f{i}"), "x");
        }
        var psi = new ProcessStartInfo(Model) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        // 20 ms per operation: eight clients asking at once overlap whenever the model lets them.
        foreach (string a in new[] { src, "--mount", mnt, "--service-us", "20000", "--metadata-servers", servers.ToString(), "--model-stats", stats })
        {
            psi.ArgumentList.Add(a);
        }
        using Process p = Process.Start(psi)!;
        var output = new System.Text.StringBuilder();
        p.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        p.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        try
        {
            var sw = Stopwatch.StartNew();
            while (!(IsMounted(mnt) && File.Exists(stats)))
            {
                Assert.False(p.HasExited, $"the model exited: {output}");
                Assert.True(sw.ElapsedMilliseconds < 20_000, "the model did not mount");
                Thread.Sleep(10);
            }
            ProcResult r = Harness.Bash($"""
                set -e
                for i in 0 1 2 3 4 5 6 7; do (for j in 1 2 3 4 5; do stat -c %s {mnt}/f$i >/dev/null; done) & done
                wait
                """);
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal(0, Harness.Run("kill", ["-TERM", p.Id.ToString()]).ExitCode);
            Assert.True(p.WaitForExit(20_000), "the model did not stop on SIGTERM");
            lock (output)
            {
                Assert.Contains($"{servers} metadata server(s)", output.ToString());
            }
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(stats));
            JsonElement e = doc.RootElement;
            Assert.Equal(servers, e.GetProperty("metadata_servers").GetInt32());
            int peak = e.GetProperty("peak_in_service").GetInt32();
            // Never more at once than there are servers; with several, the clients did overlap.
            Assert.True(peak >= 1 && peak <= servers, e.ToString());
            if (servers > 1)
            {
                Assert.True(peak >= 2, e.ToString());
            }
            Assert.True(e.GetProperty("ops_by_kind").GetProperty("stat").GetInt64() >= 40, e.ToString());
        }
        finally
        {
            if (!p.HasExited)
            {
                p.Kill();
                p.WaitForExit();
            }
            if (IsMounted(mnt))
            {
                Harness.Run("fusermount3", ["-uz", mnt]);
            }
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void BadCommandLinesAreRefusedAndTheAgentHasNoModelOptions()
    {
        foreach (string[] args in new[] { Array.Empty<string>(), ["relative", "--mount", "/tmp/x"], ["/tmp", "--service-us", "-1", "--mount", "/tmp/x"], ["/tmp", "--metadata-servers", "0", "--mount", "/tmp/x"], ["/tmp"] })
        {
            ProcResult r = Harness.Run(Model, args);
            Assert.True(r.ExitCode == 2, r.ToString());
            Assert.Contains("usage: copper-pfs-model SRC --mount DIR", r.Stderr);
        }
        ProcResult agent = Harness.Run(Path.Combine(Harness.Bin, "copper-agent"), ["--pfs-model", "/tmp", "--mount", "/tmp/x"]);
        Assert.True(agent.ExitCode == 2, agent.ToString());
        Assert.Contains("unknown option --pfs-model", agent.Stderr);
    }
}
