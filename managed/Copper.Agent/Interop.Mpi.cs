// Imports of libcopper-mpi.so (native/mpi/copper_mpi.h), the agent's only door to MPI.
// The library is found at $COPPER_MPI_LIB, else at <agent dir>/../lib/libcopper-mpi.so,
// and is loaded only when the agent runs as part of an MPI job.
using System.Reflection;
using System.Runtime.InteropServices;

namespace Copper.Agent;

internal static partial class Interop
{
    internal static unsafe partial class Mpi
    {
        private const string Lib = "copper-mpi";
        public const int AbiVersion = 1;
        public const int ThreadFunneled = 1;

        public static void RegisterResolver() =>
            NativeLibrary.SetDllImportResolver(typeof(Mpi).Assembly, Resolve);

        public static string LibraryPath =>
            Environment.GetEnvironmentVariable("COPPER_MPI_LIB") is { Length: > 0 } p
                ? p
                : Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "lib", "libcopper-mpi.so"));

        private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path) =>
            name == Lib ? NativeLibrary.Load(LibraryPath) : 0;

        [LibraryImport(Lib, EntryPoint = "copper_mpi_abi_version")]
        public static partial int AbiVersionOf();

        [LibraryImport(Lib, EntryPoint = "copper_mpi_init")]
        public static partial int Init(int required, out int provided);

        [LibraryImport(Lib, EntryPoint = "copper_mpi_rank")]
        public static partial int Rank(out int rank);

        [LibraryImport(Lib, EntryPoint = "copper_mpi_size")]
        public static partial int Size(out int size);

        [LibraryImport(Lib, EntryPoint = "copper_mpi_processor_name")]
        public static partial int ProcessorName(byte* name, int capacity);

        [LibraryImport(Lib, EntryPoint = "copper_mpi_any_source")]
        public static partial int AnySource();

        [LibraryImport(Lib, EntryPoint = "copper_mpi_isend")]
        public static partial int Isend(byte* buf, int count, int dest, int tag, out nint request);

        [LibraryImport(Lib, EntryPoint = "copper_mpi_recv")]
        public static partial int Recv(byte* buf, int count, int source, int tag, out int received);

        [LibraryImport(Lib, EntryPoint = "copper_mpi_iprobe")]
        public static partial int Iprobe(int source, int tag, out int flag, out int msgSource, out int msgTag, out int count);

        [LibraryImport(Lib, EntryPoint = "copper_mpi_test")]
        public static partial int Test(ref nint request, out int flag, out int msgSource, out int msgTag, out int count);

        [LibraryImport(Lib, EntryPoint = "copper_mpi_finalize")]
        public static partial int Finalize();

        [LibraryImport(Lib, EntryPoint = "copper_mpi_error_string")]
        public static partial int ErrorString(int code, byte* text, int capacity);

        public static string Describe(int code)
        {
            byte* buf = stackalloc byte[512];
            ErrorString(code, buf, 512);
            return $"MPI error {code}: {Marshal.PtrToStringUTF8((nint)buf)}";
        }

        public static string HostName()
        {
            byte* buf = stackalloc byte[256];
            return ProcessorName(buf, 256) == 0 ? Marshal.PtrToStringUTF8((nint)buf) ?? "?" : "?";
        }
    }
}
