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
    Console.Error.WriteLine("usage: copper-agent --prefix P [--runtime-dir R] [--cache-dir D] [--log-level 1-6] [--log-type file|file_and_stdout] [--log-dir D] [--max-cacheable-bytes N] [--trees T] [--node K] [--print-socket]");
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
            string node = o.Node.ToString(CultureInfo.InvariantCulture);
            using ILoggerFactory loggers = CreateLoggers(o, node);
            ILogger log = loggers.CreateLogger("copper-agent");
            const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
            string pidFile = Path.Combine(o.NodeDir, "agent.pid");
            string readyFile = Path.Combine(o.NodeDir, "agent.ready");
            string cacheNote = Path.Combine(o.NodeDir, "cache-dir");
            try
            {
                Directory.CreateDirectory(o.RuntimeDir, Private);
                Directory.CreateDirectory(o.NodeDir, Private);
                File.SetUnixFileMode(o.NodeDir, Private);
                if (File.Exists(pidFile) && int.TryParse(File.ReadAllText(pidFile).Trim(), out int other) && other != Environment.ProcessId && Directory.Exists($"/proc/{other}"))
                {
                    Console.Error.WriteLine($"copper-agent: an agent (pid {other}) already serves {o.Prefix} at {o.SocketPath}");
                    return 1;
                }
                File.Delete(o.SocketPath);
                File.Delete(readyFile);
                File.WriteAllText(pidFile, Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
                Directory.CreateDirectory(o.EffectiveCacheDir, Private);
                File.WriteAllText(cacheNote, o.EffectiveCacheDir + "\n");
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"copper-agent: cannot set up {o.NodeDir}: {ex.Message}");
                return 1;
            }

            string mirror = Path.Combine(o.EffectiveCacheDir, "mirror");
            Directory.CreateDirectory(mirror, Private);
            var counters = new Counters();
            var upstream = new LocalFileSystemUpstream(counters);
            var cache = new NodeCache(upstream, counters, log, mirror, o.MaxCacheableBytes);
            using var stop = new CancellationTokenSource();
            using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
            using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });

            LocalServer server;
            try
            {
                server = new LocalServer(o.SocketPath, cache, counters, log, o.Node);
            }
            catch (System.Net.Sockets.SocketException ex)
            {
                Console.Error.WriteLine($"copper-agent: cannot listen on {o.SocketPath}: {ex.Message}");
                Cleanup(o, pidFile, readyFile, cacheNote);
                return 1;
            }
            using (server)
            {
                File.WriteAllText(readyFile, "");
                LogStarted(log, o.Prefix, o.SocketPath, o.EffectiveCacheDir, o.MaxCacheableBytes);
                await server.RunAsync(stop.Token);
            }
            LogStopping(log);
            try
            {
                Directory.CreateDirectory(o.LogDir);
                File.WriteAllBytes(Path.Combine(o.LogDir, $"copper-stats.{node}.json"), counters.ToJson(o.Node));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                LogStatsNotWritten(log, ex.Message);
            }
            Cleanup(o, pidFile, readyFile, cacheNote);
            return 0;
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
            try
            {
                Directory.Delete(o.EffectiveCacheDir, recursive: true);
                Directory.Delete(o.NodeDir);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
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

        [LoggerMessage(Level = LogLevel.Information, Message = "stopping")]
        private static partial void LogStopping(ILogger logger);

        [LoggerMessage(Level = LogLevel.Warning, Message = "could not write counters: {Reason}")]
        private static partial void LogStatsNotWritten(ILogger logger, string reason);
    }
}
