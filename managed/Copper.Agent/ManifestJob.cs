// The agent's side of re-running a job at start and stop: the manifest to replay (read,
// checked, bounded), a lone agent's replay, and this agent's record merged into the file.
// The format is Manifest.cs; the replay itself and its tree messages are Replay.cs.
namespace Copper.Agent;

internal static class ManifestJob
{
    /// <summary>
    /// The manifest to replay (--manifest), read on the node that replays it; null when there
    /// is none or it cannot be used, and then a line says why (the launch goes on without replay).
    /// </summary>
    public static Manifest? Load(AgentOptions o, ReplayProgress progress)
    {
        if (o.Manifest == null)
        {
            return null;
        }
        if (!File.Exists(o.Manifest))
        {
            progress.Message = $"{o.Manifest} does not exist yet: nothing to replay; this job's record is written there at stop";
            Console.Out.WriteLine($"copper-agent: manifest {progress.Message}");
            return null;
        }
        Manifest? m = Manifest.TryRead(o.Manifest, o.Prefix, out string why);
        if (m == null || m.Entries.Count == 0)
        {
            progress.State = "skipped";
            progress.Message = $"manifest {o.Manifest} not replayed: {(m == null ? why : "it has no entries")}";
            Console.Error.WriteLine($"copper-agent: {progress.Message}; launching without replay (this job's record replaces it at stop)");
            return null;
        }
        if (m.Entries.Count > o.ReplayMaxEntries)
        {
            progress.Message = $"manifest {o.Manifest} has {m.Entries.Count} entries: replaying the first {o.ReplayMaxEntries} (--replay-max-entries)";
            Console.Error.WriteLine($"copper-agent: {progress.Message}");
        }
        Console.Out.WriteLine($"copper-agent: replaying {Math.Min(m.Entries.Count, o.ReplayMaxEntries)} entries of {o.Manifest}");
        return m;
    }

    /// <summary>A lone agent (no tree) replays into its own cache.</summary>
    public static async Task ReplayAloneAsync(Replayer replayer, Manifest m, int max, ReplayProgress progress, CancellationToken ct)
    {
        try
        {
            await Task.Run(() => replayer.RunAsync(Replayer.ItemsOf(m.Entries, max), m.Entries, null, ct), ct);
            Console.Out.WriteLine($"copper-agent: replay at the root done: {progress.Done} entries ({progress.Changed} changed, {progress.Vanished} vanished), {progress.Bytes} bytes of files, {progress.Seconds:0.000} s");
            Console.Out.WriteLine("copper-agent: replay done on all 1 nodes");
            Console.Out.Flush();
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Merges this agent's record into <paramref name="file"/>: 0 or an errno, and a line for the user.</summary>
    public static (int Status, string Message) Save(AgentOptions o, ManifestRecorder recorder, string file)
    {
        try
        {
            List<ManifestEntry> mine = recorder.Snapshot();
            int total = Manifest.Save(file, o.Prefix, mine, out string note);
            string full = recorder.Dropped > 0 ? $"; {recorder.Dropped} more paths were asked but not recorded (--replay-max-entries {recorder.MaxPaths})" : "";
            return (0, $"manifest {file}: {total} entries ({mine.Count} recorded by this agent{full}){(note.Length > 0 ? "; " + note : "")}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return (13 /* EACCES */, $"cannot write the manifest {file}: {ex.Message}");
        }
    }
}
