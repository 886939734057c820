// The analysis behind `copper verify` (Verify.cs): strace's output in, leaks out. A pure
// function of the trace text, so the tests feed it lines as well as real traces.
using System.Buffers.Binary;
using System.Text;
using Copper.Interop;

/// <summary>
/// Reads `strace -ff -yy` output, one process at a time, and sorts every file-system call into
/// Copper's (requests to the agent, mirror copies, the prefix) and real ones; a real call on a
/// directory reached through Copper, or on one of its entries, is a leak.
/// </summary>
internal sealed class TraceAnalysis
{
    /// <summary>
    /// Real calls in one directory. ByShim: the shim's own fallback, not the command's path: it
    /// asked the agent to open the file and, with no mirror copy to open (a file larger than -M,
    /// or an answer the agent could not give), opened the real path.
    /// </summary>
    public sealed record Leak(string Directory, bool ByShim, int Calls, Dictionary<string, int> BySyscall, List<string> Examples);

    private readonly string _prefix;
    private readonly List<string> _caches;
    private readonly List<string> _copperOwn; // cache dirs, runtime dir: Copper's, and what is above them
    private readonly HashSet<string> _sockets;
    private readonly string _cwd;
    private readonly HashSet<string> _agentInodes = new(StringComparer.Ordinal);
    // Real calls, by path: the calls of each kind, and whether one showed it is a directory.
    private readonly Dictionary<string, (Dictionary<string, int> BySyscall, bool IsDir)> _real = new(StringComparer.Ordinal);
    private readonly HashSet<string> _dirs = new(StringComparer.Ordinal); // reached paths known to be directories
    private readonly HashSet<string> _openAsked = new(StringComparer.Ordinal); // OPEN requests' paths
    private readonly HashSet<string> _mirrorOpened = new(StringComparer.Ordinal); // files opened from the mirror

    public int Requests { get; private set; }
    public int MirrorCalls { get; private set; }
    public int PrefixCalls { get; private set; }
    public HashSet<string> Reached { get; } = new(StringComparer.Ordinal);

    // Calls that carry data, not a path: looked at only when they talk to the agent.
    // The clients send frames with send(2), which is sendto.
    private static readonly HashSet<string> SocketCalls = new(StringComparer.Ordinal) { "connect", "sendto" };

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
                // Below the mirror root: a copy the command reads. The cache and mirror roots
                // themselves: the shim's checks before it trusts them.
                string mirror = cache + "/mirror";
                if (Under(path, mirror) && path.Length > mirror.Length)
                {
                    MirrorCalls++;
                    if (opens)
                    {
                        UsedThroughCopper(path[mirror.Length..], withParent: !dir, isDir: dir);
                        _mirrorOpened.Add(path[mirror.Length..]);
                    }
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
        bool isDir = dir || syscall.StartsWith("getdents", StringComparison.Ordinal);
        if (!_real.TryGetValue(path, out var entry))
        {
            entry = (new Dictionary<string, int>(StringComparer.Ordinal), false);
        }
        entry.BySyscall[syscall] = entry.BySyscall.GetValueOrDefault(syscall) + 1;
        _real[path] = (entry.BySyscall, entry.IsDir || isDir);
    }

    private void UsedThroughCopper(string real, bool withParent, bool isDir)
    {
        if (real == "/" && !isDir)
        {
            return; // a look at the prefix itself (the mount's root) reads nothing of "/"
        }
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
            int q = a.IndexOf('"'); // the buffer
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
                if ((Op)op == Op.Open)
                {
                    _openAsked.Add(Places.Normalize(real));
                }
            }
        }
    }

    /// <summary>Real calls on a directory reached through Copper or on its entries, by directory.</summary>
    public List<Leak> Leaks()
    {
        var groups = new Dictionary<string, Leak>(StringComparer.Ordinal);
        foreach ((string path, (Dictionary<string, int> bySyscall, bool isDir)) in _real.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            string parent = Parent(path);
            if (!(Reached.Contains(path) || (Reached.Contains(parent) && parent != "/")))
            {
                continue;
            }
            // Grouped by directory: a directory's own calls under it, a file's under its parent.
            string dir = isDir || _dirs.Contains(path) || path == "/" ? path : parent;
            bool byShim = !isDir && _openAsked.Contains(path) && !_mirrorOpened.Contains(path);
            string key = (byShim ? "s" : "c") + dir;
            if (!groups.TryGetValue(key, out Leak? l))
            {
                groups[key] = l = new Leak(dir, byShim, 0, new Dictionary<string, int>(StringComparer.Ordinal), []);
            }
            int calls = 0;
            foreach ((string syscall, int n) in bySyscall)
            {
                l.BySyscall[syscall] = l.BySyscall.GetValueOrDefault(syscall) + n;
                calls += n;
            }
            if (l.Examples.Count < 3)
            {
                l.Examples.Add(path);
            }
            groups[key] = l with { Calls = l.Calls + calls };
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
