/* The yardstick for Copper's tree: rank 0 reads a file and MPI_Bcast's it to every rank
 * in chunks; every rank writes it to its own local file (as an agent materializes it).
 * Prints the time from the first barrier until the last rank has written everything. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 3) {
        if (rank == 0)
            fprintf(stderr, "usage: bcast FILE OUTDIR\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    long long total = 0;
    int in = -1;
    if (rank == 0) {
        struct stat st;
        in = open(argv[1], O_RDONLY);
        if (in < 0 || fstat(in, &st) != 0) {
            perror(argv[1]);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        total = st.st_size;
    }
    MPI_Bcast(&total, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    char path[4096];
    snprintf(path, sizeof path, "%s/bcast.%d", argv[2], rank);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int chunk = 1 << 20;
    char *buf = malloc(chunk);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (long long off = 0; off < total; off += chunk) {
        int n = (int)(total - off < chunk ? total - off : chunk);
        if (rank == 0 && read(in, buf, (size_t)n) != n) {
            perror("read");
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        MPI_Bcast(buf, n, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (write(out, buf, (size_t)n) != n) {
            perror("write");
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    close(out);
    MPI_Barrier(MPI_COMM_WORLD);
    double t1 = MPI_Wtime();
    if (rank == 0) {
        printf("%.6f\n", t1 - t0);
        /* Out before MPI_Finalize, which MPICH 4.0.2 over UCX/TCP may never finish. */
        fflush(stdout);
    }
    unlink(path);
    free(buf);
    MPI_Finalize();
    return 0;
}
