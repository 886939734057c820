// The agent's place in the MPI tree, put together once MPI is up and the node's cache exists:
// the child side (TreeChild, the cache's upstream), the parent side (TreeParent, serving the
// children from the cache), membership (TreeMembership: joining, readiness, shutdown), and
// what they share (TreePeers). This class only routes each message from the MPI progress
// thread to its part; nothing here blocks.
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

internal sealed partial class TreeNode(TreePeers peers, TreeChild child, TreeParent parent, TreeMembership membership, TreeStats stats) : IDisposable
{
    public TreeMembership Membership => membership;

    public TreeStats Stats => stats;

    /// <summary>The replay's messages go here (set before <see cref="Start"/>); without it they are dropped.</summary>
    public ReplayTree? Replay { get; set; }

    /// <summary>The manifest records asked and sent between tree roots (set before <see cref="Start"/>).</summary>
    public ManifestGather? Manifests { get; set; }

    /// <summary>Starts receiving (messages that came meanwhile waited in MPI) and joins the trees.</summary>
    public void Start()
    {
        peers.Mpi.Attach(OnMessage);
        membership.Join();
        stats.Start();
    }

    /// <summary>
    /// The stop, once this agent stopped serving: its last counters go up (unless the stop came
    /// down the tree: those above are stopping too), then Shutdown to every child and every
    /// node below heard from lately, none to a node that fell silent.
    /// </summary>
    public async Task StopAsync(TimeSpan wait)
    {
        Dispose();
        if (!membership.ShutdownRequested.IsCancellationRequested)
        {
            await stats.FinalReportAsync(wait);
        }
        await membership.StopChildrenAsync(wait, stats.Silent, stats.Heard());
    }

    public void DescribeTo(Utf8JsonWriter w) => membership.DescribeTo(w, child.ParentDown);

    /// <summary>Stops serving children (keep-alives included) and reporting.</summary>
    public void Dispose()
    {
        parent.Dispose();
        stats.Dispose();
    }

    /// <summary>
    /// The progress thread's callback: replies go straight to their waiting request, requests
    /// are served on the thread pool, membership messages are counted in.
    /// </summary>
    private void OnMessage(int source, byte[] m)
    {
        peers.Heard(source);
        child.Heard(source);
        if (!TreeWire.TryReadHead(m, out TreeHead h))
        {
            LogMalformed(peers.Log, source, m.Length);
            return;
        }
        switch (h.Kind)
        {
            case TreeKind.Request:
                parent.OnRequest(source, h, m);
                break;
            case TreeKind.Reply or TreeKind.Chunk:
                child.OnReply(h, m);
                break;
            case TreeKind.Alive:
                break; // heard (above): that is all it says
            case TreeKind.Report:
                stats.OnReport(source, m);
                break;
            case TreeKind.Live:
                stats.OnLive(source, h, m);
                break;
            case TreeKind.ReportAck:
                stats.OnAck(source);
                break;
            case TreeKind.Replay or TreeKind.ReplayDone:
                Replay?.OnMessage(source, h, m);
                break;
            case TreeKind.ManifestAsk or TreeKind.ManifestRecord:
                Manifests?.OnMessage(source, h, m);
                break;
            default:
                membership.OnMessage(source, h);
                break;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "malformed message from rank {Source} ({Length} bytes) dropped")]
    private static partial void LogMalformed(ILogger logger, int source, int length);
}
