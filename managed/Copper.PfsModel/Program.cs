// copper-pfs-model: the benchmarks' model of a parallel file system under load. SRC is served
// read-only at --mount through --metadata-servers metadata servers (default 1: one queue;
// --service-us per operation) and
// --bandwidth-mbps of data, with nothing cached by the client kernel, so every client
// operation reaches the model and is counted by kind. The counts go to --model-stats (JSON,
// rewritten every 200 ms and at exit), which tools/bench/storm_bench.sh reads:
//   {"ops_by_kind":{"stat":N,"readlink":N,"access":N,"open":N,"opendir":N,"read":N},
//    "metadata_ops":N,"bytes_read":N,"metadata_servers":N,"peak_in_service":N}
// With --per-path also "ops_by_path":{"/dir/file":{"stat":N,"open":N,...},...} (paths below
// the mount point; reads are not per path, opens are).
// Runs until SIGTERM or SIGINT, then unmounts.
using System.Runtime.InteropServices;
using Copper.Agent;
using Copper.PfsModel;
using Microsoft.Extensions.Logging.Abstractions;

const string Usage = "usage: copper-pfs-model SRC --mount DIR [--service-us MICROSECONDS] [--metadata-servers N] [--bandwidth-mbps MB_PER_SECOND] [--model-stats FILE] [--per-path]";
if (args is ["-h"] or ["--help"])
{
    Console.Out.WriteLine(Usage);
    return 0;
}
ModelOptions? o = ModelOptions.Parse(args, out string error);
if (o == null)
{
    Console.Error.WriteLine($"copper-pfs-model: {error}");
    Console.Error.WriteLine(Usage);
    return 2;
}
if (RuntimeInformation.ProcessArchitecture != Architecture.X64)
{
    Console.Error.WriteLine("copper-pfs-model: this build supports x86_64 Linux only");
    return 1;
}
var model = new PfsModelBackend(o.Source, o.ServiceMicros, o.BandwidthMBps * 1e6, o.MetadataServers, o.PerPath);
FuseMount mount;
try
{
    mount = FuseMount.Start(model, NullLogger.Instance, o.Mount, 0, kernelCaching: false, onRead: model.Read);
}
catch (Exception ex) when (ex is InvalidOperationException or DllNotFoundException or EntryPointNotFoundException or IOException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"copper-pfs-model: {ex.Message}");
    return 1;
}
using var stop = new ManualResetEventSlim();
using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Set(); });
using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Set(); });
Console.Out.WriteLine($"copper-pfs-model: {o.Source} mounted at {o.Mount} ({o.ServiceMicros} us per metadata operation, {o.MetadataServers} metadata server(s), {(o.BandwidthMBps > 0 ? o.BandwidthMBps + " MB/s" : "unlimited bandwidth")})");
do
{
    WriteStats(o, model);
}
while (!stop.Wait(200));
mount.Dispose();
WriteStats(o, model);
return 0;

static void WriteStats(ModelOptions o, PfsModelBackend model)
{
    if (o.Stats == null)
    {
        return;
    }
    try
    {
        // Readers poll the file while the model runs: they see the old counts or the new, whole.
        string tmp = o.Stats + ".tmp";
        File.WriteAllBytes(tmp, model.ToJson());
        File.Move(tmp, o.Stats, overwrite: true);
    }
    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
    {
    }
}
