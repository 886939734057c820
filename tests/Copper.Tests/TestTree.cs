// A small real directory tree with every case the errno differential needs.
namespace Copper.Tests;

public sealed class TestTree : IDisposable
{
    public TestTree()
    {
        Dir = Harness.TempDir("tree");
        Harness.Run("chmod", new[] { "0755", Dir });
        Directory.CreateDirectory(Path.Combine(Dir, "sub"));
        File.WriteAllText(Path.Combine(Dir, "data.txt"), "hello from the parallel file system\n");
        File.WriteAllText(Path.Combine(Dir, "sub", "inner.txt"), "inner\n");
        File.WriteAllText(Path.Combine(Dir, "secret"), "not for you\n");
        File.SetUnixFileMode(Path.Combine(Dir, "secret"), 0);
        File.CreateSymbolicLink(Path.Combine(Dir, "link"), "data.txt");
        File.CreateSymbolicLink(Path.Combine(Dir, "abslink"), Path.Combine(Dir, "sub", "inner.txt"));
        File.CreateSymbolicLink(Path.Combine(Dir, "dirlink"), "sub");
        File.CreateSymbolicLink(Path.Combine(Dir, "dangling"), "no-such-target");
        File.CreateSymbolicLink(Path.Combine(Dir, "loop1"), "loop2");
        File.CreateSymbolicLink(Path.Combine(Dir, "loop2"), "loop1");
        Directory.CreateDirectory(Path.Combine(Dir, "locked"));
        File.WriteAllText(Path.Combine(Dir, "locked", "x"), "behind a directory nobody may search\n");
        Harness.Run("chmod", new[] { "-R", "go+rX", Path.Combine(Dir, "sub"), Path.Combine(Dir, "data.txt") });
        Harness.Run("chmod", new[] { "0", Path.Combine(Dir, "locked") });
    }

    public string Dir { get; }

    /// <summary>The cases of the errno differential, relative to <see cref="Dir"/>.</summary>
    public static readonly string[] Cases =
    {
        "data.txt", "missing", "missing-dir/x", "data.txt/x", "secret", "link", "abslink", "dirlink",
        "dirlink/inner.txt", "dangling", "loop1", "loop1/x", "sub", "sub/", "sub/inner.txt", new string('n', 256), "sub/../data.txt",
        // A trailing "/" or "/." makes the kernel resolve a directory (issue 9, item 6).
        "data.txt/", "data.txt/.", "link/", "dirlink/", "dirlink/.", "dangling/", "missing/", "sub/.", "secret/", "locked/x",
        // A name longer than NAME_MAX in a directory whose listing is cached (item 8).
        "sub/" + new string('n', 256), "sub/" + new string('n', 256) + "/x",
    };

    /// <summary>Targets of the mutation differential (item 7), relative to <see cref="Dir"/>.</summary>
    public static readonly string[] MutationCases =
    {
        "data.txt", "missing", "missing-dir/x", "data.txt/x", "loop1", "loop1/x", "link", "dirlink", "dangling",
        "sub", "sub/", "data.txt/", "sub/inner.txt", "locked/x", "secret",
    };

    public void Dispose()
    {
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
