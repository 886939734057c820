// The metadata's bound (--max-meta-entries): every answer this node keeps counts as one entry
// (a stat, an lstat, a symlink target, an access check, an open) and a listing counts one more
// per name it holds, so the count follows the memory. When a new answer takes the count over
// the bound, a sweep evicts completed answers, least recently used first, until the count is
// 7/8 of the bound: use is recorded as the sweep's generation (one int written on a hit, only
// when it changes), and a sweep takes the oldest generations first. An answer still being
// fetched is never evicted: concurrent askers of one path keep sharing one fetch. An evicted
// answer is asked again of the parent (the PFS at the root) on its next use, which is correct
// because the cache is read-only. A listing goes with its names (the negative answers it gives
// for names not in it); without them a name is simply asked, never wrongly absent. An open of
// a materialized file goes with its mirror copy (copy first, as the byte budget does), unless
// a process has the copy open or mapped.
using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using Copper.Interop;

namespace Copper.Agent;

internal sealed partial class NodeCache
{
    private readonly MetaBound _meta;
    private readonly Lock _sweepLock = new();
    private IMetaMap[] _metaMaps = [];

    /// <summary>Most metadata entries kept (answers, plus one per name of a listing); long.MaxValue: no bound.</summary>
    public long MaxMetaEntries
    {
        get => _meta.Max;
        init => _meta.SetMax(value);
    }

    /// <summary>Metadata entries kept now.</summary>
    public long MetaEntries => _meta.Count;

    private MetaMap<TKey, T> NewMetaMap<TKey, T>(IEqualityComparer<TKey>? comparer = null, Func<T, int>? weigh = null)
        where TKey : notnull
    {
        var map = new MetaMap<TKey, T>(_meta, comparer, weigh);
        _metaMaps = [.. _metaMaps, map];
        return map;
    }

    private static int ListingWeight(DirAnswer a) => a.Status == 0 ? 1 + a.Entries.Count : 1;

    /// <summary>Wires the eviction rules of the maps that need one (called once, from the constructor).</summary>
    private void InitMetadata()
    {
        // A listing's names go with it. Removing names is always safe: a name without a listing
        // is asked of the parent, so a sweep racing a new listing of the same path loses only a shortcut.
        _dirs.Evicted = path => _dirNames.TryRemove(path, out _);
        _open.CanEvict = EvictMirrorCopy;
    }

    /// <summary>
    /// Evicts the answers used longest ago until the count is 7/8 of the bound. Runs on the
    /// thread whose answer crossed the bound; a sweep already under way is not waited for.
    /// </summary>
    private void SweepMetadata()
    {
        if (!_sweepLock.TryEnter())
        {
            return;
        }
        HashSet<string>? inUse = null;
        bool evictLockTaken = false;
        bool collect = false;
        try
        {
            long max = _meta.Max;
            long target = max - max / 8;
            long excess = _meta.Count - target;
            if (excess <= 0)
            {
                return;
            }
            // Answers used from now on carry a generation newer than every one counted here.
            int gen = _meta.NextGeneration();
            var byGen = new Dictionary<int, long>();
            foreach (IMetaMap m in _metaMaps)
            {
                m.Census(byGen);
            }
            // The oldest generations go whole; the one in which the excess is reached goes in part.
            int cutoff = gen + 1;
            long quota = 0, older = 0;
            foreach (int g in byGen.Keys.Order())
            {
                long w = byGen[g];
                if (older + w >= excess)
                {
                    cutoff = g;
                    quota = excess - older;
                    break;
                }
                older += w;
            }
            _sweepInUse = () =>
            {
                if (!evictLockTaken)
                {
                    // Held for the rest of the sweep: the byte budget's evictions wait, so a copy
                    // and its answer are never removed by both.
                    _evictLock.Enter();
                    evictLockTaken = true;
                }
                return inUse ??= MirrorFilesInUse();
            };
            long evicted = 0;
            foreach (IMetaMap m in _metaMaps)
            {
                evicted += m.Evict(cutoff, ref quota);
            }
            _counters.MetaEvicted(evicted);
            _meta.Swept();
            _evictedSinceCollect += evicted;
            if (_evictedSinceCollect >= CollectEvery)
            {
                _evictedSinceCollect = 0;
                collect = true;
            }
        }
        finally
        {
            _sweepInUse = null;
            if (evictLockTaken)
            {
                _evictLock.Exit();
            }
            _sweepLock.Exit();
        }
        if (collect)
        {
            // Evicted answers are old, so they die in the oldest generation, which the collector
            // sweeps rarely: left to it, their garbage would take as much memory as the bound
            // saves. A full collection every CollectEvery evicted entries (a few MB) keeps the
            // resident size near what is kept.
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: false);
        }
    }

    /// <summary>Evicted entries between two full collections (about 5 MB of garbage).</summary>
    private const long CollectEvery = 16_384;

    /// <summary>Entries evicted since the last full collection; under <see cref="_sweepLock"/>.</summary>
    private long _evictedSinceCollect;

    /// <summary>During a sweep: the mirror files in use (found once per sweep, with the byte budget's lock taken).</summary>
    private Func<HashSet<string>>? _sweepInUse;

    /// <summary>
    /// Before an open's answer is evicted: a materialized file's copy goes first (so a new
    /// materialization of the path cannot race the unlink), unless a process has it open or
    /// mapped; then the answer stays.
    /// </summary>
    private bool EvictMirrorCopy(string path, Task<OpenAnswer> answer)
    {
        if (answer.Result is not { Status: 0, Kind: OpenKind.File })
        {
            return true;
        }
        string local = LocalPathOf(path);
        if (_sweepInUse is not { } inUse || inUse().Contains(local))
        {
            return false;
        }
        long bytes = 0;
        lock (_mirrorLock)
        {
            if (_lruNodes.Remove(path, out var node))
            {
                _lru.Remove(node);
                bytes = node.Value.Bytes;
            }
        }
        Interop.Libc.Unlink(local);
        Release(bytes);
        _counters.Evicted(bytes);
        return true;
    }
}

/// <summary>The count of metadata entries against the bound, and the sweep's generation.</summary>
internal sealed class MetaBound(Counters counters)
{
    private long _count;
    private long _sweepAbove = long.MaxValue;
    private volatile int _generation;

    public long Max { get; private set; } = long.MaxValue;

    /// <summary>Called when an addition takes the count over the bound.</summary>
    public Action? Over { get; set; }

    public long Count => Interlocked.Read(ref _count);

    /// <summary>The generation an answer used now carries.</summary>
    public int Generation => _generation;

    public void SetMax(long max)
    {
        Max = max;
        _sweepAbove = max;
        counters.MetaBound = max == long.MaxValue ? 0 : max;
    }

    public int NextGeneration() => ++_generation;

    public void Add(long n)
    {
        if (n == 0)
        {
            return;
        }
        long c = Interlocked.Add(ref _count, n);
        counters.MetaSize(c);
        if (n > 0 && c > Interlocked.Read(ref _sweepAbove))
        {
            Over?.Invoke();
        }
    }

    /// <summary>
    /// After a sweep: the next one starts when the count is over the bound again, and has grown
    /// by a sixteenth of the bound since this one (what could not go, answers in flight and
    /// copies in use, is not swept again for every new answer).
    /// </summary>
    public void Swept() => Interlocked.Exchange(ref _sweepAbove, Math.Max(Max, Count + Max / 16));
}

/// <summary>What a sweep asks of each metadata map.</summary>
internal interface IMetaMap
{
    /// <summary>Adds the weight of each completed answer to its generation's total.</summary>
    void Census(Dictionary<int, long> byGen);

    /// <summary>
    /// Evicts completed answers of generations before <paramref name="cutoff"/>, and of
    /// <paramref name="cutoff"/> itself while <paramref name="quota"/> lasts; returns the weight evicted.
    /// </summary>
    long Evict(int cutoff, ref long quota);
}

/// <summary>
/// One kind of metadata answer by key, each a task (so concurrent askers share one fetch), with
/// the generation of its last use. The subset of ConcurrentDictionary's surface NodeCache uses.
/// </summary>
internal sealed class MetaMap<TKey, T>(MetaBound bound, IEqualityComparer<TKey>? comparer, Func<T, int>? weigh) : IMetaMap
    where TKey : notnull
{
    private sealed class Slot(Task<T> task, int gen)
    {
        public readonly Task<T> Task = task;

        /// <summary>Written on use without a lock: a lost write only makes an answer look older than it is.</summary>
        public int Gen = gen;
    }

    private readonly ConcurrentDictionary<TKey, Slot> _map = new(comparer);

    /// <summary>Before a completed answer is evicted: false keeps it.</summary>
    public Func<TKey, Task<T>, bool>? CanEvict { get; set; }

    /// <summary>After an answer was evicted.</summary>
    public Action<TKey>? Evicted { get; set; }

    /// <summary>Entries this answer counts for: one until it is complete, then its weight.</summary>
    private int Weight(Task<T> task) => weigh != null && task.IsCompletedSuccessfully ? weigh(task.Result) : 1;

    /// <summary>The answer for <paramref name="key"/>, if kept; a hit marks it used now.</summary>
    public bool TryGetValue(TKey key, [MaybeNullWhen(false)] out Task<T> task)
    {
        if (_map.TryGetValue(key, out Slot? s))
        {
            int g = bound.Generation;
            if (s.Gen != g)
            {
                s.Gen = g;
            }
            task = s.Task;
            return true;
        }
        task = null;
        return false;
    }

    /// <summary>The answer kept for <paramref name="key"/>, or <paramref name="task"/> added (counted) when there is none.</summary>
    public Task<T> GetOrAdd(TKey key, Task<T> task)
    {
        var mine = new Slot(task, bound.Generation);
        Slot s = _map.GetOrAdd(key, mine);
        if (s == mine)
        {
            bound.Add(Weight(task));
        }
        return s.Task;
    }

    /// <summary>
    /// The fetch of <paramref name="value"/> completes an answer that stays: its weight beyond
    /// the one counted when it was added. Called before the task completes (a sweep takes only
    /// completed answers, so it always releases what was counted).
    /// </summary>
    public void Settle(T value)
    {
        if (weigh != null)
        {
            bound.Add(weigh(value) - 1);
        }
    }

    /// <summary>Sets the answer for <paramref name="key"/> to the completed <paramref name="task"/>.</summary>
    public Task<T> this[TKey key]
    {
        set
        {
            var slot = new Slot(value, bound.Generation);
            while (true)
            {
                if (_map.TryGetValue(key, out Slot? old))
                {
                    if (_map.TryUpdate(key, slot, old))
                    {
                        bound.Add(Weight(value) - Weight(old.Task));
                        return;
                    }
                }
                else if (_map.TryAdd(key, slot))
                {
                    bound.Add(Weight(value));
                    return;
                }
            }
        }
    }

    /// <summary>Removes the answer for <paramref name="key"/> only if it is <paramref name="task"/>.</summary>
    public bool TryRemove(TKey key, Task<T> task)
    {
        if (_map.TryGetValue(key, out Slot? s) && s.Task == task && _map.TryRemove(new KeyValuePair<TKey, Slot>(key, s)))
        {
            bound.Add(-Weight(task));
            return true;
        }
        return false;
    }

    /// <summary>Removes whatever answer is kept for <paramref name="key"/>.</summary>
    public bool TryRemove(TKey key, [MaybeNullWhen(false)] out Task<T> task)
    {
        if (_map.TryRemove(key, out Slot? s))
        {
            bound.Add(-Weight(s.Task));
            task = s.Task;
            return true;
        }
        task = null;
        return false;
    }

    public void Census(Dictionary<int, long> byGen)
    {
        foreach (KeyValuePair<TKey, Slot> kv in _map)
        {
            if (kv.Value.Task.IsCompleted)
            {
                int g = kv.Value.Gen;
                byGen[g] = byGen.GetValueOrDefault(g) + Weight(kv.Value.Task);
            }
        }
    }

    public long Evict(int cutoff, ref long quota)
    {
        long evicted = 0;
        foreach (KeyValuePair<TKey, Slot> kv in _map)
        {
            Slot s = kv.Value;
            int g = s.Gen;
            if (!s.Task.IsCompleted || g > cutoff || (g == cutoff && quota <= 0))
            {
                continue;
            }
            if (CanEvict != null && !CanEvict(kv.Key, s.Task))
            {
                continue;
            }
            if (_map.TryRemove(kv))
            {
                int w = Weight(s.Task);
                bound.Add(-w);
                evicted += w;
                if (g == cutoff)
                {
                    quota -= w;
                }
                Evicted?.Invoke(kv.Key);
            }
        }
        return evicted;
    }
}
