/*
 * fopen, fopen64, freopen, freopen64. Write modes (w, a, +, x) on a Copper path fail
 * with EROFS; read modes open through copper_open_real and wrap the descriptor.
 * Return/errno contract: that of the wrapped function.
 */
#include "shim.h"

#include <errno.h>
#include <string.h>

/* Returns an fd for a read-mode Copper open, or -errno. */
static int fopen_fd(const char *path, const char *mode)
{
    if (strpbrk(mode, "wa+x") != NULL)
        return -EROFS;
    char real[COPPER_MAX_PATH];
    int r = copper_strip(path, real);
    if (r)
        return -r;
    copper_in_shim++;
    r = copper_open_real(real, O_RDONLY | (strchr(mode, 'e') ? O_CLOEXEC : 0), 0);
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
    if (!copper_is_path(path))
        return REAL(fopen)(path, mode);
    return handle_fopen(path, mode);
}

COPPER_EXPORT FILE *fopen64(const char *path, const char *mode)
{
    if (!copper_is_path(path))
        return REAL(fopen64)(path, mode);
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
    if (!copper_is_path(path))
        return REAL(freopen)(path, mode, stream);
    return handle_freopen(path, mode, stream, REAL(freopen));
}

COPPER_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *stream)
{
    if (!copper_is_path(path))
        return REAL(freopen64)(path, mode, stream);
    return handle_freopen(path, mode, stream, REAL(freopen64));
}
