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
// and calls that reached the prefix itself (the FUSE mount). The directories these name (a
// listed directory, and the directory of every other path) are "reached through Copper";
// a leak is a call on such a directory or on one of its entries by its real path. Calls on
// Copper's own files (the cache and mirror, the sockets, the directories above them, which
// the shim checks before it trusts them) are Copper's, not leaks.
//
// Exit status: 0 no leak; 1 leaks (listed); 2 bad usage; 3 no agent serves PREFIX here;
// 4 the command could not be traced (no strace, ptrace refused, ...).
using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
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

        var agents = Query(prefix).Where(a => a.Item2 != null).Select(a => a.Item1).ToList();
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

        string traceDir = keep ?? Directory.CreateTempSubdirectory("copper-verify-").FullName;
        Directory.CreateDirectory(traceDir);
        int commandStatus;
        try
        {
            var psi = new ProcessStartInfo(strace) { UseShellExecute = false };
            foreach (string a in new[]
            {
                "-f", "-ff", "-qq", "-yy", "-s", "65535", "-o", Path.Combine(traceDir, "trace"),
                "-e", "trace=%file,getdents,getdents64,fstat,fstatfs,fchdir,connect,sendto,sendmsg,write,writev",
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
                proc.WaitForExit();
                commandStatus = proc.ExitCode;
            }
            string[] files = Directory.GetFiles(traceDir, "trace.*");
            if (files.Length == 0)
            {
                Console.Error.WriteLine($"copper verify: strace wrote no trace (status {commandStatus}); is ptrace allowed here?");
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
        sb.Append(CultureInfo.InvariantCulture, $"copper verify: {string.Join(' ', command)} (exit status {status}), prefix {prefix}\n");
        sb.Append(CultureInfo.InvariantCulture,
            $"  through Copper: {t.Requests + t.MirrorCalls + t.PrefixCalls} calls ({t.Requests} requests to the agent, " +
            $"{t.MirrorCalls} on mirror copies in {string.Join(", ", caches)}, {t.PrefixCalls} on {prefix} paths); " +
            $"{t.Reached.Count} paths reached through the prefix\n");
        if (leaks.Count == 0)
        {
            sb.Append("  leaks: none (no call reached a real path behind a Copper path the command used)\n");
        }
        else
        {
            sb.Append(CultureInfo.InvariantCulture,
                $"  leaks: {leaks.Sum(l => l.Calls)} calls on real paths behind Copper paths, in {leaks.Count} director{(leaks.Count == 1 ? "y" : "ies")}:\n");
            foreach (TraceAnalysis.Leak l in leaks)
            {
                string kinds = string.Join(", ", l.BySyscall.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} {kv.Value}"));
                sb.Append(CultureInfo.InvariantCulture, $"    {l.Directory}: {l.Calls} calls ({kinds}), e.g. {string.Join(", ", l.Examples)}\n");
            }
            sb.Append(CultureInfo.InvariantCulture, $"  (put {prefix} in front of these paths where the command finds them)\n");
        }
        if (keep != null)
        {
            sb.Append(CultureInfo.InvariantCulture, $"  trace kept in {keep}/trace.<pid>\n");
        }
        Console.Out.Write(sb.ToString());
        return leaks.Count == 0 ? VerifyClean : VerifyLeaks;
    }

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

/// <summary>
/// Reads `strace -ff -yy` output, one process at a time, and sorts every file-system call into
/// Copper's (requests to the agent, mirror copies, the prefix) and real ones; a real call on a
/// directory reached through Copper, or on one of its entries, is a leak.
/// </summary>
internal sealed class TraceAnalysis
{
    public sealed record Leak(string Directory, int Calls, Dictionary<string, int> BySyscall, List<string> Examples);

    private readonly string _prefix;
    private readonly List<string> _caches;
    private readonly List<string> _copperOwn; // cache dirs, runtime dir: Copper's, and what is above them
    private readonly HashSet<string> _sockets;
    private readonly string _cwd;
    private readonly HashSet<string> _agentInodes = new(StringComparer.Ordinal);
    private readonly List<(string Syscall, string Path, bool IsDir)> _real = [];
    private readonly HashSet<string> _dirs = new(StringComparer.Ordinal); // reached paths known to be directories

    public int Requests { get; private set; }
    public int MirrorCalls { get; private set; }
    public int PrefixCalls { get; private set; }
    public HashSet<string> Reached { get; } = new(StringComparer.Ordinal);

    // Calls that carry data, not a path: looked at only when they talk to the agent.
    private static readonly HashSet<string> SocketCalls = new(StringComparer.Ordinal) { "connect", "sendto", "sendmsg", "write", "writev" };

    public TraceAnalysis(string prefix, List<string> caches, string runtimeDir, IEnumerable<string> sockets, string cwd)
    {
        _prefix = prefix;
        _caches = caches;
        _copperOwn = [.. caches, Places.Normalize(runtimeDir)];
        _sockets = new HashSet<string>(sockets.Select(Places.Normalize), StringComparer.Ordinal);
        _cwd = cwd;
    }

    /// <summary>One process's trace file (strace -ff writes one per process, so no call is split).</summary>
    public void AddProcess(IEnumerable<string> lines)
    {
        string cwd = _cwd;
        var stream = new Dictionary<string, List<byte>>(StringComparer.Ordinal);
        foreach (string line in lines)
        {
            int open = line.IndexOf('(');
            if (open <= 0 || !IsName(line.AsSpan(0, open)))
            {
                continue; // "--- SIGCHLD ...", "+++ exited ...", resumed fragments
            }
            string syscall = line[..open];
            List<string> args = SplitArgs(line, open + 1);
            if (args.Count == 0)
            {
                continue;
            }
            (string? fd, string? fdPath) = FdArg(args[0]);
            if (fd == "AT_FDCWD" && fdPath != null && fdPath.StartsWith('/'))
            {
                cwd = fdPath;
            }
            if (SocketCalls.Contains(syscall))
            {
                Socket(syscall, args, fdPath, stream);
                continue;
            }
            string? path = null;
            if (args[0].StartsWith('"'))
            {
                path = Decode(args[0]);
                path = path.StartsWith('/') ? path : cwd + "/" + path;
            }
            else if (fdPath != null && args.Count > 1 && args[1].StartsWith('"'))
            {
                string rel = Decode(args[1]);
                path = rel.Length == 0 ? fdPath : rel.StartsWith('/') ? rel : fdPath + "/" + rel;
            }
            else if (fdPath != null && fd != "AT_FDCWD")
            {
                path = fdPath; // getdents64(3</dir>, ...), fstat(4</file>, ...)
            }
            if (path == null || !path.StartsWith('/'))
            {
                continue; // pipes, sockets, anonymous files
            }
            Classify(syscall, Places.Normalize(path), args);
        }
    }

    private void Classify(string syscall, string path, List<string> args)
    {
        // Opening a file makes its directory one the command reads through Copper; opening a
        // directory (to list it) makes that directory one. Other calls (stat, the shim's checks
        // of the mirror's directories) name only the path itself.
        bool opens = syscall is "open" or "openat" or "openat2" or "execve" or "execveat" or "creat";
        bool dir = args.Any(a => a.Contains("O_DIRECTORY", StringComparison.Ordinal));
        if (Under(path, _prefix))
        {
            PrefixCalls++;
            UsedThroughCopper(path.Length == _prefix.Length ? "/" : path[_prefix.Length..], withParent: opens && !dir, isDir: dir);
            return;
        }
        foreach (string cache in _caches)
        {
            if (Under(path, cache))
            {
                MirrorCalls++;
                string mirror = cache + "/mirror";
                if (Under(path, mirror) && opens)
                {
                    UsedThroughCopper(path.Length == mirror.Length ? "/" : path[mirror.Length..], withParent: !dir, isDir: dir);
                }
                return;
            }
        }
        foreach (string own in _copperOwn)
        {
            if (Under(path, own) || Under(own, path))
            {
                return; // Copper's own files, or the shim's checks of the directories above them
            }
        }
        _real.Add((syscall, path, dir || syscall.StartsWith("getdents", StringComparison.Ordinal)));
    }

    private void UsedThroughCopper(string real, bool withParent, bool isDir)
    {
        Reached.Add(real);
        if (isDir)
        {
            _dirs.Add(real);
        }
        string parent = Parent(real);
        if (withParent && parent != "/")
        {
            Reached.Add(parent); // a file of it was read through Copper ("/" only counts when listed itself)
            _dirs.Add(parent);
        }
    }

    // connect() names the agent's socket; what is sent on it afterwards is frames.
    private void Socket(string syscall, List<string> args, string? fdPath, Dictionary<string, List<byte>> stream)
    {
        string? inode = SocketInode(fdPath);
        if (inode == null)
        {
            return;
        }
        if (syscall == "connect")
        {
            int at = args.Count > 1 ? args[1].IndexOf("sun_path=\"", StringComparison.Ordinal) : -1;
            if (at >= 0 && _sockets.Contains(Places.Normalize(Decode(args[1][(at + 9)..]))))
            {
                _agentInodes.Add(inode);
            }
            return;
        }
        if (!_agentInodes.Contains(inode))
        {
            return;
        }
        if (!stream.TryGetValue(inode, out List<byte>? buf))
        {
            stream[inode] = buf = [];
        }
        foreach (string a in args.Skip(1))
        {
            // sendto/write: the buffer; sendmsg/writev: every iov_base, in order.
            int q = a.IndexOf('"');
            while (q >= 0)
            {
                buf.AddRange(DecodeBytes(a, q, out int end));
                q = a.IndexOf('"', end);
            }
        }
        while (buf.Count >= Protocol.HeaderSize)
        {
            byte[] head = buf.GetRange(0, Protocol.HeaderSize).ToArray();
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(head);
            byte op = head[4];
            if (length > Protocol.MaxPayload || op is 0 or > (byte)Op.ListDirPlus)
            {
                buf.Clear(); // not a frame we understand: resynchronize on the next send
                return;
            }
            if (buf.Count < Protocol.HeaderSize + length)
            {
                return;
            }
            byte[] payload = buf.GetRange(Protocol.HeaderSize, (int)length).ToArray();
            buf.RemoveRange(0, Protocol.HeaderSize + (int)length);
            int skip = (Op)op switch
            {
                Op.Stat or Op.Lstat or Op.ReadLink or Op.Open or Op.ListDir => 0,
                Op.Access or Op.ListDirPlus => 8, // copper_access_req / copper_listdir_req
                _ => -1,                          // hello, ping, stats: no path
            };
            if (skip < 0 || payload.Length <= skip)
            {
                continue;
            }
            Requests++;
            string real = Encoding.UTF8.GetString(payload, skip, payload.Length - skip).TrimEnd('\0');
            // A listing asked for "only if you have it" is the shim looking up one name in that
            // directory on its way down a path, not the command reading the directory.
            bool probe = (Op)op == Op.ListDirPlus && (BinaryPrimitives.ReadUInt32LittleEndian(payload) & 1u) != 0;
            if (real.StartsWith('/') && !probe)
            {
                UsedThroughCopper(Places.Normalize(real), withParent: (Op)op == Op.Open, isDir: (Op)op is Op.ListDir or Op.ListDirPlus);
            }
        }
    }

    /// <summary>Real calls on a directory reached through Copper or on its entries, by directory.</summary>
    public List<Leak> Leaks()
    {
        var groups = new Dictionary<string, Leak>(StringComparer.Ordinal);
        foreach ((string syscall, string path, bool isDir) in _real)
        {
            string parent = Parent(path);
            if (!(Reached.Contains(path) || (Reached.Contains(parent) && parent != "/")))
            {
                continue;
            }
            // Grouped by directory: a directory's own calls under it, a file's under its parent.
            string dir = isDir || _dirs.Contains(path) || path == "/" ? path : parent;
            if (!groups.TryGetValue(dir, out Leak? l))
            {
                groups[dir] = l = new Leak(dir, 0, new Dictionary<string, int>(StringComparer.Ordinal), []);
            }
            l.BySyscall[syscall] = l.BySyscall.GetValueOrDefault(syscall) + 1;
            if (l.Examples.Count < 3 && !l.Examples.Contains(path))
            {
                l.Examples.Add(path);
            }
            groups[dir] = l with { Calls = l.Calls + 1 };
        }
        return groups.Values.OrderByDescending(l => l.Calls).ThenBy(l => l.Directory, StringComparer.Ordinal).ToList();
    }

    private static bool Under(string path, string dir) =>
        path.Length >= dir.Length && path.StartsWith(dir, StringComparison.Ordinal)
        && (path.Length == dir.Length || path[dir.Length] == '/' || dir == "/");

    private static string Parent(string path)
    {
        int slash = path.LastIndexOf('/');
        return slash <= 0 ? "/" : path[..slash];
    }

    private static bool IsName(ReadOnlySpan<char> s)
    {
        foreach (char c in s)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c == '_'))
            {
                return false;
            }
        }
        return true;
    }

    // "768<UNIX-STREAM:[44133->44137]>" -> "44133"
    private static string? SocketInode(string? fdPath)
    {
        if (fdPath == null || !fdPath.StartsWith("UNIX", StringComparison.Ordinal))
        {
            return null;
        }
        int b = fdPath.IndexOf('[');
        if (b < 0)
        {
            return null;
        }
        int e = b + 1;
        while (e < fdPath.Length && char.IsAsciiDigit(fdPath[e]))
        {
            e++;
        }
        return e > b + 1 ? fdPath[(b + 1)..e] : null;
    }

    // "3</usr/lib>" -> ("3", "/usr/lib"); "AT_FDCWD</tmp>" -> ("AT_FDCWD", "/tmp")
    private static (string?, string?) FdArg(string arg)
    {
        int lt = arg.IndexOf('<');
        if (lt <= 0 || !arg.EndsWith('>'))
        {
            return (null, null);
        }
        string fd = arg[..lt];
        if (fd != "AT_FDCWD" && !fd.All(char.IsAsciiDigit))
        {
            return (null, null);
        }
        string inner = arg[(lt + 1)..^1];
        return (fd, inner.Contains('\\') ? DecodeEscapes(inner) : inner);
    }

    /// <summary>Top-level arguments of "name(a, b, c) = r", respecting strings, braces and fd annotations.</summary>
    private static List<string> SplitArgs(string line, int start)
    {
        var args = new List<string>();
        int depth = 0, begin = start;
        for (int i = start; i < line.Length; i++)
        {
            char c = line[i];
            if (c == '"')
            {
                i = SkipString(line, i);
                continue;
            }
            if (c == '<' && i > start && (char.IsAsciiDigit(line[i - 1]) || line[i - 1] == 'D'))
            {
                // fd annotation: to the '>' that closes it ("->" inside a socket's [a->b] does not)
                int j = i + 1;
                int bracket = 0;
                for (; j < line.Length; j++)
                {
                    if (line[j] == '[')
                    {
                        bracket++;
                    }
                    else if (line[j] == ']')
                    {
                        bracket--;
                    }
                    else if (line[j] == '>' && bracket <= 0 && (j + 1 == line.Length || line[j + 1] is ',' or ')' or ' ' or '}' or ']'))
                    {
                        break;
                    }
                }
                i = j;
                continue;
            }
            if (c is '(' or '{' or '[')
            {
                depth++;
            }
            else if (c is '}' or ']')
            {
                depth--;
            }
            else if (c == ')')
            {
                if (depth == 0)
                {
                    AddArg(args, line, begin, i);
                    return args;
                }
                depth--;
            }
            else if (c == ',' && depth == 0)
            {
                AddArg(args, line, begin, i);
                begin = i + 1;
            }
        }
        AddArg(args, line, begin, line.Length); // "<unfinished ...>" lines end without ')'
        return args;
    }

    private static void AddArg(List<string> args, string line, int from, int to)
    {
        string a = line[from..to].Trim();
        if (a.Length > 0)
        {
            args.Add(a);
        }
    }

    private static int SkipString(string s, int quote)
    {
        for (int i = quote + 1; i < s.Length; i++)
        {
            if (s[i] == '\\')
            {
                i++;
            }
            else if (s[i] == '"')
            {
                return i;
            }
        }
        return s.Length;
    }

    private static string Decode(string quoted)
    {
        int q = quoted.IndexOf('"');
        return q < 0 ? "" : Encoding.UTF8.GetString(DecodeBytes(quoted, q, out _));
    }

    private static string DecodeEscapes(string s) => Encoding.UTF8.GetString(DecodeBytes("\"" + s + "\"", 0, out _));

    /// <summary>The bytes of the C string literal strace printed at s[quote]; end: its closing quote.</summary>
    private static byte[] DecodeBytes(string s, int quote, out int end)
    {
        var bytes = new List<byte>();
        int i = quote + 1;
        for (; i < s.Length && s[i] != '"'; i++)
        {
            char c = s[i];
            if (c != '\\' || i + 1 >= s.Length)
            {
                if (c < 0x80)
                {
                    bytes.Add((byte)c);
                }
                else
                {
                    bytes.AddRange(Encoding.UTF8.GetBytes(c.ToString()));
                }
                continue;
            }
            char e = s[++i];
            switch (e)
            {
                case 'n': bytes.Add((byte)'\n'); break;
                case 't': bytes.Add((byte)'\t'); break;
                case 'r': bytes.Add((byte)'\r'); break;
                case 'v': bytes.Add((byte)'\v'); break;
                case 'f': bytes.Add((byte)'\f'); break;
                case 'x':
                    {
                        int v = 0, n = 0;
                        while (n < 2 && i + 1 < s.Length && char.IsAsciiHexDigit(s[i + 1]))
                        {
                            v = v * 16 + Convert.ToInt32(s[++i].ToString(), 16);
                            n++;
                        }
                        bytes.Add((byte)v);
                        break;
                    }
                case >= '0' and <= '7':
                    {
                        int v = e - '0', n = 1;
                        while (n < 3 && i + 1 < s.Length && s[i + 1] is >= '0' and <= '7')
                        {
                            v = v * 8 + (s[++i] - '0');
                            n++;
                        }
                        bytes.Add((byte)v);
                        break;
                    }
                default: bytes.Add((byte)e); break; // \" \\ and the rest stand for themselves
            }
        }
        end = i + 1;
        return bytes.ToArray();
    }
}
