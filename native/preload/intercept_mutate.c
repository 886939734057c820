/*
 * Mutations of Copper paths fail with EROFS and do nothing else (Copper is read-only
 * and honest about it). Everything else goes straight to the real function.
 * Return/errno contract: that of the wrapped function; EROFS for Copper paths.
 */
#include "shim.h"

#include <errno.h>

static int is_copper(int dirfd, const char *path)
{
    if (!copper_is_at(dirfd, path))
        return 0;
    if (path[0] == '/')
        return 1;
    char real[COPPER_MAX_PATH];
    int saved = errno;
    copper_in_shim++;
    int r = copper_resolve_at(dirfd, path, real);
    copper_in_shim--;
    errno = saved;
    return r != 0;
}

#define ROFS(cond, realcall)   \
    do {                       \
        if (cond) {            \
            errno = EROFS;     \
            return -1;         \
        }                      \
        return realcall;       \
    } while (0)

#define P(path) is_copper(AT_FDCWD, path)

COPPER_EXPORT int mkdir(const char *path, mode_t mode)
{
    ROFS(P(path), REAL(mkdir)(path, mode));
}

COPPER_EXPORT int mkdirat(int dirfd, const char *path, mode_t mode)
{
    ROFS(is_copper(dirfd, path), REAL(mkdirat)(dirfd, path, mode));
}

COPPER_EXPORT int unlink(const char *path)
{
    ROFS(P(path), REAL(unlink)(path));
}

COPPER_EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
    ROFS(is_copper(dirfd, path), REAL(unlinkat)(dirfd, path, flags));
}

COPPER_EXPORT int rmdir(const char *path)
{
    ROFS(P(path), REAL(rmdir)(path));
}

COPPER_EXPORT int rename(const char *from, const char *to)
{
    ROFS(P(from) || P(to), REAL(rename)(from, to));
}

COPPER_EXPORT int renameat(int fromfd, const char *from, int tofd, const char *to)
{
    ROFS(is_copper(fromfd, from) || is_copper(tofd, to), REAL(renameat)(fromfd, from, tofd, to));
}

COPPER_EXPORT int renameat2(int fromfd, const char *from, int tofd, const char *to,
                            unsigned int flags)
{
    ROFS(is_copper(fromfd, from) || is_copper(tofd, to),
         REAL(renameat2)(fromfd, from, tofd, to, flags));
}

COPPER_EXPORT int link(const char *from, const char *to)
{
    ROFS(P(from) || P(to), REAL(link)(from, to));
}

COPPER_EXPORT int linkat(int fromfd, const char *from, int tofd, const char *to, int flags)
{
    ROFS(is_copper(fromfd, from) || is_copper(tofd, to),
         REAL(linkat)(fromfd, from, tofd, to, flags));
}

COPPER_EXPORT int symlink(const char *target, const char *linkpath)
{
    ROFS(P(linkpath), REAL(symlink)(target, linkpath));
}

COPPER_EXPORT int symlinkat(const char *target, int dirfd, const char *linkpath)
{
    ROFS(is_copper(dirfd, linkpath), REAL(symlinkat)(target, dirfd, linkpath));
}

COPPER_EXPORT int truncate(const char *path, off_t length)
{
    ROFS(P(path), REAL(truncate)(path, length));
}

COPPER_EXPORT int truncate64(const char *path, off64_t length)
{
    ROFS(P(path), REAL(truncate64)(path, length));
}

COPPER_EXPORT int chmod(const char *path, mode_t mode)
{
    ROFS(P(path), REAL(chmod)(path, mode));
}

COPPER_EXPORT int fchmodat(int dirfd, const char *path, mode_t mode, int flags)
{
    ROFS(is_copper(dirfd, path), REAL(fchmodat)(dirfd, path, mode, flags));
}

COPPER_EXPORT int chown(const char *path, uid_t uid, gid_t gid)
{
    ROFS(P(path), REAL(chown)(path, uid, gid));
}

COPPER_EXPORT int lchown(const char *path, uid_t uid, gid_t gid)
{
    ROFS(P(path), REAL(lchown)(path, uid, gid));
}

COPPER_EXPORT int fchownat(int dirfd, const char *path, uid_t uid, gid_t gid, int flags)
{
    ROFS(is_copper(dirfd, path), REAL(fchownat)(dirfd, path, uid, gid, flags));
}

COPPER_EXPORT int utime(const char *path, const struct utimbuf *times)
{
    ROFS(P(path), REAL(utime)(path, times));
}

COPPER_EXPORT int utimes(const char *path, const struct timeval times[2])
{
    ROFS(P(path), REAL(utimes)(path, times));
}

COPPER_EXPORT int lutimes(const char *path, const struct timeval times[2])
{
    ROFS(P(path), REAL(lutimes)(path, times));
}

COPPER_EXPORT int utimensat(int dirfd, const char *path, const struct timespec times[2], int flags)
{
    ROFS(path != NULL && is_copper(dirfd, path), REAL(utimensat)(dirfd, path, times, flags));
}

COPPER_EXPORT int futimesat(int dirfd, const char *path, const struct timeval times[2])
{
    ROFS(path != NULL && is_copper(dirfd, path), REAL(futimesat)(dirfd, path, times));
}

COPPER_EXPORT int mknod(const char *path, mode_t mode, dev_t dev)
{
    ROFS(P(path), REAL(mknod)(path, mode, dev));
}

COPPER_EXPORT int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev)
{
    ROFS(is_copper(dirfd, path), REAL(mknodat)(dirfd, path, mode, dev));
}

COPPER_EXPORT int setxattr(const char *path, const char *name, const void *value, size_t size,
                           int flags)
{
    ROFS(P(path), REAL(setxattr)(path, name, value, size, flags));
}

COPPER_EXPORT int lsetxattr(const char *path, const char *name, const void *value, size_t size,
                            int flags)
{
    ROFS(P(path), REAL(lsetxattr)(path, name, value, size, flags));
}

COPPER_EXPORT int removexattr(const char *path, const char *name)
{
    ROFS(P(path), REAL(removexattr)(path, name));
}

COPPER_EXPORT int lremovexattr(const char *path, const char *name)
{
    ROFS(P(path), REAL(lremovexattr)(path, name));
}
