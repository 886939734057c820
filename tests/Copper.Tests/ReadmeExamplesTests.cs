// The README's examples ("Using Copper" / "Examples"), run as written: each test reads the
// `sh` block after its `<!-- example: NAME -->` marker from README.md at test time and runs it
// with `bash -euo pipefail` in a scratch directory, so a changed block changes what runs. The
// test sets only what the block's setup line reads (COPPER_HOME, COPPER_EXAMPLE_PREFIX) and
// compares what the block printed directly with what it printed through Copper.
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Xunit;

namespace Copper.Tests;

public class ReadmeExamplesTests
{
    private static readonly string[] Names = { "pip-target", "venv", "conda-prefix", "wrapper", "dataset" };

    [Fact]
    public void EveryExampleInTheReadmeHasATest()
    {
        string[] inReadme = Regex.Matches(ReadReadme(), @"^<!-- example: ([a-z0-9-]+) -->$", RegexOptions.Multiline)
            .Select(m => m.Groups[1].Value).ToArray();
        Assert.Equal(Names.Order(StringComparer.Ordinal), inReadme.Order(StringComparer.Ordinal));
        foreach (string name in Names)
        {
            string block = Block(name);
            // One adaptable line, then the commands as a user runs them: launch, run, stop.
            Assert.EndsWith("# setup", block.Split('\n')[0]);
            Assert.Contains("${COPPER_EXAMPLE_PREFIX:-/tmp/$USER/copper}", block.Split('\n')[0]);
            Assert.Contains("launch_copper.sh -v \"$P\"", block);
            Assert.EndsWith("stop_copper.sh -v \"$P\"\n", block);
        }
    }

    [Fact]
    public void PipTarget()
    {
        RunExample("pip-target", (dir, prefix, r) =>
        {
            Assert.Equal(1, Count(r.Stdout, $"direct: hello from {dir}/pkgs/hello/__init__.py"));
            Assert.Equal(2, Count(r.Stdout, $"copper: hello from {prefix}{dir}/pkgs/hello/__init__.py"));
        });
    }

    [Fact]
    public void VirtualEnvironment()
    {
        RunExample("venv", (dir, prefix, r) =>
        {
            string direct = Assert.Single(Lines(r.Stdout, "direct: "));
            Assert.Contains($"venv {dir}/venv hello from {dir}/venv/lib/", direct);
            Assert.Contains(" numpy ", direct);
            // The same environment, seen through the prefix: sys.prefix and the package's file.
            string expected = "copper: " + direct["direct: ".Length..].Replace(dir + "/venv", prefix + dir + "/venv");
            Assert.Equal(new[] { expected, expected }, Lines(r.Stdout, "copper: "));
        });
    }

    [Fact]
    public void CondaStylePrefix()
    {
        RunExample("conda-prefix", (dir, prefix, r) =>
        {
            // The library loaded by its Copper path (there is nothing on disk there without the mount).
            Assert.Equal(1, Count(r.Stdout, $"libgreet from {dir}/conda/lib/libgreet.so"));
            Assert.Equal(2, Count(r.Stdout, $"libgreet from {prefix}{dir}/conda/lib/libgreet.so"));
        });
    }

    [Fact]
    public void NonPythonApplicationThroughWrapper()
    {
        RunExample("wrapper", (dir, prefix, r) =>
        {
            string input = Path.Combine(dir, "input.dat");
            string sha = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(input)));
            Assert.True(new FileInfo(input).Length > 1_000_000, "the input should be more than a page or two");
            Assert.Equal(1, Count(r.Stdout, $"{sha}  {input}"));
            Assert.Equal(2, Count(r.Stdout, $"{sha}  {prefix}{input}"));
        });
    }

    [Fact]
    public void DatasetFolderReadByEveryRank()
    {
        RunExample("dataset", (dir, prefix, r) =>
        {
            string direct = Assert.Single(Lines(r.Stdout, "direct: "));
            Assert.StartsWith("direct: 6 files, sha256 ", direct);
            string digest = direct["direct: ".Length..];
            string[] ranks = Lines(r.Stdout, "rank ").Order(StringComparer.Ordinal).ToArray();
            Assert.True(ranks.SequenceEqual(new[] { $"rank 0: {digest}", $"rank 1: {digest}" }), "each rank's line, with the direct digest:\n" + r);
            Assert.Equal(1, Count(r.Stdout, "find through the mount: 6 files"));
        });
    }

    private static string ReadReadme() => File.ReadAllText(Path.Combine(Harness.RepoRoot, "README.md"));

    // The body of the first ```sh block after the example's marker (the marker's own line is
    // followed by the block, nothing else).
    private static string Block(string name)
    {
        Match m = Regex.Match(ReadReadme(), $@"^<!-- example: {Regex.Escape(name)} -->\n```sh\n(.*?)^```$",
            RegexOptions.Multiline | RegexOptions.Singleline);
        Assert.True(m.Success, $"README.md has no ```sh block right after <!-- example: {name} -->");
        return m.Groups[1].Value;
    }

    private static void RunExample(string name, Action<string, string, ProcResult> check)
    {
        string block = Block(name);
        string dir = Harness.TempDir("readme-" + name);
        // New and unique: the launch mounts it in the examples that use the mount.
        string prefix = Path.Combine("/tmp", $"copper-readme-{name}-{Guid.NewGuid():N}"[..36]);
        var env = new Dictionary<string, string?>
        {
            ["COPPER_HOME"] = Harness.Out,
            ["COPPER_EXAMPLE_PREFIX"] = prefix,
            ["COPPER_PREFIX"] = null, ["LD_PRELOAD"] = null, ["LD_AUDIT"] = null, ["PYTHONPATH"] = null,
        };
        try
        {
            ProcResult r = Harness.Run("/usr/bin/env", new[] { "-C", dir, "/bin/bash", "-euo", "pipefail", "-c", block }, env, timeoutMs: 90_000);
            Assert.True(r.ExitCode == 0, $"example {name}:\n{block}\n{r}");
            Assert.Contains("stop_copper.sh: stopping agent pid", r.Stderr);
            try
            {
                check(dir, prefix, r);
            }
            catch (Exception ex) when (ex is Xunit.Sdk.XunitException)
            {
                // What the example printed, to tell a missing rank's line from a wrong one.
                throw new Xunit.Sdk.XunitException($"example {name}: {ex.Message}\n{r}");
            }
        }
        finally
        {
            Harness.Run(Path.Combine(Harness.Bin, "stop_copper.sh"), new[] { "-v", prefix });
            // Only the empty mount point is left after the stop; never recurse into a prefix.
            if (Directory.Exists(prefix))
            {
                Directory.Delete(prefix);
            }
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string[] Lines(string text, string start) =>
        text.Split('\n').Where(l => l.StartsWith(start, StringComparison.Ordinal)).ToArray();

    private static int Count(string text, string line) => text.Split('\n').Count(l => l == line);
}
