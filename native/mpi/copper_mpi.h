/* libcopper-mpi.so: a thin, stable C ABI over the site's MPI (built with its mpicc),
 * imported by copper-agent. MPI's own ABI differs between implementations; this one
 * does not. Requests are opaque heap handles. Every function returns 0 or an MPI error
 * code. Only one thread of the agent (its progress thread) calls these. */
#ifndef COPPER_MPI_H
#define COPPER_MPI_H

#define COPPER_MPI_ABI_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

int copper_mpi_abi_version(void);
/* MPI_Init_thread; also sets MPI_ERRORS_RETURN on MPI_COMM_WORLD and ignores SIGUSR1
 * (Hydra's "a process died" notice, fatal by default). */
int copper_mpi_init(int required, int *provided);
int copper_mpi_rank(int *rank);
int copper_mpi_size(int *size);
int copper_mpi_processor_name(char *name, int capacity);
int copper_mpi_any_source(void);
int copper_mpi_isend(const void *buf, int count, int dest, int tag, void **request);
/* Blocking receive, for a message already seen by iprobe. */
int copper_mpi_recv(void *buf, int count, int source, int tag, int *received);
int copper_mpi_iprobe(int source, int tag, int *flag, int *msg_source, int *msg_tag, int *count);
/* On completion (*flag = 1) the handle is freed and *request set to NULL. */
int copper_mpi_test(void **request, int *flag, int *msg_source, int *msg_tag, int *count);
/* MPI_Finalize; while it runs, MPICH's UCX endpoint disconnects are answered here (see copper_mpi.c). */
int copper_mpi_finalize(void);
int copper_mpi_error_string(int code, char *text, int capacity);

#ifdef __cplusplus
}
#endif
#endif
