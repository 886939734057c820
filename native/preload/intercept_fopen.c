/*
 * fopen, fopen64, freopen, freopen64: the mode becomes open flags and goes through
 * copper_open_real, so write modes (w, a, +, x) fail as on a read-only mount (EROFS once
 * the path resolves) and read modes wrap a descriptor of the local copy.
 * Return/errno contract: that of the wrapped function.
 */
#include "shim.h"

#include <errno.h>
#include <string.h>

/* Returns an fd for a Copper open in stdio mode, or -errno. */
static int fopen_fd(const char *path, const char *mode)
{
    int flags = copper_fopen_flags(mode);
    char real[COPPER_MAX_PATH];
    int trailing;
    int r = copper_resolve_raw(AT_FDCWD, path, real, &trailing);
    if (r < 0)
        return r;
    copper_in_shim++;
    r = copper_open_real(real, flags, 0, trailing);
    copper_in_shim--;
    return r;
}

static FILE *handle_fopen(const char *path, const char *mode)
{
    int saved = errno;
    int fd = fopen_fd(path, mode);
    if (fd < 0) {
        errno = -fd;
        return NULL;
    }
    FILE *f = fdopen(fd, mode);
    if (f == NULL) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    errno = saved;
    return f;
}

COPPER_EXPORT FILE *fopen(const char *path, const char *mode)
{
    if (!copper_is_path(path)) {
        COPPER_PASS(path);
        return REAL(fopen)(path, mode);
    }
    return handle_fopen(path, mode);
}

COPPER_EXPORT FILE *fopen64(const char *path, const char *mode)
{
    if (!copper_is_path(path)) {
        COPPER_PASS(path);
        return REAL(fopen64)(path, mode);
    }
    return handle_fopen(path, mode);
}

/* Reopen the stream on /proc/self/fd/N of our descriptor: the FILE keeps its identity. */
static FILE *handle_freopen(const char *path, const char *mode, FILE *stream,
                            __typeof__(freopen) *realfn)
{
    int saved = errno;
    int fd = fopen_fd(path, mode);
    if (fd < 0) {
        fclose(stream); /* freopen closes the stream even when the open fails */
        errno = -fd;
        return NULL;
    }
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    copper_in_shim++;
    FILE *f = realfn(proc, mode, stream);
    copper_in_shim--;
    int e = errno;
    close(fd);
    errno = f ? saved : e;
    return f;
}

COPPER_EXPORT FILE *freopen(const char *path, const char *mode, FILE *stream)
{
    if (!copper_is_path(path)) {
        COPPER_PASS(path);
        return REAL(freopen)(path, mode, stream);
    }
    return handle_freopen(path, mode, stream, REAL(freopen));
}

COPPER_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *stream)
{
    if (!copper_is_path(path)) {
        COPPER_PASS(path);
        return REAL(freopen64)(path, mode, stream);
    }
    return handle_freopen(path, mode, stream, REAL(freopen64));
}
