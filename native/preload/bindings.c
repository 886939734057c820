/*
 * The binding table: one real_* pointer per wrapped symbol, resolved once with
 * dlsym(RTLD_NEXT). An unresolved symbol stays NULL and its wrapper degrades to
 * pass-through of whatever else is available (or ENOSYS); the shim never exits.
 * Also: process init, the reentrancy guard, fork handling, the Copper-dir fd bitmap.
 */
#include "shim.h"

#include <errno.h>
#include <pthread.h>

#define COPPER_DEFINE_REAL(name) __typeof__(name) *real_##name;
COPPER_SYMBOLS(COPPER_DEFINE_REAL)

__thread int copper_in_shim __attribute__((tls_model("initial-exec")));
int copper_ready;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static uint64_t dirfd_bits[COPPER_FD_BITS / 64]; /* atomic bit ops only */

static void atfork_child(void)
{
    copper_client_atfork_child();
    copper_cache_atfork_child();
}

/* Stand-ins for symbols this libc does not have: fail politely, never crash or exit. */
static long enosys_int(void)
{
    errno = ENOSYS;
    return -1;
}

static void *enosys_ptr(void)
{
    errno = ENOSYS;
    return NULL;
}

#define COPPER_PTR_RETURNING(X) \
    X(opendir) X(fdopendir) X(readdir) X(readdir64) X(fopen) X(fopen64) X(freopen) \
    X(freopen64) X(realpath) X(canonicalize_file_name) X(__realpath_chk) X(dlopen) X(dlmopen)

static void do_init(void)
{
    copper_in_shim++;
#define COPPER_RESOLVE(name) \
    real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name); \
    if (real_##name == NULL) \
        real_##name = (__typeof__(name) *)(void *)enosys_int;
    COPPER_SYMBOLS(COPPER_RESOLVE)
#define COPPER_RESOLVE_PTR(name) \
    if (real_##name == (__typeof__(name) *)(void *)enosys_int) \
        real_##name = (__typeof__(name) *)(void *)enosys_ptr;
    COPPER_PTR_RETURNING(COPPER_RESOLVE_PTR)
    copper_config_init();
    pthread_atfork(NULL, NULL, atfork_child);
    copper_in_shim--;
    __atomic_store_n(&copper_ready, 1, __ATOMIC_RELEASE);
}

void copper_init(void)
{
    pthread_once(&init_once, do_init);
}

__attribute__((constructor)) static void copper_ctor(void)
{
    copper_init();
}

void copper_dirfd_mark(int fd)
{
    if (fd >= 0 && fd < COPPER_FD_BITS)
        __atomic_fetch_or(&dirfd_bits[fd / 64], 1ull << (fd % 64), __ATOMIC_RELAXED);
}

int copper_dirfd_marked(int fd)
{
    return fd < COPPER_FD_BITS &&
           (__atomic_load_n(&dirfd_bits[fd / 64], __ATOMIC_RELAXED) >> (fd % 64)) & 1;
}
