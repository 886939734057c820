// The manifest (docs/manifest.md): what a job asked, path by path, in first-use order, in a
// compact versioned file that round-trips exactly (names that are not UTF-8 included), finds
// damage and truncation, names another prefix's manifest, and merges several runs.
using System.Buffers.Binary;
using Copper.Agent;
using Copper.Interop;
using Xunit;

namespace Copper.Tests.Unit;

public class ManifestTests
{
    private static CopperStat St(long size, ulong ino, uint mode = 0x81A4) => new()
    {
        Dev = 2049, Ino = ino, Mode = mode, Size = size,
        MtimeSec = 1_700_000_000, MtimeNsec = 123_456_789, CtimeSec = 1_700_000_100, CtimeNsec = 5,
    };

    private static Manifest Sample()
    {
        var r = new ManifestRecorder();
        r.Record("/lus/env/lib/python3/site-packages", Asked.List, 0);
        r.Record("/lus/env/lib/python3/site-packages/numpy/__init__.py", Asked.Stat, 0, St(4096, 77));
        r.Record("/lus/env/lib/python3/site-packages/numpy/__init__.py", Asked.Open, 0, St(4096, 77));
        r.Record("/lus/env/lib/python3/site-packages/numpy/missing.py", Asked.Stat, 2);
        r.Record("/lus/env/lib/libz.so", Asked.Lstat, 0, St(16, 9, 0xA1FF));
        r.Record("/lus/env/lib/libz.so", Asked.ReadLink, 0);
        r.Record("/lus/env/lib/libz.so", Asked.Stat, 0, St(90_000, 10));
        r.Record(PathBytes.Decode([.. "/lus/env/caf"u8, 0xE9, .. ".py"u8]), Asked.Lstat, 0, St(3, 11));
        r.Record("/lus/env/bin", Asked.Access, 0, accessMode: 1);
        r.Record("/lus/env/bin", Asked.Access, 0, accessMode: 4);
        return new Manifest("/tmp/u/copper", r.Snapshot());
    }

    [Fact]
    public void ARecordRoundTripsInFirstUseOrderWithWhatWasAskedAndTheIdentity()
    {
        Manifest m = Sample();
        byte[] bytes = m.Encode();
        Manifest? back = Manifest.TryDecode(bytes, out string error);
        Assert.True(back != null, error);
        Assert.Equal("/tmp/u/copper", back.Prefix);
        Assert.Equal(m.Entries, back.Entries);
        Assert.Equal("/lus/env/lib/python3/site-packages", back.Entries[0].Path);
        ManifestEntry init = back.Entries[1];
        Assert.Equal(Asked.Stat | Asked.Open, init.Asked);
        Assert.True(init.SameIdentity(St(4096, 77)));
        Assert.False(init.SameIdentity(St(4097, 77)));
        Assert.False(init.SameIdentity(St(4096, 78)));
        Assert.Equal(2, back.Entries[2].Error);
        // A symlink keeps its own identity (the lstat), whatever was asked first.
        ManifestEntry link = back.Entries[3];
        Assert.Equal(Asked.Lstat | Asked.ReadLink | Asked.Stat, link.Asked);
        Assert.Equal(16, link.Size);
        Assert.Equal(0xA1FFu, link.Mode);
        // A name that is not UTF-8 keeps its bytes.
        Assert.Equal([.. "/lus/env/caf"u8, 0xE9, .. ".py"u8], PathBytes.Encode(back.Entries[4].Path));
        Assert.Equal((byte)((1 << 1) | (1 << 4)), back.Entries[5].AccessModes);
    }

    [Fact]
    public void EntriesTakeAFewBytesBeyondThePath()
    {
        var r = new ManifestRecorder();
        long pathBytes = 0;
        for (int i = 0; i < 1000; i++)
        {
            string p = $"/lus/proj/env/lib/python3.11/site-packages/pkg{i / 50}/module_{i}.py";
            pathBytes += p.Length;
            r.Record(p, Asked.Stat, 0, St(1000 + i, (ulong)(5_000_000 + i)));
            r.Record(p, Asked.Open, 0, St(1000 + i, (ulong)(5_000_000 + i)));
        }
        byte[] bytes = new Manifest("/tmp/u/copper", r.Snapshot()).Encode();
        // Paths share their leading bytes with the previous one: the whole file is smaller
        // than the paths alone, and each entry's own fields take a few tens of bytes.
        Assert.True(bytes.Length < pathBytes, $"{bytes.Length} bytes for {pathBytes} bytes of paths");
        Assert.True((bytes.Length - Manifest.HeadSize) / 1000.0 < 40, $"{bytes.Length} bytes for 1000 entries");
    }

    [Fact]
    public void DamageTruncationAndOtherFilesAreNamed()
    {
        byte[] good = Sample().Encode();
        Assert.Contains("empty", Why([]));
        Assert.Contains("not a Copper manifest", Why("#!/bin/sh\necho hello, this is not a manifest at all\n"u8.ToArray()));
        Assert.Contains("truncated", Why(good[..^7]));
        Assert.Contains("truncated", Why(good[..(Manifest.HeadSize + 3)]));
        for (int at = Manifest.HeadSize; at < good.Length; at += 7)
        {
            byte[] bad = (byte[])good.Clone();
            bad[at] ^= 0x5A;
            Assert.Contains("corrupt", Why(bad));
        }
        byte[] future = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(future.AsSpan(4), 9);
        Assert.Contains("version 9", Why(future));
        Assert.Contains("after its end", Why([.. good, 0]));
        // A path that could lead a file out of the mirror is damage, whoever wrote the file.
        foreach (string bad in new[] { "/env/../../home/u/.bashrc", "/env/./x", "/env//x", "/env/x/" })
        {
            Assert.Contains("not a normalized absolute path", Why(new Manifest("/p", [ManifestEntry.Of(bad, Asked.Open, 0, default)]).Encode()));
        }

        static string Why(byte[] b)
        {
            Assert.Null(Manifest.TryDecode(b, out string error));
            return error;
        }
    }

    [Fact]
    public void ReadingNamesAMissingFileAndAnotherPrefix()
    {
        string dir = Harness.TempDir("manifest-unit");
        try
        {
            string f = Path.Combine(dir, "m.cpmf");
            Assert.Null(Manifest.TryRead(f, "/tmp/u/copper", out string missing));
            Assert.Equal("no such file", missing);
            File.WriteAllBytes(f, Sample().Encode());
            Assert.NotNull(Manifest.TryRead(f, "/tmp/u/copper", out _));
            Assert.Null(Manifest.TryRead(f, "/tmp/other/copper", out string other));
            Assert.Equal("recorded for prefix /tmp/u/copper, not /tmp/other/copper", other);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void RunsMergeIntoOneManifestKeepingFirstPlacesAndTheNewestIdentity()
    {
        string dir = Harness.TempDir("manifest-merge");
        try
        {
            string f = Path.Combine(dir, "m.cpmf");
            ManifestEntry a1 = ManifestEntry.Of("/e/a", Asked.Stat, 0, St(1, 1));
            ManifestEntry b1 = ManifestEntry.Of("/e/b", Asked.Lstat, 0, St(2, 2));
            Assert.Equal(2, Manifest.Save(f, "/p", [a1, b1], out string note));
            Assert.Equal("", note);
            ManifestEntry c2 = ManifestEntry.Of("/e/c", Asked.Open, 0, St(3, 3));
            ManifestEntry a2 = ManifestEntry.Of("/e/a", Asked.Open, 0, St(10, 1));
            Assert.Equal(3, Manifest.Save(f, "/p", [c2, a2], out note));
            Manifest m = Manifest.TryRead(f, "/p", out string error) ?? throw new InvalidOperationException(error);
            Assert.Equal(["/e/a", "/e/b", "/e/c"], m.Entries.Select(e => e.Path));
            Assert.Equal(Asked.Stat | Asked.Open, m.Entries[0].Asked);
            Assert.Equal(10, m.Entries[0].Size);

            // Another prefix's manifest, or a damaged one, is replaced by this record, and said so.
            Assert.Equal(1, Manifest.Save(f, "/q", [a1], out note));
            Assert.Contains("replaced", note);
            File.WriteAllBytes(f, [1, 2, 3]);
            Assert.Equal(1, Manifest.Save(f, "/q", [a1], out note));
            Assert.Contains("not a Copper manifest", note);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void TheRecordIsBoundedAndCountsWhatItDropped()
    {
        var r = new ManifestRecorder(maxPaths: 3);
        for (int i = 0; i < 5; i++)
        {
            r.Record($"/p/{i}", Asked.Lstat, 2);
        }
        r.Record("/p/0", Asked.Stat, 2);
        Assert.Equal(3, r.Count);
        Assert.Equal(2, r.Dropped);
        Assert.Equal(["/p/0", "/p/1", "/p/2"], r.Snapshot().Select(e => e.Path));
    }

    [Fact]
    public void TheReplayListTravelsInBatchesAndRefusesDamage()
    {
        var items = new List<ReplayItem>();
        for (int i = 0; i < 30_000; i++)
        {
            items.Add(new ReplayItem($"/lus/proj/env/lib/python3.11/site-packages/some_package/sub/module_{i}.py", Asked.Stat | Asked.Open, 0));
        }
        items.Add(new ReplayItem(PathBytes.Decode([.. "/caf"u8, 0xE9]), Asked.Access, 0x12));
        List<byte[]> batches = ReplayWire.Encode(items);
        Assert.True(batches.Count > 1);
        var back = new List<ReplayItem>();
        for (int i = 0; i < batches.Count; i++)
        {
            Assert.True(TreeWire.TryReadHead(batches[i], out TreeHead h));
            Assert.Equal(TreeKind.Replay, h.Kind);
            Assert.Equal(i, h.Aux);
            Assert.Equal(i == batches.Count - 1, (h.Flags & 1) != 0);
            Assert.True(ReplayWire.TryDecode(batches[i].AsSpan(TreeWire.HeadSize), back));
        }
        Assert.Equal(items, back);
        Assert.False(ReplayWire.TryDecode(batches[0].AsSpan(TreeWire.HeadSize, 30), []));
        Assert.False(ReplayWire.TryDecode(new byte[] { 1, 0, 3, 0, (byte)'r', (byte)'e', (byte)'l' }, []));
        Assert.False(ReplayWire.TryDecode(ReplayWire.Encode([new ReplayItem("/a/../../etc", Asked.Open, 0)])[0].AsSpan(TreeWire.HeadSize), []));
        Assert.Single(ReplayWire.Encode([]));
    }
}
