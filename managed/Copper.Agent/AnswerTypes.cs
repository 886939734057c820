// The answers to the file-system questions every door asks (the shim's server, the tree,
// the FUSE mount), each a status (0, an errno, or one of Protocol's negative statuses) and
// what was found. Kept apart from the cache and the upstreams so the FUSE binding can be
// built without them (copper-pfs-model links it). The answer function itself is Answers, in Requests.cs.
using Copper.Interop;

namespace Copper.Agent;

internal readonly record struct StatAnswer(int Status, CopperStat St);

internal sealed record LinkAnswer(int Status, byte[] Target);

internal readonly record struct DirEntry(byte[] Name, ulong Ino, byte Type);

internal sealed record DirAnswer(int Status, IReadOnlyList<DirEntry> Entries);

/// <summary>
/// An open's outcome. <paramref name="Changed"/>: the file changed after this node answered
/// its stat, and the metadata now describes the bytes materialized (a kernel that cached the
/// old attributes must be told).
/// </summary>
/// <see cref="NoRoomNow"/>: "too big" only because the mirror's budget is taken by files in use
/// now; a later open may find room.
internal sealed record OpenAnswer(int Status, OpenKind Kind, CopperStat St, byte[] LocalPath, bool Changed = false)
{
    public bool NoRoomNow { get; init; }
}
