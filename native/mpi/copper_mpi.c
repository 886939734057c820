/* libcopper-mpi.so: see copper_mpi.h. */
#include "copper_mpi.h"

#include <dlfcn.h>
#include <mpi.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT int copper_mpi_abi_version(void) { return COPPER_MPI_ABI_VERSION; }

EXPORT int copper_mpi_init(int required, int *provided)
{
    int level;
    switch (required) {
    case 0: level = MPI_THREAD_SINGLE; break;
    case 1: level = MPI_THREAD_FUNNELED; break;
    case 2: level = MPI_THREAD_SERIALIZED; break;
    default: level = MPI_THREAD_MULTIPLE; break;
    }
    int got = MPI_THREAD_SINGLE;
    int rc = MPI_Init_thread(NULL, NULL, level, &got);
    if (rc != MPI_SUCCESS)
        return rc;
    *provided = got == MPI_THREAD_SINGLE ? 0 : got == MPI_THREAD_FUNNELED ? 1 : got == MPI_THREAD_SERIALIZED ? 2 : 3;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    signal(SIGUSR1, SIG_IGN);
    return MPI_SUCCESS;
}

EXPORT int copper_mpi_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }

EXPORT int copper_mpi_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }

EXPORT int copper_mpi_processor_name(char *name, int capacity)
{
    char buf[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    int rc = MPI_Get_processor_name(buf, &len);
    if (rc != MPI_SUCCESS || capacity <= 0)
        return rc;
    if (len >= capacity)
        len = capacity - 1;
    memcpy(name, buf, (size_t)len);
    name[len] = '\0';
    return MPI_SUCCESS;
}

EXPORT int copper_mpi_any_source(void) { return MPI_ANY_SOURCE; }

EXPORT int copper_mpi_isend(const void *buf, int count, int dest, int tag, void **request)
{
    MPI_Request *r = malloc(sizeof *r);
    if (!r)
        return MPI_ERR_NO_MEM;
    int rc = MPI_Isend(buf, count, MPI_BYTE, dest, tag, MPI_COMM_WORLD, r);
    if (rc != MPI_SUCCESS) {
        free(r);
        return rc;
    }
    *request = r;
    return MPI_SUCCESS;
}

EXPORT int copper_mpi_recv(void *buf, int count, int source, int tag, int *received)
{
    MPI_Status st;
    int rc = MPI_Recv(buf, count, MPI_BYTE, source, tag, MPI_COMM_WORLD, &st);
    if (rc == MPI_SUCCESS)
        rc = MPI_Get_count(&st, MPI_BYTE, received);
    return rc;
}

EXPORT int copper_mpi_iprobe(int source, int tag, int *flag, int *msg_source, int *msg_tag, int *count)
{
    MPI_Status st;
    int rc = MPI_Iprobe(source, tag, MPI_COMM_WORLD, flag, &st);
    if (rc != MPI_SUCCESS || !*flag)
        return rc;
    *msg_source = st.MPI_SOURCE;
    *msg_tag = st.MPI_TAG;
    return MPI_Get_count(&st, MPI_BYTE, count);
}

EXPORT int copper_mpi_test(void **request, int *flag, int *msg_source, int *msg_tag, int *count)
{
    MPI_Request *r = *request;
    MPI_Status st;
    *flag = 0;
    if (!r) {
        *flag = 1;
        return MPI_SUCCESS;
    }
    int rc = MPI_Test(r, flag, &st);
    if (rc != MPI_SUCCESS || *flag) {
        if (rc == MPI_SUCCESS) {
            *msg_source = st.MPI_SOURCE;
            *msg_tag = st.MPI_TAG;
            MPI_Get_count(&st, MPI_BYTE, count);
        }
        *flag = 1;
        free(r);
        *request = NULL;
    }
    return rc;
}

/* MPI_Finalize of MPICH 4.0.x over UCX can hang for good: each rank disconnects its UCX
 * endpoints, drives UCX until its own disconnects complete, and only then enters a PMI
 * barrier that makes no UCX progress. A disconnect needs the peer's progress, so a rank
 * whose peers already wait in that barrier waits forever, and they with it (later MPICH
 * holds the barrier first, then disconnects). While copper_mpi_finalize runs, this library
 * answers MPICH's ucp_disconnect_nb itself: "done", leaving the endpoint as it is. Every
 * rank then reaches the barrier without waiting on anyone, and MPICH destroys the UCX
 * worker after it, which closes the endpoints locally. The agent has sent everything it
 * queued before finalizing, so nothing in flight is lost. libmpich binds this symbol here
 * because this library comes first in the scope it was loaded with; outside finalize (and
 * with an MPI that does not use UCX) the call goes to UCX unchanged. */
static atomic_int finalizing;

typedef void *(*ucp_disconnect_nb_fn)(void *ep);

EXPORT void *ucp_disconnect_nb(void *ep);
EXPORT void *ucp_disconnect_nb(void *ep)
{
    if (atomic_load(&finalizing))
        return NULL; /* UCS_OK: completed */
    ucp_disconnect_nb_fn real = (ucp_disconnect_nb_fn)dlsym(RTLD_NEXT, "ucp_disconnect_nb");
    return real ? real(ep) : NULL;
}

EXPORT int copper_mpi_finalize(void)
{
    atomic_store(&finalizing, 1);
    return MPI_Finalize();
}

EXPORT int copper_mpi_error_string(int code, char *text, int capacity)
{
    char buf[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (capacity <= 0)
        return MPI_ERR_ARG;
    int rc = MPI_Error_string(code, buf, &len);
    if (rc != MPI_SUCCESS)
        len = 0;
    if (len >= capacity)
        len = capacity - 1;
    memcpy(text, buf, (size_t)len);
    text[len] = '\0';
    return rc;
}
