// The answer to an open, as FuseMount.cs expects it. The agent declares this record next to
// its cache (NodeCache.cs), which this program does not build; a change there that the
// linked FuseMount depends on fails this build, so the two cannot drift apart unnoticed.
using Copper.Interop;

namespace Copper.Agent;

internal sealed record OpenAnswer(int Status, OpenKind Kind, CopperStat St, byte[] LocalPath, bool Changed = false);
