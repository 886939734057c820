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
        Harness.Run("chmod", new[] { "-R", "go+rX", Path.Combine(Dir, "sub"), Path.Combine(Dir, "data.txt") });
    }

    public string Dir { get; }

    /// <summary>The cases of the errno differential, relative to <see cref="Dir"/>.</summary>
    public static readonly string[] Cases =
    {
        "data.txt", "missing", "missing-dir/x", "data.txt/x", "secret", "link", "abslink", "dirlink",
        "dirlink/inner.txt", "dangling", "loop1", "loop1/x", "sub", "sub/", "sub/inner.txt", new string('n', 256), "sub/../data.txt",
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
