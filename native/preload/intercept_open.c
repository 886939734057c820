/*
 * open family: open, open64, openat, openat64, the fortified __open*_2, creat, creat64.
 * A Copper path opened for reading gets a descriptor of the node-local materialized
 * file (or of the mirror directory); writes fail with EROFS like a read-only mount.
 * Return/errno contract of every export: that of the libc function it wraps.
 */
#include "shim.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#ifndef __O_TMPFILE
#define __O_TMPFILE 0
#endif

int copper_open_real(const char *real, int flags, mode_t mode, int trailing)
{
    copper_stat st;
    int s;
    int saved = errno;
    if (flags & O_CREAT) {
        s = copper_readonly_errno((flags & O_EXCL) ? COPPER_MUT_OPEN_EXCL : COPPER_MUT_OPEN_CREAT,
                                  real, trailing);
        if (s == 0 && copper_open_wants_write(flags))
            s = EROFS;
        if (s)
            return -s;
    } else if (copper_open_wants_write(flags)) {
        return -copper_readonly_errno(COPPER_MUT_WRITE, real, trailing);
    } else if (trailing && (s = copper_require_dir(real)) < 0) {
        return s;
    }
    if ((flags & O_NOFOLLOW) && !(flags & O_PATH)) {
        s = copper_get_stat(COPPER_OP_LSTAT, real, &st);
        if (s > 0)
            return -s;
        if (s == 0 && S_ISLNK(st.mode))
            return -ELOOP;
    }
    uint32_t kind = 0;
    char local[COPPER_MAX_PATH];
    s = copper_get_open(real, &kind, local, &st);
    if (s > 0)
        return -s;
    int fd = -1;
    if (s == 0 && kind == COPPER_OPEN_FILE) {
        if (flags & O_DIRECTORY)
            return -ENOTDIR;
        fd = REAL(open)(local, flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW), mode);
        if (fd < 0 && errno == ENOENT) {
            /* The remembered mirror copy is gone (cache removed): ask the agent again. */
            s = copper_ask_open(real, &kind, local, &st);
            if (s > 0)
                return -s;
            if (s == 0 && kind == COPPER_OPEN_FILE)
                fd = REAL(open)(local, flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW), mode);
        }
    } else if (s == 0 && kind == COPPER_OPEN_DIR) {
        fd = REAL(open)(local, flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW), mode);
        if (fd >= 0)
            copper_dirfd_mark(fd);
    }
    if (fd < 0) {
        /* Fallback (agent unavailable, too big, or the local copy vanished): real path. */
        errno = saved;
        fd = REAL(open)(real, flags, mode);
        if (fd < 0)
            return -errno;
    }
    errno = saved;
    return fd;
}

static int handle_open(int dirfd, const char *path, int flags, mode_t mode)
{
    char real[COPPER_MAX_PATH];
    int trailing;
    int r = copper_resolve_raw(dirfd, path, real, &trailing);
    if (r <= 0)
        return r == 0 ? COPPER_FALLTHROUGH : r;
    copper_in_shim++;
    r = copper_open_real(real, flags, mode, trailing);
    copper_in_shim--;
    return r;
}

#define NEEDS_MODE(flags) (((flags) & O_CREAT) || (__O_TMPFILE && ((flags) & __O_TMPFILE) == __O_TMPFILE))
#define GET_MODE(flags, mode)                  \
    mode_t mode = 0;                           \
    if (NEEDS_MODE(flags)) {                   \
        va_list ap;                            \
        va_start(ap, flags);                   \
        mode = (mode_t)va_arg(ap, int);        \
        va_end(ap);                            \
    }

COPPER_EXPORT int open(const char *path, int flags, ...)
{
    GET_MODE(flags, mode);
    COPPER_WRAP(int, AT_FDCWD, path, handle_open(AT_FDCWD, path, flags, mode),
                REAL(open)(path, flags, mode));
}

COPPER_EXPORT int open64(const char *path, int flags, ...)
{
    GET_MODE(flags, mode);
    COPPER_WRAP(int, AT_FDCWD, path, handle_open(AT_FDCWD, path, flags, mode),
                REAL(open64)(path, flags, mode));
}

COPPER_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    GET_MODE(flags, mode);
    COPPER_WRAP(int, dirfd, path, handle_open(dirfd, path, flags, mode),
                REAL(openat)(dirfd, path, flags, mode));
}

COPPER_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    GET_MODE(flags, mode);
    COPPER_WRAP(int, dirfd, path, handle_open(dirfd, path, flags, mode),
                REAL(openat64)(dirfd, path, flags, mode));
}

COPPER_EXPORT int __open_2(const char *path, int flags)
{
    COPPER_WRAP(int, AT_FDCWD, path, handle_open(AT_FDCWD, path, flags, 0),
                REAL(__open_2)(path, flags));
}

COPPER_EXPORT int __open64_2(const char *path, int flags)
{
    COPPER_WRAP(int, AT_FDCWD, path, handle_open(AT_FDCWD, path, flags, 0),
                REAL(__open64_2)(path, flags));
}

COPPER_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
    COPPER_WRAP(int, dirfd, path, handle_open(dirfd, path, flags, 0),
                REAL(__openat_2)(dirfd, path, flags));
}

COPPER_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
    COPPER_WRAP(int, dirfd, path, handle_open(dirfd, path, flags, 0),
                REAL(__openat64_2)(dirfd, path, flags));
}

COPPER_EXPORT int creat(const char *path, mode_t mode)
{
    COPPER_WRAP(int, AT_FDCWD, path, handle_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode),
                REAL(creat)(path, mode));
}

COPPER_EXPORT int creat64(const char *path, mode_t mode)
{
    COPPER_WRAP(int, AT_FDCWD, path, handle_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode),
                REAL(creat64)(path, mode));
}
