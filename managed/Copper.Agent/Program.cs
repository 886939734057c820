// copper-agent entry point: parse options, set up the node's places (socket directory,
// cache, logs), serve until SIGTERM/SIGINT, then remove everything it created.
using System.Globalization;
using System.Runtime.InteropServices;
using Copper.Agent;
using Microsoft.Extensions.Logging;

AgentOptions? options = AgentOptions.Parse(args, out string error);
if (options == null)
{
    Console.Error.WriteLine($"copper-agent: {error}");
    Console.Error.WriteLine("usage: copper-agent --prefix P [--runtime-dir R] [--cache-dir D] [--log-level 1-6] [--log-type file|file_and_stdout] [--log-dir D] [--max-cacheable-bytes N] [--cache-budget BYTES|P%] [--max-meta-entries N] [--node K] [--idle-timeout SECONDS] [--print-socket]");
    Console.Error.WriteLine("       MPI tree: --mpi [--node rank] [--trees T] [--fanout K] [--parent-timeout SECONDS] [--pfs-trace-dir D]");
    Console.Error.WriteLine("       FUSE: --mount DIR [--fuse-timeout SECONDS]");
    Console.Error.WriteLine("       replay: --manifest FILE [--replay-concurrency N] [--replay-max-entries N]");
    return 2;
}
if (options.PrintSocket)
{
    Console.WriteLine(options.SocketPath);
    return 0;
}
if (RuntimeInformation.ProcessArchitecture != Architecture.X64)
{
    Console.Error.WriteLine("copper-agent: this build supports x86_64 Linux only");
    return 1;
}
return await AgentHost.RunAsync(options);

namespace Copper.Agent
{
    internal static partial class AgentHost
    {
        public static async Task<int> RunAsync(AgentOptions o)
        {
            MpiTransport? mpi = null;
            TreeNode? tree = null;
            if (o.Mpi)
            {
                // Said before MPI_Init, which waits for every rank: a launcher that times out
                // can then tell a node that never started from one stuck joining.
                string? launcherRank = Environment.GetEnvironmentVariable("PMI_RANK") ?? Environment.GetEnvironmentVariable("PMIX_RANK")
                    ?? Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_RANK") ?? Environment.GetEnvironmentVariable("SLURM_PROCID");
                if (launcherRank != null)
                {
                    Console.Out.WriteLine($"copper-agent: node {launcherRank} starting on {Environment.MachineName} (pid {Environment.ProcessId})");
                }
                try
                {
                    mpi = MpiTransport.Start();
                }
                catch (InvalidOperationException ex)
                {
                    Console.Error.WriteLine($"copper-agent: {ex.Message}");
                    return 1;
                }
                if (o.NodeFromRank)
                {
                    o.Node = mpi.Rank;
                }
                Console.Out.WriteLine($"copper-agent: node {mpi.Rank} of {mpi.Size} started on {mpi.Host} (pid {Environment.ProcessId})");
            }
            int rank = mpi?.Rank ?? o.Node;
            string node = rank.ToString(CultureInfo.InvariantCulture);
            const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
            string pidFile = Path.Combine(o.NodeDir, "agent.pid");
            string readyFile = Path.Combine(o.NodeDir, "agent.ready");
            string cacheNote = Path.Combine(o.NodeDir, "cache-dir");
            string mirror = Path.Combine(o.EffectiveCacheDir, "mirror");
            // Nothing is read, written or deleted in a directory before it passed the check (a log
            // directory someone else owns could hold a symlink to one of the user's files).
            foreach (string dir in new[] { o.RuntimeDir, o.NodeDir, o.EffectiveCacheDir, mirror, o.LogDir })
            {
                if (DirectoryTrust.EnsurePrivate(dir) is { } why)
                {
                    Console.Error.WriteLine($"copper-agent: refusing to start for {o.Prefix}: {why}; remove it, or choose other directories (-c cache_dir, -d log_dir, COPPER_RUNTIME_DIR)");
                    return 1;
                }
            }
            using ILoggerFactory loggers = CreateLoggers(o, node);
            ILogger log = loggers.CreateLogger("copper-agent");
            try
            {
                File.SetUnixFileMode(o.NodeDir, Private);
                if (File.Exists(pidFile) && int.TryParse(File.ReadAllText(pidFile).Trim(), out int other) && other != Environment.ProcessId && Directory.Exists($"/proc/{other}"))
                {
                    Console.Error.WriteLine($"copper-agent: an agent (pid {other}) already serves {o.Prefix} at {o.SocketPath}");
                    return 1;
                }
                File.Delete(o.SocketPath);
                File.Delete(readyFile);
                File.WriteAllText(pidFile, Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
                File.WriteAllText(cacheNote, o.EffectiveCacheDir + "\n");
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"copper-agent: cannot set up {o.NodeDir}: {ex.Message}");
                return 1;
            }

            long budget;
            try
            {
                budget = o.CacheBudgetFor(mirror);
            }
            catch (IOException ex)
            {
                Console.Error.WriteLine($"copper-agent: {ex.Message}");
                return 1;
            }
            var counters = new Counters { MirrorBudget = budget };
            using PfsTrace? trace = o.PfsTraceDir == null ? null : OpenTrace(o.PfsTraceDir, node);
            // Every question this agent asks the file system is recorded: the job's manifest. No
            // more than a replay would use: the record is memory too.
            var recorder = new ManifestRecorder(o.ReplayMaxEntries);
            recorder.Full = () => LogRecordFull(log, o.ReplayMaxEntries);
            var local = new LocalFileSystemUpstream(counters, trace, o.Prefix, o.Mount) { Recorder = recorder };
            var progress = new ReplayProgress();
            using var replayStop = new CancellationTokenSource();
            Manifest? manifest = rank == 0 ? ManifestJob.Load(o, progress) : null;
            ReplayTree? replayTree = null;
            NodeCache cache;
            if (mpi != null)
            {
                // The tree's parts, now that MPI is up: the child side is the cache's upstream,
                // the parent side serves the children from that cache.
                var topo = new TreeTopology(mpi.Size, o.Trees, o.Fanout);
                LogTree(log, mpi.Rank, mpi.Size, topo.Describe(mpi.Rank));
                var peers = new TreePeers(mpi, topo, counters, log);
                var patience = TimeSpan.FromSeconds(o.ParentTimeoutSeconds);
                var child = new TreeChild(peers, local, patience);
                cache = new NodeCache(child, counters, log, mirror, o.MaxCacheableBytes) { Budget = budget, MaxMetaEntries = o.MaxMetaEntries, Pipelines = TreePeers.HasChildren(topo, mpi.Rank) };
                var stats = new TreeStats(peers, patience, child.ParentDown);
                tree = new TreeNode(peers, child, new TreeParent(peers, cache, patience) { ReplayLane = o.ReplayConcurrency }, new TreeMembership(peers), stats);
                counters.Describe = tree.DescribeTo;
                counters.Job = stats.DescribeTo;
                replayTree = new ReplayTree(peers, new Replayer(cache, progress, o.ReplayConcurrency), progress, replayStop.Token);
                tree.Replay = replayTree;
                tree.Manifests = new ManifestGather(peers, recorder, o.Prefix);
            }
            else
            {
                cache = new NodeCache(local, counters, log, mirror, o.MaxCacheableBytes) { Budget = budget, MaxMetaEntries = o.MaxMetaEntries };
            }
            counters.Describe += progress.DescribeTo;
            using var stop = tree == null ? new CancellationTokenSource() : CancellationTokenSource.CreateLinkedTokenSource(tree.Membership.ShutdownRequested);
            using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; LogSignal(log, "SIGTERM"); stop.Cancel(); });
            using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; LogSignal(log, "SIGINT"); stop.Cancel(); });

            // Local connections are served asynchronously; cache misses still make blocking
            // file-system calls on pool threads, so keep enough of them ready for a storm of
            // concurrent misses instead of letting the pool grow by one every half second.
            ThreadPool.GetMinThreads(out int workers, out int io);
            ThreadPool.SetMinThreads(Math.Max(workers, 32), io);
            LocalServer server;
            try
            {
                server = new LocalServer(o.SocketPath, cache, counters, log, rank, ConnectionBudget(), TimeSpan.FromSeconds(o.IdleTimeoutSeconds))
                {
                    // In a job, every tree's root holds a part of the record: the save gathers them.
                    SaveManifest = tree?.Manifests is { } gather ? gather.SaveAsync : file => Task.FromResult(ManifestJob.Save(o, recorder, file)),
                };
            }
            catch (System.Net.Sockets.SocketException ex)
            {
                Console.Error.WriteLine($"copper-agent: cannot listen on {o.SocketPath}: {ex.Message}");
                Cleanup(o, pidFile, readyFile, cacheNote);
                return 1;
            }
            FuseMount? fuse = null;
            // Programs that do not load the shim read whatever sits at the prefix: the mount point
            // must be the user's own place, or there is no mount.
            string? mountWhy = o.EffectiveMount is { } wanted ? DirectoryTrust.CheckMountPoint(wanted) : null;
            if (mountWhy != null)
            {
                Console.Error.WriteLine($"copper-agent: node {rank}: not mounting {o.EffectiveMount}: {mountWhy}");
                LogMountFailed(log, o.EffectiveMount!, mountWhy);
            }
            else if (o.EffectiveMount is { } mountPoint)
            {
                try
                {
                    fuse = FuseMount.Start(new NodeCacheBackend(cache), log, mountPoint, o.FuseTimeoutSeconds);
                    counters.Describe += fuse.DescribeTo;
                    Console.Out.WriteLine($"copper-agent: node {rank} mounted {mountPoint}");
                }
                catch (Exception ex) when (ex is InvalidOperationException or DllNotFoundException or EntryPointNotFoundException or IOException or UnauthorizedAccessException)
                {
                    // The shim still works; the mount is the fallback door, not a reason to fail.
                    Console.Error.WriteLine($"copper-agent: node {rank}: no FUSE mount at {mountPoint}: {ex.Message}");
                    LogMountFailed(log, mountPoint, ex.Message);
                }
            }
            using (server)
            {
                Task serving = server.RunAsync(stop.Token);
                if (tree != null)
                {
                    tree.Start();
                    ReplayTree rt = replayTree!;
                    _ = AnnounceAsync(tree.Membership, mpi!, readyFile, () =>
                    {
                        if (manifest != null)
                        {
                            _ = rt.RunAtRootAsync(manifest, o.ReplayMaxEntries);
                        }
                        else if (o.Manifest != null)
                        {
                            // Every node says "done" all the same, for --wait-replay.
                            rt.NothingToReplay();
                        }
                    }, stop.Token);
                }
                else
                {
                    File.WriteAllText(readyFile, "");
                    if (manifest != null)
                    {
                        _ = ManifestJob.ReplayAloneAsync(new Replayer(cache, progress, o.ReplayConcurrency), manifest, o.ReplayMaxEntries, progress, replayStop.Token);
                    }
                    else if (o.Manifest != null)
                    {
                        Console.Out.WriteLine("copper-agent: replay done on all 1 nodes (nothing to replay)");
                    }
                }
                LogStarted(log, o.Prefix, o.SocketPath, o.EffectiveCacheDir, o.MaxCacheableBytes);
                await serving;
            }
            LogStopping(log);
            replayStop.Cancel();
            fuse?.Dispose();
            if (o.Manifest != null && recorder.Count > 0)
            {
                (int status, string said) = ManifestJob.Save(o, recorder, o.Manifest);
                (status == 0 ? Console.Out : Console.Error).WriteLine($"copper-agent: node {rank}: {said}");
            }
            try
            {
                Directory.CreateDirectory(o.LogDir);
                File.WriteAllBytes(Path.Combine(o.LogDir, $"copper-stats.{node}.json"), counters.ToJson(rank, job: true));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                LogStatsNotWritten(log, ex.Message);
            }
            if (tree != null)
            {
                // Counters are on disk first, and the node's files are gone before MPI is
                // finalized: a dead child, or the launcher ending the job once the first rank
                // has left (Hydra does when a proxy's PMI connection closes in MPI_Finalize's
                // barrier), can kill this process while we say goodbye.
                await tree.StopAsync(TimeSpan.FromSeconds(1));
                Cleanup(o, pidFile, readyFile, cacheNote);
                if (!mpi!.Stop(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2)))
                {
                    // The last resort: a peer that died (or an MPI that does not finish) must not keep this node.
                    Console.Error.WriteLine($"copper-agent: node {rank}: MPI_Finalize did not finish within 2 s; exiting without it");
                }
                return 0;
            }
            Cleanup(o, pidFile, readyFile, cacheNote);
            return 0;
        }

        /// <summary>
        /// How many local connections to serve at once: LocalServer's default, within the
        /// descriptors this process may open (raised to the hard limit first), keeping 512
        /// for the cache, the mount and MPI.
        /// </summary>
        private static int ConnectionBudget()
        {
            if (Interop.Libc.GetRlimit(Interop.Libc.RLIMIT_NOFILE, out Interop.Libc.Rlimit rl) != 0)
            {
                return 512;
            }
            if (rl.Cur < rl.Max)
            {
                var raised = new Interop.Libc.Rlimit { Cur = rl.Max, Max = rl.Max };
                if (Interop.Libc.SetRlimit(Interop.Libc.RLIMIT_NOFILE, in raised) == 0)
                {
                    rl = raised;
                }
            }
            return (int)Math.Clamp((long)Math.Min(rl.Cur, int.MaxValue) - 512, 64, LocalServer.DefaultMaxConnections);
        }

        /// <summary>Marks this node ready once it joined its trees; the root of tree 0 says when all have, then starts the replay.</summary>
        private static async Task AnnounceAsync(TreeMembership tree, MpiTransport mpi, string readyFile, Action onTreeReady, CancellationToken ct)
        {
            try
            {
                await tree.Joined.WaitAsync(ct);
                File.WriteAllText(readyFile, "");
                Console.Out.WriteLine($"copper-agent: node {mpi.Rank} joined on {mpi.Host}");
                if (mpi.Rank == 0)
                {
                    int n = await tree.TreeReady.WaitAsync(ct);
                    Console.Out.WriteLine($"copper-agent: tree ready: {n} nodes");
                    Console.Out.Flush();
                    onTreeReady();
                }
                Console.Out.Flush();
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException)
            {
            }
        }

        private static PfsTrace? OpenTrace(string dir, string node)
        {
            try
            {
                Directory.CreateDirectory(dir);
                return new PfsTrace(Path.Combine(dir, $"pfs-trace.{node}.tsv"));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"copper-agent: cannot write a trace in {dir}: {ex.Message}");
                return null;
            }
        }

        private static void Cleanup(AgentOptions o, string pidFile, string readyFile, string cacheNote)
        {
            foreach (string f in new[] { readyFile, o.SocketPath, cacheNote, pidFile })
            {
                try
                {
                    File.Delete(f);
                }
                catch (IOException)
                {
                }
            }
            MirrorFiles.DeleteTree(o.EffectiveCacheDir);
            // Then the runtime directory if this was its last agent: stop_copper.sh does that on
            // the node it runs on, but on the other nodes of a job stopped by the tree's Shutdown
            // the agent is the only one left to do it. Not empty: another prefix's agent is there.
            foreach (string dir in new[] { o.NodeDir, o.RuntimeDir })
            {
                try
                {
                    Directory.Delete(dir);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    break;
                }
            }
        }

        private static ILoggerFactory CreateLoggers(AgentOptions o, string node)
        {
            // Upstream Copper's scale: 1 most ... 6 none.
            LogLevel level = o.LogLevel switch
            {
                1 => LogLevel.Trace,
                2 => LogLevel.Debug,
                3 => LogLevel.Information,
                4 => LogLevel.Warning,
                5 => LogLevel.Error,
                _ => LogLevel.None,
            };
            return LoggerFactory.Create(b =>
            {
                b.SetMinimumLevel(level);
                if (level == LogLevel.None)
                {
                    return;
                }
                b.AddProvider(new FileLoggerProvider(Path.Combine(o.LogDir, $"copper-agent.{node}.log")));
                if (o.LogToStdout)
                {
                    b.AddSimpleConsole(c => c.SingleLine = true);
                }
            });
        }

        [LoggerMessage(Level = LogLevel.Information, Message = "serving {Prefix} on {Socket}, cache {Cache}, max cacheable {Max} bytes")]
        private static partial void LogStarted(ILogger logger, string prefix, string socket, string cache, long max);

        [LoggerMessage(Level = LogLevel.Information, Message = "the manifest's record is full ({Max} paths, --replay-max-entries): further paths are counted, not recorded")]
        private static partial void LogRecordFull(ILogger logger, int max);

        [LoggerMessage(Level = LogLevel.Information, Message = "rank {Rank} of {Size}: {Shape}")]
        private static partial void LogTree(ILogger logger, int rank, int size, string shape);

        [LoggerMessage(Level = LogLevel.Warning, Message = "no FUSE mount at {MountPoint}: {Reason}")]
        private static partial void LogMountFailed(ILogger logger, string mountPoint, string reason);

        [LoggerMessage(Level = LogLevel.Information, Message = "{Signal}: stopping")]
        private static partial void LogSignal(ILogger logger, string signal);

        [LoggerMessage(Level = LogLevel.Information, Message = "stopping")]
        private static partial void LogStopping(ILogger logger);

        [LoggerMessage(Level = LogLevel.Warning, Message = "could not write counters: {Reason}")]
        private static partial void LogStatsNotWritten(ILogger logger, string reason);
    }
}
