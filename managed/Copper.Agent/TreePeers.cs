// What every part of the agent's place in the MPI tree shares: the transport, the shape of
// the trees, this agent's rank, and when each rank was last heard from (a parent's silence is
// measured from the last message of any kind). Built once MPI is up; nothing in it changes
// after that.
using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

internal sealed class TreePeers(MpiTransport mpi, TreeTopology topo, Counters counters, ILogger log)
{
    private readonly long[] _lastHeard = new long[topo.Size]; // by rank: Stopwatch timestamp

    public MpiTransport Mpi => mpi;

    public TreeTopology Topo => topo;

    public int Rank => mpi.Rank;

    public Counters Counters => counters;

    public ILogger Log => log;

    /// <summary>Every child of this agent, in any tree.</summary>
    public int[] Children { get; } = Enumerable.Range(0, topo.Trees).SelectMany(t => topo.Children(t, mpi.Rank)).Distinct().ToArray();

    public Task Send(int dest, byte[] message) => mpi.SendAsync(dest, message);

    public void Heard(int rank)
    {
        if ((uint)rank < (uint)_lastHeard.Length)
        {
            Volatile.Write(ref _lastHeard[rank], Stopwatch.GetTimestamp());
        }
    }

    public long LastHeard(int rank) => Volatile.Read(ref _lastHeard[rank]);

    /// <summary>True when this agent is an interior node of some tree (it relays files).</summary>
    public static bool HasChildren(TreeTopology topo, int rank)
    {
        for (int t = 0; t < topo.Trees; t++)
        {
            if (topo.Children(t, rank).Any())
            {
                return true;
            }
        }
        return false;
    }
}
