// Issue 10, item 4: every name derived from a prefix has one source per language (C:
// native/common/path.c and config.c; C#: Copper.Interop.Places; bash: tools/copper-paths.sh),
// and the three agree on the inputs that break naive code: `..`, `//`, trailing slashes,
// names that are not UTF-8, paths at and past 4,096 bytes.
using System.Text;
using Copper.Agent;
using Copper.Interop;
using Xunit;

namespace Copper.Tests;

public class NamesParityTests
{
    private static readonly byte[][] Inputs = new[]
    {
        "/", "//", "/.", "/..", "/a/b/", "/a//b", "/a/./b", "/a/b/..", "/a/../../b", "/a/b/../../..", "/tmp/x/.",
        "/a/.../b", "/a/..b/.c", "/x/" + string.Concat(Enumerable.Repeat("../", 1000)) + "y", "/" + string.Concat(Enumerable.Repeat("a/", 2000)),
        "/tmp/user/copper", "/tmp/user/copper/", "/tmp//user/./copper", "/tmp/user/x/../copper", "/é/ü", "/a b/*/c",
        "/" + new string('x', 4094), "/" + new string('x', 4095), "/" + new string('x', 5000),
    }.Select(Encoding.UTF8.GetBytes)
     .Concat(new[]
     {
         // "/caf<E9>/<FF><FE>/..": Latin-1 bytes; "/<ED B2 80>/<F0 90 82 80>": an encoded surrogate
         // (not UTF-8) and U+10080, whose UTF-16 low half lies where escaped bytes go.
         new byte[] { 0x2f, 0x63, 0x61, 0x66, 0xe9, 0x2f, 0xff, 0xfe, 0x2f, 0x2e, 0x2e },
         new byte[] { 0x2f, 0xed, 0xb2, 0x80, 0x2f, 0xf0, 0x90, 0x82, 0x80 },
         new byte[] { 0x2f, 0x78, 0xff, 0x2f, 0x2e, 0x2f, 0x2f, 0x79, 0x2f },
     })
     .ToArray();

    private static string Hex(byte[] b) => Convert.ToHexString(b).ToLowerInvariant();

    /// <summary>C#'s answer: what the agent does with a path a client sent (PathPolicy.TryDecode's rule, bytes kept).</summary>
    private static string Normalized(byte[] path) =>
        path.Length >= Protocol.MaxPath ? "E36" : Hex(PathBytes.Encode(Places.Normalize(PathBytes.Decode(path))));

    [Fact]
    public void CAndCSharpNormalizeAndPlaceSocketsTheSame()
    {
        string dir = Harness.TempDir("names");
        try
        {
            string src = Path.Combine(Harness.RepoRoot, "native", "common");
            string prog = Harness.CompileC(Harness.Program("names.c"), Path.Combine(dir, "names"),
                "-I" + src, "-I" + Path.Combine(Harness.RepoRoot, "interop"), Path.Combine(src, "path.c"), Path.Combine(src, "config.c"));
            const string Runtime = "/run/copper-parity";
            ProcResult r = Harness.Run(prog, Array.Empty<string>(), new Dictionary<string, string?> { ["COPPER_RUNTIME_DIR"] = Runtime, ["COPPER_NODE"] = null },
                stdin: string.Join('\n', Inputs.Select(Hex)) + "\n");
            Assert.True(r.ExitCode == 0, r.ToString());
            string[] lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(Inputs.Length, lines.Length);
            for (int i = 0; i < Inputs.Length; i++)
            {
                string[] c = lines[i].Split(' ', 2);
                Assert.True(Normalized(Inputs[i]) == c[0], $"normalization of {Hex(Inputs[i])}: C# {Normalized(Inputs[i])}, C {c[0]}");
                // The socket of a prefix: only for prefixes C accepts (valid UTF-8: .NET sees
                // command lines as text) and C# can name.
                if (c[1] != "-" && Encoding.UTF8.GetString(Inputs[i]) is string text && Encoding.UTF8.GetByteCount(text) == Inputs[i].Length)
                {
                    Assert.Equal(c[1], Places.SocketPath(Runtime, text, 0));
                }
            }
            Assert.Contains(lines, l => l.StartsWith("E36 ", StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void BashNormalizesLikeCSharp()
    {
        string lib = Path.Combine(Harness.RepoRoot, "tools", "copper-paths.sh");
        // Bytes in and out as hex, so names that are not UTF-8 survive the trip.
        string script = $@"source {lib}
while read -r hex; do
    p=$(printf ""$(sed 's/../\\x&/g' <<< ""$hex"")"")
    printf '%s' ""$(abs_path ""$p"")"" | od -An -v -tx1 | tr -d ' \n'
    echo
done";
        byte[][] inputs = Inputs.Where(b => b.Length < Protocol.MaxPath).ToArray();
        ProcResult r = Harness.Run("/bin/bash", new[] { "-c", script }, null, stdin: string.Join('\n', inputs.Select(Hex)) + "\n");
        Assert.True(r.ExitCode == 0, r.ToString());
        string[] lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(inputs.Length, lines.Length);
        for (int i = 0; i < inputs.Length; i++)
        {
            Assert.True(Normalized(inputs[i]) == lines[i], $"normalization of {Hex(inputs[i])}: C# {Normalized(inputs[i])}, bash {lines[i]}");
        }
    }
}
