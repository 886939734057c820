/*
 * Mutations of Copper paths fail like on a read-only mount and do nothing else: the
 * path's own error first (ENOENT, ENOTDIR, ELOOP, EACCES, EEXIST, EISDIR), EROFS once it
 * resolves (copper_readonly_errno). Everything else goes straight to the real function.
 * Return/errno contract: that of the wrapped function.
 */
#include "shim.h"

#include <errno.h>

/* 0: not a Copper path; else the errno the call must fail with. */
static int mut_errno(int dirfd, const char *path, int kind)
{
    if (path == NULL || !copper_is_at(dirfd, path))
        return 0;
    char real[COPPER_MAX_PATH];
    int trailing = 0;
    int saved = errno;
    copper_in_shim++;
    int r = copper_resolve_raw(dirfd, path, real, &trailing);
    int e = r < 0 ? -r : r == 0 ? 0 : copper_readonly_errno(kind, real, trailing);
    copper_in_shim--;
    errno = saved;
    return e;
}

/* The first Copper error among the arguments, or the real call. */
#define ROFS(err, realcall)      \
    do {                         \
        int e_ = (err);          \
        if (e_) {                \
            errno = e_;          \
            return -1;           \
        }                        \
        return realcall;         \
    } while (0)

#define M(path, kind) mut_errno(AT_FDCWD, path, kind)
#define MAT(dirfd, path, kind) mut_errno(dirfd, path, kind)
#define FIRST(a, b) ((a) ? (a) : (b))
#define NOFOLLOW(flags) ((flags) & AT_SYMLINK_NOFOLLOW ? COPPER_MUT_OBJECT_NOFOLLOW : COPPER_MUT_OBJECT)

COPPER_EXPORT int mkdir(const char *path, mode_t mode)
{
    ROFS(M(path, COPPER_MUT_CREATE),
         REAL(mkdir)(path, mode));
}

COPPER_EXPORT int mkdirat(int dirfd, const char *path, mode_t mode)
{
    ROFS(MAT(dirfd, path, COPPER_MUT_CREATE),
         REAL(mkdirat)(dirfd, path, mode));
}

COPPER_EXPORT int unlink(const char *path)
{
    ROFS(M(path, COPPER_MUT_ENTRY),
         REAL(unlink)(path));
}

COPPER_EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
    ROFS(MAT(dirfd, path, COPPER_MUT_ENTRY),
         REAL(unlinkat)(dirfd, path, flags));
}

COPPER_EXPORT int rmdir(const char *path)
{
    ROFS(M(path, COPPER_MUT_ENTRY),
         REAL(rmdir)(path));
}

COPPER_EXPORT int rename(const char *from, const char *to)
{
    ROFS(FIRST(M(from, COPPER_MUT_RENAME), M(to, COPPER_MUT_ENTRY)),
         REAL(rename)(from, to));
}

COPPER_EXPORT int renameat(int fromfd, const char *from, int tofd, const char *to)
{
    ROFS(FIRST(MAT(fromfd, from, COPPER_MUT_RENAME), MAT(tofd, to, COPPER_MUT_ENTRY)),
         REAL(renameat)(fromfd, from, tofd, to));
}

COPPER_EXPORT int renameat2(int fromfd, const char *from, int tofd, const char *to,
                            unsigned int flags)
{
    ROFS(FIRST(MAT(fromfd, from, COPPER_MUT_RENAME), MAT(tofd, to, COPPER_MUT_ENTRY)),
         REAL(renameat2)(fromfd, from, tofd, to, flags));
}

COPPER_EXPORT int link(const char *from, const char *to)
{
    ROFS(FIRST(M(from, COPPER_MUT_OBJECT_NOFOLLOW), M(to, COPPER_MUT_CREATE)),
         REAL(link)(from, to));
}

COPPER_EXPORT int linkat(int fromfd, const char *from, int tofd, const char *to, int flags)
{
    ROFS(FIRST(MAT(fromfd, from, (flags) & AT_SYMLINK_FOLLOW ? COPPER_MUT_OBJECT : COPPER_MUT_OBJECT_NOFOLLOW), MAT(tofd, to, COPPER_MUT_CREATE)),
         REAL(linkat)(fromfd, from, tofd, to, flags));
}

COPPER_EXPORT int symlink(const char *target, const char *linkpath)
{
    ROFS(M(linkpath, COPPER_MUT_CREATE),
         REAL(symlink)(target, linkpath));
}

COPPER_EXPORT int symlinkat(const char *target, int dirfd, const char *linkpath)
{
    ROFS(MAT(dirfd, linkpath, COPPER_MUT_CREATE),
         REAL(symlinkat)(target, dirfd, linkpath));
}

COPPER_EXPORT int truncate(const char *path, off_t length)
{
    ROFS(M(path, COPPER_MUT_WRITE),
         REAL(truncate)(path, length));
}

COPPER_EXPORT int truncate64(const char *path, off64_t length)
{
    ROFS(M(path, COPPER_MUT_WRITE),
         REAL(truncate64)(path, length));
}

COPPER_EXPORT int chmod(const char *path, mode_t mode)
{
    ROFS(M(path, COPPER_MUT_OBJECT),
         REAL(chmod)(path, mode));
}

COPPER_EXPORT int fchmodat(int dirfd, const char *path, mode_t mode, int flags)
{
    ROFS(MAT(dirfd, path, NOFOLLOW(flags)),
         REAL(fchmodat)(dirfd, path, mode, flags));
}

COPPER_EXPORT int chown(const char *path, uid_t uid, gid_t gid)
{
    ROFS(M(path, COPPER_MUT_OBJECT),
         REAL(chown)(path, uid, gid));
}

COPPER_EXPORT int lchown(const char *path, uid_t uid, gid_t gid)
{
    ROFS(M(path, COPPER_MUT_OBJECT_NOFOLLOW),
         REAL(lchown)(path, uid, gid));
}

COPPER_EXPORT int fchownat(int dirfd, const char *path, uid_t uid, gid_t gid, int flags)
{
    ROFS(MAT(dirfd, path, NOFOLLOW(flags)),
         REAL(fchownat)(dirfd, path, uid, gid, flags));
}

COPPER_EXPORT int utime(const char *path, const struct utimbuf *times)
{
    ROFS(M(path, COPPER_MUT_OBJECT),
         REAL(utime)(path, times));
}

COPPER_EXPORT int utimes(const char *path, const struct timeval times[2])
{
    ROFS(M(path, COPPER_MUT_OBJECT),
         REAL(utimes)(path, times));
}

COPPER_EXPORT int lutimes(const char *path, const struct timeval times[2])
{
    ROFS(M(path, COPPER_MUT_OBJECT_NOFOLLOW),
         REAL(lutimes)(path, times));
}

COPPER_EXPORT int utimensat(int dirfd, const char *path, const struct timespec times[2], int flags)
{
    ROFS(MAT(dirfd, path, NOFOLLOW(flags)),
         REAL(utimensat)(dirfd, path, times, flags));
}

COPPER_EXPORT int futimesat(int dirfd, const char *path, const struct timeval times[2])
{
    ROFS(MAT(dirfd, path, COPPER_MUT_OBJECT),
         REAL(futimesat)(dirfd, path, times));
}

COPPER_EXPORT int mknod(const char *path, mode_t mode, dev_t dev)
{
    ROFS(M(path, COPPER_MUT_CREATE),
         REAL(mknod)(path, mode, dev));
}

COPPER_EXPORT int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev)
{
    ROFS(MAT(dirfd, path, COPPER_MUT_CREATE),
         REAL(mknodat)(dirfd, path, mode, dev));
}

COPPER_EXPORT int setxattr(const char *path, const char *name, const void *value, size_t size,
                           int flags)
{
    ROFS(M(path, COPPER_MUT_OBJECT),
         REAL(setxattr)(path, name, value, size, flags));
}

COPPER_EXPORT int lsetxattr(const char *path, const char *name, const void *value, size_t size,
                            int flags)
{
    ROFS(M(path, COPPER_MUT_OBJECT_NOFOLLOW),
         REAL(lsetxattr)(path, name, value, size, flags));
}

COPPER_EXPORT int removexattr(const char *path, const char *name)
{
    ROFS(M(path, COPPER_MUT_OBJECT),
         REAL(removexattr)(path, name));
}

COPPER_EXPORT int lremovexattr(const char *path, const char *name)
{
    ROFS(M(path, COPPER_MUT_OBJECT_NOFOLLOW),
         REAL(lremovexattr)(path, name));
}
