// Joining the trees and leaving them: each agent sends Join to its parent in every tree and
// is joined once every parent acknowledged; the size of each subtree of tree 0 travels up
// (Subtree) until the root knows every node has joined ("tree ready"); Shutdown travels down
// (and straight to the nodes below that report, see TreeStats).
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

internal sealed partial class TreeMembership
{
    private readonly TreePeers peers;
    private readonly Lock _lock = new();
    private readonly TaskCompletionSource _joined = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<int> _treeReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopping = new();
    private int _acksMissing;      // protected by _lock
    private int _childrenMissing;  // protected by _lock
    private int _subtree = 1;      // protected by _lock
    private bool _reported;        // protected by _lock

    /// <summary>
    /// What is missing is counted here, from the shape alone, before any message can arrive: a
    /// child's Subtree may come before this agent sends its own Join.
    /// </summary>
    public TreeMembership(TreePeers peers)
    {
        this.peers = peers;
        TreeTopology topo = peers.Topo;
        _childrenMissing = topo.Children(0, peers.Rank).Count();
        for (int t = 0; t < topo.Trees; t++)
        {
            if (topo.Parent(t, peers.Rank) >= 0)
            {
                _acksMissing++;
            }
        }
    }

    /// <summary>Completes when this agent has joined every tree (its parents answered).</summary>
    public Task Joined => _joined.Task;

    /// <summary>On the root of tree 0: completes with the node count once every node has joined.</summary>
    public Task<int> TreeReady => _treeReady.Task;

    /// <summary>Cancelled when a parent asks the job to stop.</summary>
    public CancellationToken ShutdownRequested => _stopping.Token;

    /// <summary>Sends Join to this agent's parent in every tree.</summary>
    public void Join()
    {
        TreeTopology topo = peers.Topo;
        for (int t = 0; t < topo.Trees; t++)
        {
            int parent = topo.Parent(t, peers.Rank);
            if (parent >= 0)
            {
                _ = peers.Send(parent, TreeWire.Control(TreeKind.Join, t));
            }
        }
        Advance();
    }

    /// <summary>A membership message (Join, JoinAck, Subtree, Shutdown) from <paramref name="source"/>.</summary>
    public void OnMessage(int source, in TreeHead h)
    {
        switch (h.Kind)
        {
            case TreeKind.Join:
                _ = peers.Send(source, TreeWire.Control(TreeKind.JoinAck, h.Tree));
                break;
            case TreeKind.JoinAck:
                lock (_lock)
                {
                    _acksMissing--;
                }
                Advance();
                break;
            case TreeKind.Subtree:
                lock (_lock)
                {
                    _subtree += h.Aux;
                    _childrenMissing--;
                }
                Advance();
                break;
            case TreeKind.Shutdown:
                if (!_stopping.IsCancellationRequested)
                {
                    LogShutdown(peers.Log, source);
                }
                _ = Task.Run(_stopping.Cancel);
                break;
        }
    }

    /// <summary>
    /// Tells every child (in every tree) but the <paramref name="silent"/> ones, and every node
    /// in <paramref name="alsoTo"/>, that the job stops; waits a little for the sends.
    /// </summary>
    public async Task StopChildrenAsync(TimeSpan wait, Func<int, bool> silent, IEnumerable<int> alsoTo)
    {
        var sends = new List<Task>();
        var done = new HashSet<int> { peers.Rank };
        TreeTopology topo = peers.Topo;
        for (int t = 0; t < topo.Trees; t++)
        {
            foreach (int c in topo.Children(t, peers.Rank))
            {
                if (!silent(c) && done.Add(c))
                {
                    sends.Add(peers.Send(c, TreeWire.Control(TreeKind.Shutdown, t)));
                }
            }
        }
        foreach (int r in alsoTo)
        {
            if (done.Add(r))
            {
                sends.Add(peers.Send(r, TreeWire.Control(TreeKind.Shutdown, 0)));
            }
        }
        await Task.WhenAny(Task.WhenAll(sends), Task.Delay(wait));
    }

    /// <summary>This agent's place in the trees, for `copper status`.</summary>
    public void DescribeTo(Utf8JsonWriter w, Func<int, bool> parentDown)
    {
        TreeTopology topo = peers.Topo;
        w.WriteNumber("rank", peers.Rank);
        w.WriteString("host", peers.Mpi.Host);
        w.WriteNumber("nodes", topo.Size);
        w.WriteNumber("trees", topo.Trees);
        w.WriteNumber("fanout", topo.Fanout);
        w.WriteStartArray("root_of");
        for (int t = 0; t < topo.Trees; t++)
        {
            if (topo.Root(t) == peers.Rank)
            {
                w.WriteNumberValue(t);
            }
        }
        w.WriteEndArray();
        w.WriteStartArray("parents");
        for (int t = 0; t < topo.Trees; t++)
        {
            w.WriteNumberValue(topo.Parent(t, peers.Rank));
        }
        w.WriteEndArray();
        w.WriteStartArray("parent_down");
        for (int t = 0; t < topo.Trees; t++)
        {
            w.WriteBooleanValue(parentDown(t));
        }
        w.WriteEndArray();
    }

    private void Advance()
    {
        int report = 0;
        lock (_lock)
        {
            if (_acksMissing > 0)
            {
                return;
            }
            if (_childrenMissing == 0 && !_reported)
            {
                _reported = true;
                report = _subtree;
            }
        }
        _joined.TrySetResult();
        if (report > 0)
        {
            int parent = peers.Topo.Parent(0, peers.Rank);
            if (parent >= 0)
            {
                _ = peers.Send(parent, TreeWire.Control(TreeKind.Subtree, 0, report));
            }
            else
            {
                _treeReady.TrySetResult(report);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "rank {Source} says the job stops")]
    private static partial void LogShutdown(ILogger logger, int source);
}
