// What every test on the test bed (out/bin/cluster) needs: the script, whether a process
// still lives, what a job left running in the nodes, and an install tree the nodes can see.
using Xunit;

namespace Copper.Tests;

internal static class TestBed
{
    public static string Cluster => Path.Combine(Harness.Bin, "cluster");

    /// <summary>A live process (a killed one may stay a zombie for a moment; it holds nothing).</summary>
    public static bool Alive(int pid)
    {
        try
        {
            string s = File.ReadAllText($"/proc/{pid}/stat");
            return s[(s.LastIndexOf(')') + 2)..].Split(' ')[0] != "Z";
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>
    /// Polls (bounded, about 30 s) until the given nodes run nothing but their holder and the
    /// daemons named in <paramref name="daemons"/> (a shell case pattern such as "sshd");
    /// returns "" then, else "nodeK:pid:comm ..." of what is left.
    /// </summary>
    public static string LeftInNodes(string name, IEnumerable<int> nodes, string daemons)
    {
        string script = $@"for i in $(seq 1 150); do
  left=
  for k in {string.Join(' ', nodes)}; do
    for p in $(ip netns pids cu-{name}-$k); do
      s=$(awk '{{print $3}}' /proc/$p/stat 2>/dev/null) || continue
      [ ""$s"" = Z ] && continue
      c=$(cat /proc/$p/comm 2>/dev/null) || continue
      case $c in sleep|{daemons}) ;; *) left=""$left node$k:$p:$c"" ;; esac
    done
  done
  [ -z ""$left"" ] && exit 0
  sleep 0.2
done
echo ""$left""; exit 1";
        ProcResult r = Harness.Bash(script, timeoutMs: 60_000);
        return r.ExitCode == 0 ? "" : "left:" + r.Stdout.Trim() + r.Stderr;
    }

    /// <summary>
    /// The installed tree where the nodes see it: a checkout under /tmp is hidden by each node's
    /// own /tmp, so it is copied to /var/tmp (<paramref name="copied"/>, for the caller to remove).
    /// </summary>
    public static string VisibleInstall(string name, out string? copied)
    {
        copied = null;
        if (Harness.Out == "/tmp" || Harness.Out.StartsWith("/tmp/", StringComparison.Ordinal))
        {
            copied = Path.Combine("/var/tmp", "copper-test-install-" + name);
            ProcResult cp = Harness.Run("cp", new[] { "-a", Harness.Out, copied });
            Assert.True(cp.ExitCode == 0, cp.ToString());
            return copied;
        }
        return Harness.Out;
    }
}
