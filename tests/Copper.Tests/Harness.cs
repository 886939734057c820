// Shared test plumbing: where the repository and its install tree are, running a real
// process with a timeout, compiling small C programs with gcc.
using System.Diagnostics;
using System.Text;

namespace Copper.Tests;

public sealed record ProcResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

public static class Harness
{
    public static readonly string RepoRoot = FindRepoRoot();
    public static readonly string Out = Path.Combine(RepoRoot, "out");
    public static readonly string Bin = Path.Combine(Out, "bin");
    public static readonly string Lib = Path.Combine(Out, "lib");
    public static readonly string Preload = Path.Combine(Lib, "libcopper-preload.so");
    public static readonly string Audit = Path.Combine(Lib, "libcopper-audit.so");
    public const string Python = "/usr/bin/python3";

    private static string FindRepoRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir != null && !File.Exists(Path.Combine(dir, "Copper.sln")))
        {
            dir = Path.GetDirectoryName(dir);
        }
        return dir ?? throw new InvalidOperationException("Copper.sln not found above the test directory");
    }

    public static ProcResult Run(string file, IEnumerable<string> args, IDictionary<string, string?>? env = null, int timeoutMs = 120_000, string? stdin = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin != null,
            UseShellExecute = false,
        };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        if (env != null)
        {
            foreach (var kv in env)
            {
                if (kv.Value == null)
                {
                    psi.Environment.Remove(kv.Key);
                }
                else
                {
                    psi.Environment[kv.Key] = kv.Value;
                }
            }
        }
        using var p = Process.Start(psi)!;
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data != null) { lock (stdout) { stdout.AppendLine(e.Data); } } };
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) { lock (stderr) { stderr.AppendLine(e.Data); } } };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (stdin != null)
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in {timeoutMs} ms\n{stdout}\n{stderr}");
        }
        p.WaitForExit();
        return new ProcResult(p.ExitCode, stdout.ToString(), stderr.ToString());
    }

    public static ProcResult Bash(string script, IDictionary<string, string?>? env = null, int timeoutMs = 120_000) =>
        Run("/bin/bash", new[] { "-c", script }, env, timeoutMs);

    /// <summary>Compiles tests/Copper.Tests/programs/NAME.c (or the given source) into a temp dir; returns the binary.</summary>
    public static string CompileC(string source, string output, params string[] extra)
    {
        var args = new List<string> { "-O1", "-Wall", "-Werror", "-D_GNU_SOURCE", "-o", output, source };
        args.AddRange(extra);
        ProcResult r = Run("gcc", args);
        if (r.ExitCode != 0)
        {
            throw new InvalidOperationException($"gcc failed for {source}:\n{r}");
        }
        return output;
    }

    public static string Program(string name) => Path.Combine(AppContext.BaseDirectory, "programs", name);

    public static string TempDir(string tag)
    {
        string dir = Path.Combine("/tmp", $"copper-test-{tag}-{Guid.NewGuid():N}"[..40]);
        Directory.CreateDirectory(dir);
        return dir;
    }
}
