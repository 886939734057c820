// `module load copper` with both module systems a site may run: Lmod (Debian's lmod, through
// its login-shell set-up) and environment-modules (its modulecmd.tcl, unpacked by build.sh
// into build/environment-modules because Debian's package conflicts with lmod). In a clean
// shell each test loads the module, runs the README's single-node example with the commands
// the module put on PATH, unloads, and compares the environment with what it was. Lmod is
// also run on the Tcl file alone (a site may install only that one).
using System.Text;
using System.Text.Json;
using Xunit;

namespace Copper.Tests;

public class ModuleTests
{
    private static readonly string ModulePath = Path.Combine(Harness.Out, "share", "modulefiles");

    // Variables a module system keeps for its own bookkeeping (what is loaded, reference counts
    // of path entries); they are not the module's doing and may survive an unload.
    private static bool IsBookkeeping(string name) =>
        name is "LOADEDMODULES" or "_LMFILES_" or "MODULEPATH_modshare" or "LOADEDMODULES_modshare" or "_LMFILES__modshare"
        || name.StartsWith("_ModuleTable", StringComparison.Ordinal)
        || name.StartsWith("__LMOD_REF_COUNT_", StringComparison.Ordinal)
        || name.StartsWith("__MODULES_", StringComparison.Ordinal);

    // `module` comes from /etc/profile.d/lmod.sh in a login shell. Lmod's first command tidies
    // MODULEPATH (drops a trailing slash of its own entry): settle that first.
    private const string LmodSetup = "type module >/dev/null\nmodule list >/dev/null 2>&1";
    private static readonly string[] LoginShell = { "/bin/bash", "-l", "-c" };

    [Fact]
    public void LmodLoadRunUnload() => LoadRunUnload(LoginShell, LmodSetup, Harness.Out);

    [Fact]
    public void LmodReadsTheTclModuleFileToo()
    {
        // A site that installs only the Tcl file: an install tree whose module directory holds
        // just <version> (bin, lib and the guide are the build's own, linked).
        string tree = Harness.TempDir("tclonly");
        try
        {
            string version = File.ReadAllText(Path.Combine(Harness.RepoRoot, "VERSION")).Trim();
            string modules = Path.Combine(tree, "share", "modulefiles", "copper");
            Directory.CreateDirectory(modules);
            File.Copy(Path.Combine(ModulePath, "copper", version), Path.Combine(modules, version));
            Directory.CreateSymbolicLink(Path.Combine(tree, "bin"), Harness.Bin);
            Directory.CreateSymbolicLink(Path.Combine(tree, "lib"), Harness.Lib);
            Directory.CreateSymbolicLink(Path.Combine(tree, "share", "doc"), Path.Combine(Harness.Out, "share", "doc"));
            LoadRunUnload(LoginShell, LmodSetup, tree);
        }
        finally
        {
            Directory.Delete(tree, recursive: true);
        }
    }

    [Fact]
    public void EnvironmentModulesLoadRunUnload()
    {
        string dir = Path.Combine(Harness.RepoRoot, "build", "environment-modules", "usr", "lib");
        string? modulecmd = Directory.Exists(dir)
            ? Directory.GetFiles(dir, "modulecmd.tcl", SearchOption.AllDirectories).FirstOrDefault()
            : null;
        Assert.True(modulecmd != null, $"no modulecmd.tcl under {dir}: run ./build.sh as root (it unpacks environment-modules there)");
        // What environment-modules' init/bash defines, without its installed paths.
        LoadRunUnload(
            shell: new[] { "/bin/bash", "--noprofile", "--norc", "-c" },
            setup: $"module() {{ eval \"$(/usr/bin/tclsh8.6 {modulecmd} bash \"$@\")\"; }}",
            installRoot: Harness.Out);
    }

    // installRoot: the tree whose share/modulefiles is on MODULEPATH (and whose bin the module puts on PATH).
    private static void LoadRunUnload(string[] shell, string setup, string installRoot)
    {
        string bin = Path.Combine(installRoot, "bin");
        string readme = Path.Combine(installRoot, "share", "doc", "copper", "README.md");
        string root = Harness.TempDir("module");
        string prefix = Path.Combine(root, "copper");
        string home = Path.Combine(root, "home");
        Directory.CreateDirectory(home);
        string script = $@"set -euo pipefail
{setup}
env -0 >{root}/env.before
module load copper
env -0 >{root}/env.loaded
for c in launch_copper.sh stop_copper.sh copper wrapper.sh; do echo ""which $c=$(command -v $c)""; done
module whatis copper >{root}/whatis 2>&1
module help copper >{root}/help 2>&1
(
  # The README's single-node example, in a subshell: its exports belong to the job, not to the module.
  eval ""$(launch_copper.sh -v {prefix} -d {root}/logs -c {root}/cache -b none --no-fuse)""
  mpiexec.mpich -n 1 --genv LD_PRELOAD=$COPPER_PRELOAD --genv LD_AUDIT=$COPPER_AUDIT \
      --genv PYTHONPATH=$COPPER_PREFIX/usr/lib/python3/dist-packages \
      /usr/bin/python3 -c 'import numpy; print(""numpy from"", numpy.__file__)'
  copper stats -v {prefix} --json >{root}/stats.json
  stop_copper.sh -v {prefix}
)
module unload copper
env -0 >{root}/env.after
";
        // A clean login-like environment: nothing of the test runner's own.
        var args = new List<string> { "-i", "HOME=" + home, "USER=" + Environment.UserName, "LOGNAME=" + Environment.UserName, "SHELL=/bin/bash",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
            "MODULEPATH=" + Path.Combine(installRoot, "share", "modulefiles"), "COPPER_RUNTIME_DIR=" + Path.Combine(root, "run") };
        args.AddRange(shell);
        args.Add(script);
        try
        {
            ProcResult r = Harness.Run("/usr/bin/env", args, timeoutMs: 180_000);
            Assert.True(r.ExitCode == 0, r.ToString());

            foreach (string c in new[] { "launch_copper.sh", "stop_copper.sh", "copper", "wrapper.sh" })
            {
                Assert.Contains($"which {c}={Path.Combine(bin, c)}\n", r.Stdout);
            }
            Assert.Contains($"numpy from {prefix}/usr/lib/python3/dist-packages/numpy/__init__.py", r.Stdout);
            using (JsonDocument stats = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "stats.json"))))
            {
                JsonElement total = stats.RootElement.GetProperty("total");
                Assert.True(total.GetProperty("requests").GetInt64() > 0, "the agent served no request: " + total);
                Assert.True(total.GetProperty("pfs_ops").GetInt64() > 0, "the agent read nothing: " + total);
            }

            string whatis = File.ReadAllText(Path.Combine(root, "whatis"));
            Assert.Contains("Copper", whatis);
            Assert.Contains("cooperative cache", whatis);
            string help = File.ReadAllText(Path.Combine(root, "help"));
            Assert.Contains("launch_copper.sh -v", help);
            Assert.Contains(readme + " (section \"Using Copper\")", help);
            Assert.True(File.Exists(readme), readme);

            Dictionary<string, string> before = ReadEnv(Path.Combine(root, "env.before"));
            Dictionary<string, string> loaded = ReadEnv(Path.Combine(root, "env.loaded"));
            Dictionary<string, string> after = ReadEnv(Path.Combine(root, "env.after"));

            // Loading sets PATH and COPPER_HOME, and nothing that changes a program by itself.
            Assert.Equal(installRoot, loaded["COPPER_HOME"]);
            Assert.Equal(bin + ":" + before["PATH"], loaded["PATH"]);
            Assert.Equal(new[] { "COPPER_HOME", "PATH" }, Changed(before, loaded));
            Assert.False(loaded.ContainsKey("LD_PRELOAD") || loaded.ContainsKey("LD_AUDIT"), "loading must not preload anything");

            // Unloading gives back exactly what was there.
            Assert.Empty(Changed(before, after));
        }
        finally
        {
            Harness.Run(Path.Combine(Harness.Bin, "stop_copper.sh"), new[] { "-v", prefix },
                new Dictionary<string, string?> { ["COPPER_RUNTIME_DIR"] = Path.Combine(root, "run") });
            Directory.Delete(root, recursive: true);
        }
    }

    // Names whose value differs (or that exist on one side only), module bookkeeping aside.
    private static string[] Changed(Dictionary<string, string> a, Dictionary<string, string> b) =>
        a.Keys.Union(b.Keys)
            .Where(k => !IsBookkeeping(k) && k is not ("_" or "SHLVL" or "OLDPWD"))
            .Where(k => !a.TryGetValue(k, out string? va) || !b.TryGetValue(k, out string? vb) || va != vb)
            .Order(StringComparer.Ordinal)
            .ToArray();

    private static Dictionary<string, string> ReadEnv(string file)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string entry in Encoding.UTF8.GetString(File.ReadAllBytes(file)).Split('\0', StringSplitOptions.RemoveEmptyEntries))
        {
            int eq = entry.IndexOf('=');
            if (eq > 0)
            {
                env[entry[..eq]] = entry[(eq + 1)..];
            }
        }
        return env;
    }
}
