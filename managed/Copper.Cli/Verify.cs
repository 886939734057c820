// copper verify: does a command read only through Copper?
//   copper verify [-v PREFIX] [--keep-trace DIR] -- CMD ARGS...
// Runs CMD as a job's rank runs it (LD_PRELOAD/LD_AUDIT of the prefix's running agents, as
// launch_copper.sh prints them for `mpiexec --genv`) under `strace -f`, and names every
// file-system call that reached a real path behind a Copper path the command used.
//
// The shim answers most Copper calls without a system call (from the agent over its socket,
// or from its own cache), so the trace alone does not show which Copper paths the command
// used. Three things do: the requests the command sent to the agent (their frames carry the
// real path; copper_protocol.h), the mirror copies it opened (<cache>/mirror/<real path>),
// and calls that reached the prefix itself (the FUSE mount). What they name is "reached
// through Copper": a path looked up, a directory listed, the directory of a file opened. A
// leak is a call on a reached path, or on an entry of a reached directory, by its real path
// (TraceAnalysis.cs). Calls on Copper's own files (the cache and mirror, the sockets, the
// directories above them, which the shim checks before it trusts them) are not leaks.
//
// Exit status: 0 no leak; 1 leaks (listed); 2 bad usage; 3 no agent serves PREFIX here;
// 4 the command could not be traced (no strace, ptrace refused, ...).
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Copper.Interop;

internal static partial class Cli
{
    private const int VerifyClean = 0, VerifyLeaks = 1, VerifyUsage = 2, VerifyNoAgent = 3, VerifyError = 4;

    private static int Verify(string[] args)
    {
        string prefix = Environment.GetEnvironmentVariable("COPPER_PREFIX") is { Length: > 0 } p ? p : DefaultPrefix();
        string? keep = null;
        int i = 0;
        for (; i < args.Length; i++)
        {
            if (args[i] == "--")
            {
                i++;
                break;
            }
            if (args[i] is "-v" or "--keep-trace" && i + 1 < args.Length)
            {
                if (args[i] == "-v")
                {
                    prefix = args[++i];
                }
                else
                {
                    keep = args[++i];
                }
                continue;
            }
            if (args[i].StartsWith('-'))
            {
                Console.Error.WriteLine($"copper verify: unknown or incomplete option '{args[i]}'");
                Usage(Console.Error);
                return VerifyUsage;
            }
            break;
        }
        string[] command = args[i..];
        if (command.Length == 0)
        {
            Console.Error.WriteLine("copper verify: no command to run (copper verify [-v PREFIX] -- CMD ARGS...)");
            Usage(Console.Error);
            return VerifyUsage;
        }
        prefix = Normalize(prefix);

        var found = Query(prefix);
        var agents = found.Where(a => a.Item2 != null).Select(a => a.Item1).ToList();
        foreach (var (dir, stats, error) in found)
        {
            stats?.Dispose();
            if (stats == null)
            {
                Console.Error.WriteLine($"copper verify: the agent at {dir} does not answer ({error})");
            }
        }
        if (agents.Count == 0)
        {
            Console.Error.WriteLine($"copper verify: no agent serves {prefix} on this machine (runtime dir {RuntimeDir()}); " +
                $"start one with launch_copper.sh -v {prefix}");
            return VerifyNoAgent;
        }
        string? strace = FindInPath("strace");
        if (strace == null)
        {
            Console.Error.WriteLine("copper verify: strace not found on PATH (install it: apt-get install strace)");
            return VerifyError;
        }

        // What the agents stand on: their caches (mirror copies) and their libraries.
        var caches = new List<string>();
        string? libDir = null;
        foreach (string dir in agents)
        {
            if (ReadLine(Path.Combine(dir, "cache-dir")) is { } cache && cache.StartsWith('/'))
            {
                caches.Add(Places.Normalize(cache));
            }
            if (libDir == null && ReadLine(Path.Combine(dir, "agent.pid")) is { } pid)
            {
                try
                {
                    // The agent's own install tree: <root>/bin/copper-agent -> <root>/lib.
                    string? exe = new FileInfo($"/proc/{pid}/exe").LinkTarget;
                    if (exe != null && Path.GetDirectoryName(Path.GetDirectoryName(exe)) is { } root)
                    {
                        libDir = Path.Combine(root, "lib");
                    }
                }
                catch (IOException)
                {
                }
                catch (UnauthorizedAccessException)
                {
                }
            }
        }
        libDir ??= Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "lib"));
        string preload = Path.Combine(libDir, "libcopper-preload.so");
        string audit = Path.Combine(libDir, "libcopper-audit.so");
        foreach (string lib in new[] { preload, audit })
        {
            if (!File.Exists(lib))
            {
                Console.Error.WriteLine($"copper verify: {lib} does not exist (the agents' install tree has no shim)");
                return VerifyError;
            }
        }

        if (keep != null && Directory.Exists(keep) && Directory.EnumerateFiles(keep, "trace.*").Any())
        {
            // Another run's files would be read as this one's.
            Console.Error.WriteLine($"copper verify: {keep} already holds trace files; --keep-trace needs a directory without them");
            return VerifyUsage;
        }
        string traceDir = keep ?? Directory.CreateTempSubdirectory("copper-verify-").FullName;
        try
        {
            Directory.CreateDirectory(traceDir);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"copper verify: cannot create {traceDir}: {ex.Message}");
            return VerifyError;
        }
        int commandStatus;
        try
        {
            var psi = new ProcessStartInfo(strace) { UseShellExecute = false };
            foreach (string a in new[]
            {
                // -s: a whole frame (12 + 8 + a path of at most 4096 bytes); -yy: the path behind each descriptor
                "-f", "-ff", "-qq", "-yy", "-s", "8192", "-o", Path.Combine(traceDir, "trace"),
                "-e", "trace=%file,getdents,getdents64,fstat,fstatfs,fchdir,connect,sendto",
                "-E", "LD_PRELOAD=" + AppendList(Environment.GetEnvironmentVariable("LD_PRELOAD"), preload),
                "-E", "LD_AUDIT=" + AppendList(Environment.GetEnvironmentVariable("LD_AUDIT"), audit),
                "-E", "COPPER_PREFIX=" + prefix,
                "--",
            })
            {
                psi.ArgumentList.Add(a);
            }
            foreach (string a in command)
            {
                psi.ArgumentList.Add(a);
            }
            using (Process proc = Process.Start(psi)!)
            {
                // Ctrl-C reaches the command (and strace) from the terminal; this process waits for
                // them, reports what was traced and removes the trace. SIGTERM is passed on.
                using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => c.Cancel = true);
                using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
                {
                    c.Cancel = true;
                    try
                    {
                        proc.Kill(entireProcessTree: true);
                    }
                    catch (InvalidOperationException)
                    {
                    }
                });
                proc.WaitForExit();
                commandStatus = proc.ExitCode;
            }
            string[] files = Directory.GetFiles(traceDir, "trace.*");
            if (files.Length == 0 || files.All(f => new FileInfo(f).Length == 0))
            {
                Console.Error.WriteLine($"copper verify: strace traced nothing (status {commandStatus}; see its message above: " +
                    "a command that cannot be run, or ptrace not allowed here)");
                return VerifyError;
            }
            var trace = new TraceAnalysis(prefix, caches, RuntimeDir(), agents.Select(d => Path.Combine(d, Protocol.SocketName)), Environment.CurrentDirectory);
            foreach (string f in files.Order(StringComparer.Ordinal))
            {
                trace.AddProcess(File.ReadLines(f));
            }
            return Report(prefix, command, commandStatus, caches, trace, keep);
        }
        finally
        {
            if (keep == null)
            {
                Directory.Delete(traceDir, recursive: true);
            }
        }
    }

    private static int Report(string prefix, string[] command, int status, List<string> caches, TraceAnalysis t, string? keep)
    {
        List<TraceAnalysis.Leak> leaks = t.Leaks();
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"copper verify: {string.Join(' ', command.Select(Quote))} (exit status {status}), prefix {prefix}\n");
        sb.Append(CultureInfo.InvariantCulture,
            $"  through Copper: {t.Requests + t.MirrorCalls + t.PrefixCalls} calls ({t.Requests} requests to the agent, " +
            $"{t.MirrorCalls} on mirror copies in {string.Join(", ", caches)}, {t.PrefixCalls} on {prefix} paths); " +
            $"{t.Reached.Count} paths reached through the prefix\n");
        if (leaks.Count == 0)
        {
            sb.Append("  leaks: none (no call reached a real path behind a Copper path the command used)\n");
            if (t.Requests + t.MirrorCalls + t.PrefixCalls == 0)
            {
                sb.Append("  note: nothing went through Copper: the command used no " + prefix + " path, " +
                    "or its shim did not use the agent (see a 'copper: not using the agent' line above)\n");
            }
        }
        else
        {
            int dirs = leaks.Select(l => l.Directory).Distinct(StringComparer.Ordinal).Count();
            sb.Append(CultureInfo.InvariantCulture,
                $"  leaks: {leaks.Sum(l => l.Calls)} calls on real paths behind Copper paths, in {dirs} director{(dirs == 1 ? "y" : "ies")}:\n");
            AppendLeaks(sb, leaks.Where(l => !l.ByShim).ToList(),
                $"by the command's own paths (put {prefix} in front of them where the command finds them):");
            AppendLeaks(sb, leaks.Where(l => l.ByShim).ToList(),
                "by the shim after the agent gave no mirror copy (files larger than the agents' -M, or answers they could not give):");
        }
        if (keep != null)
        {
            sb.Append(CultureInfo.InvariantCulture, $"  trace kept in {keep}/trace.<pid>\n");
        }
        Console.Out.Write(sb.ToString());
        return leaks.Count == 0 ? VerifyClean : VerifyLeaks;
    }

    private static void AppendLeaks(StringBuilder sb, List<TraceAnalysis.Leak> leaks, string title)
    {
        if (leaks.Count == 0)
        {
            return;
        }
        sb.Append(CultureInfo.InvariantCulture, $"    {title}\n");
        foreach (TraceAnalysis.Leak l in leaks)
        {
            string kinds = string.Join(", ", l.BySyscall.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} {kv.Value}"));
            sb.Append(CultureInfo.InvariantCulture, $"      {l.Directory}: {l.Calls} calls ({kinds}), e.g. {string.Join(", ", l.Examples)}\n");
        }
    }

    // An argument as a shell would need it, for the report's first line.
    private static string Quote(string arg) =>
        arg.Length > 0 && arg.All(c => char.IsAsciiLetterOrDigit(c) || "/._-+=:,@%".Contains(c)) ? arg : "'" + arg.Replace("'", "'\\''") + "'";

    private static string DefaultPrefix() =>
        "/tmp/" + (Environment.GetEnvironmentVariable("USER") is { Length: > 0 } u ? u : Environment.UserName) + "/copper";

    private static string AppendList(string? list, string lib) =>
        string.IsNullOrWhiteSpace(list) ? lib
        : list.Split(new[] { ':', ' ' }, StringSplitOptions.RemoveEmptyEntries).Contains(lib) ? list
        : list + ":" + lib;

    private static string? FindInPath(string name)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string f = Path.Combine(dir, name);
            if (File.Exists(f))
            {
                return f;
            }
        }
        return null;
    }

    private static string? ReadLine(string file)
    {
        try
        {
            return File.ReadLines(file).FirstOrDefault()?.Trim();
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
