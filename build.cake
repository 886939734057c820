// Copper's build: CMake for native/, NativeAOT publish for managed/, the tools, tests, demo.
// Entry point: ./build.sh --target=<Build|Test|Demo|Bench|Clean>
var target = Argument("target", "Build");
var configuration = Argument("configuration", "Release");
var root = MakeAbsolute(Directory("."));
var outDir = root.Combine("out");
var buildDir = root.Combine("build");

void Run(string tool, string args, DirectoryPath workDir = null)
{
    var settings = new ProcessSettings { Arguments = args, WorkingDirectory = workDir ?? root };
    int code = StartProcess(tool, settings);
    if (code != 0)
    {
        throw new Exception($"{tool} {args} exited with {code}");
    }
}

Task("Clean").Does(() =>
{
    CleanDirectories(new[] { outDir.FullPath, buildDir.FullPath });
});

Task("Native").Does(() =>
{
    var native = buildDir.Combine("native");
    Run("cmake", $"-S native -B \"{native}\" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=\"{outDir}\"");
    Run("cmake", $"--build \"{native}\" -j 2");
    Run("cmake", $"--install \"{native}\"");
});

Task("Managed").Does(() =>
{
    Run("dotnet", $"publish managed/Copper.Agent -c {configuration} -o \"{outDir.Combine("bin")}\" -p:DebugType=none");
    Run("dotnet", $"publish managed/Copper.Cli -c {configuration} -o \"{outDir.Combine("bin")}\" -p:DebugType=none");
    // The benchmarks' PFS model (tools/bench/storm_bench.sh), not part of the product.
    Run("dotnet", $"publish managed/Copper.PfsModel -c {configuration} -o \"{outDir.Combine("bin")}\" -p:DebugType=none");
});

Task("Tools").Does(() =>
{
    var bin = outDir.Combine("bin");
    EnsureDirectoryExists(bin);
    foreach (var script in GetFiles("tools/*.sh"))
    {
        var dest = bin.CombineWithFilePath(script.GetFilename());
        CopyFile(script, dest);
        Run("chmod", $"0755 \"{dest}\"");
    }
    // The test bed: N nodes on this one machine (tools/cluster/cluster), installed as out/bin/cluster.
    var cluster = bin.CombineWithFilePath("cluster");
    CopyFile("tools/cluster/cluster", cluster);
    Run("chmod", $"0755 \"{cluster}\"");
    // The Slurm epilog snippet (tools/slurm/slurm-epilog.sh): a site points Epilog= at it.
    var share = outDir.Combine("share/copper");
    EnsureDirectoryExists(share);
    var epilog = share.CombineWithFilePath("slurm-epilog.sh");
    CopyFile("tools/slurm/slurm-epilog.sh", epilog);
    Run("chmod", $"0755 \"{epilog}\"");
    // Module files (`module load copper`): Lmod reads <version>.lua, environment-modules the
    // Tcl file <version>; both find the install tree from their own place. Their help points
    // to the guide, installed with them.
    var version = System.IO.File.ReadAllText(root.CombineWithFilePath("VERSION").FullPath).Trim();
    var modules = outDir.Combine("share/modulefiles/copper");
    EnsureDirectoryExists(modules);
    foreach (var (source, name) in new[] { ("tools/modulefiles/copper.lua", version + ".lua"), ("tools/modulefiles/copper.tcl", version) })
    {
        string text = System.IO.File.ReadAllText(root.CombineWithFilePath(source).FullPath).Replace("@VERSION@", version);
        System.IO.File.WriteAllText(modules.CombineWithFilePath(name).FullPath, text);
    }
    var doc = outDir.Combine("share/doc/copper");
    EnsureDirectoryExists(doc);
    CopyFile("README.md", doc.CombineWithFilePath("README.md"));
});

Task("Build").IsDependentOn("Native").IsDependentOn("Managed").IsDependentOn("Tools");

Task("Test").IsDependentOn("Build").Does(() =>
{
    Run("dotnet", $"test tests/Copper.Tests -c {configuration} --logger \"console;verbosity=normal\"");
});

Task("Demo").IsDependentOn("Build").Does(() =>
{
    Run("bash", "tools/demo/demo.sh");
});

Task("Bench").IsDependentOn("Build").Does(() =>
{
    Run("bash", "tools/bench/foundation_bench.sh");
    Run("bash", "tools/bench/tree_bench.sh");
    Run("bash", "tools/bench/fuse_bench.sh");
    Run("bash", "tools/bench/meta_bench.sh");
    // Before the storm bench: its report.py picks up the test bed's results too.
    Run("bash", "tools/bench/cluster_bench.sh");
    Run("bash", "tools/bench/replay_bench.sh"); // before the storm: its report reads the replay's results
    Run("bash", "tools/bench/stats_idle_bench.sh"); // likewise: the idle root's reporting cost
    Run("bash", "tools/bench/storm_bench.sh");
});

RunTarget(target);
