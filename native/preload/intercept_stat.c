/*
 * stat family: stat, stat64, lstat, lstat64, fstatat, fstatat64, statx and the old
 * __xstat* entry points of binaries built against glibc < 2.33. Answers for Copper
 * paths come from the per-process cache or the agent's STAT/LSTAT; fallback stats the
 * real path. Return/errno contract: that of the wrapped function.
 */
#include "shim.h"

#include <errno.h>
#include <string.h>
#include <sys/sysmacros.h>

_Static_assert(sizeof(struct stat) == sizeof(struct stat64), "stat and stat64 differ");

/* Returns 0 (buf filled), -errno, or COPPER_FALLTHROUGH. */
static int handle_stat(int dirfd, const char *path, int flags, struct stat *buf)
{
    char real[COPPER_MAX_PATH];
    if (path[0] == '\0' && !(flags & AT_EMPTY_PATH))
        return COPPER_FALLTHROUGH;
    int r = copper_resolve_at(dirfd, path, real);
    if (r <= 0)
        return r == 0 ? COPPER_FALLTHROUGH : r;
    copper_in_shim++;
    copper_stat cs;
    /* "link/" names the link's target, even for lstat. */
    uint8_t op = (flags & AT_SYMLINK_NOFOLLOW) && r != 2 ? COPPER_OP_LSTAT : COPPER_OP_STAT;
    int saved = errno;
    int s = copper_get_stat(op, real, &cs);
    if (s == 0) {
        copper_fill_stat(&cs, buf);
        r = 0;
    } else if (s > 0) {
        r = -s;
    } else {
        r = REAL(fstatat)(AT_FDCWD, real, buf, flags & AT_SYMLINK_NOFOLLOW);
        r = r < 0 ? -errno : 0;
    }
    errno = saved;
    copper_in_shim--;
    return r;
}

COPPER_EXPORT int stat(const char *path, struct stat *buf)
{
    COPPER_WRAP(int, AT_FDCWD, path, handle_stat(AT_FDCWD, path, 0, (struct stat *)(buf)),
                REAL(stat)(path, buf));
}

COPPER_EXPORT int stat64(const char *path, struct stat64 *buf)
{
    COPPER_WRAP(int, AT_FDCWD, path, handle_stat(AT_FDCWD, path, 0, (struct stat *)(buf)),
                REAL(stat64)(path, buf));
}

COPPER_EXPORT int lstat(const char *path, struct stat *buf)
{
    COPPER_WRAP(int, AT_FDCWD, path, handle_stat(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, (struct stat *)(buf)),
                REAL(lstat)(path, buf));
}

COPPER_EXPORT int lstat64(const char *path, struct stat64 *buf)
{
    COPPER_WRAP(int, AT_FDCWD, path, handle_stat(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, (struct stat *)(buf)),
                REAL(lstat64)(path, buf));
}

COPPER_EXPORT int fstatat(int dirfd, const char *path, struct stat *buf, int flags)
{
    COPPER_WRAP(int, dirfd, path, handle_stat(dirfd, path, flags, (struct stat *)(buf)),
                REAL(fstatat)(dirfd, path, buf, flags));
}

COPPER_EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *buf, int flags)
{
    COPPER_WRAP(int, dirfd, path, handle_stat(dirfd, path, flags, (struct stat *)(buf)),
                REAL(fstatat64)(dirfd, path, buf, flags));
}

/* Old binaries: the version argument is _STAT_VER (1 on x86_64, same layout as stat). */
COPPER_EXPORT int __xstat(int ver, const char *path, struct stat *buf)
{
    (void)ver;
    COPPER_WRAP(int, AT_FDCWD, path, handle_stat(AT_FDCWD, path, 0, (struct stat *)(buf)),
                REAL(fstatat)(AT_FDCWD, path, buf, 0));
}

COPPER_EXPORT int __xstat64(int ver, const char *path, struct stat64 *buf)
{
    (void)ver;
    COPPER_WRAP(int, AT_FDCWD, path, handle_stat(AT_FDCWD, path, 0, (struct stat *)(buf)),
                REAL(fstatat64)(AT_FDCWD, path, buf, 0));
}

COPPER_EXPORT int __lxstat(int ver, const char *path, struct stat *buf)
{
    (void)ver;
    COPPER_WRAP(int, AT_FDCWD, path, handle_stat(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, buf),
                REAL(fstatat)(AT_FDCWD, path, buf, AT_SYMLINK_NOFOLLOW));
}

COPPER_EXPORT int __lxstat64(int ver, const char *path, struct stat64 *buf)
{
    (void)ver;
    COPPER_WRAP(int, AT_FDCWD, path, handle_stat(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, (struct stat *)buf),
                REAL(fstatat64)(AT_FDCWD, path, buf, AT_SYMLINK_NOFOLLOW));
}

COPPER_EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct stat *buf, int flags)
{
    (void)ver;
    COPPER_WRAP(int, dirfd, path, handle_stat(dirfd, path, flags, (struct stat *)(buf)),
                REAL(fstatat)(dirfd, path, buf, flags));
}

COPPER_EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *buf, int flags)
{
    (void)ver;
    COPPER_WRAP(int, dirfd, path, handle_stat(dirfd, path, flags, (struct stat *)(buf)),
                REAL(fstatat64)(dirfd, path, buf, flags));
}

static void fill_statx(const struct stat *st, struct statx *sx)
{
    memset(sx, 0, sizeof *sx);
    sx->stx_mask = STATX_BASIC_STATS;
    sx->stx_blksize = (uint32_t)st->st_blksize;
    sx->stx_nlink = (uint32_t)st->st_nlink;
    sx->stx_uid = st->st_uid;
    sx->stx_gid = st->st_gid;
    sx->stx_mode = (uint16_t)st->st_mode;
    sx->stx_ino = st->st_ino;
    sx->stx_size = (uint64_t)st->st_size;
    sx->stx_blocks = (uint64_t)st->st_blocks;
    sx->stx_atime.tv_sec = st->st_atim.tv_sec;
    sx->stx_atime.tv_nsec = (uint32_t)st->st_atim.tv_nsec;
    sx->stx_mtime.tv_sec = st->st_mtim.tv_sec;
    sx->stx_mtime.tv_nsec = (uint32_t)st->st_mtim.tv_nsec;
    sx->stx_ctime.tv_sec = st->st_ctim.tv_sec;
    sx->stx_ctime.tv_nsec = (uint32_t)st->st_ctim.tv_nsec;
    sx->stx_rdev_major = major(st->st_rdev);
    sx->stx_rdev_minor = minor(st->st_rdev);
    sx->stx_dev_major = major(st->st_dev);
    sx->stx_dev_minor = minor(st->st_dev);
}

COPPER_EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask,
                        struct statx *buf)
{
    if (!copper_is_at(dirfd, path)) {
        COPPER_PASS(path);
        return REAL(statx)(dirfd, path, flags, mask, buf);
    }
    int saved = errno;
    struct stat st;
    int r = handle_stat(dirfd, path, flags, &st);
    if (r == COPPER_FALLTHROUGH) {
        errno = saved;
        return REAL(statx)(dirfd, path, flags, mask, buf);
    }
    if (r < 0) {
        errno = -r;
        return -1;
    }
    fill_statx(&st, buf);
    return 0;
}

/*
 * fstat of a Copper directory fd (a mirror directory) answers with the real directory's
 * stat, so samestat(stat(path), fstat(open(path))) holds (os.fwalk relies on it).
 * Regular files keep the local copy's fstat: same size and mode, native speed.
 */
static int handle_fstat(int fd, struct stat *buf)
{
    char real[COPPER_MAX_PATH];
    copper_in_shim++;
    int saved = errno;
    int r = COPPER_FALLTHROUGH;
    if (copper_fd_real(fd, real)) {
        copper_stat cs;
        if (copper_get_stat(COPPER_OP_STAT, real, &cs) == 0) {
            copper_fill_stat(&cs, buf);
            r = 0;
        }
    }
    errno = saved;
    copper_in_shim--;
    return r;
}

#define FSTAT_BODY(fd, buf, realcall)                                        \
    do {                                                                     \
        copper_check_init();                                                 \
        if (fd < 0 || copper_in_shim || !copper_dirfd_marked(fd) ||          \
            handle_fstat(fd, (struct stat *)(buf)) != 0)                     \
            return realcall;                                                 \
        return 0;                                                            \
    } while (0)

COPPER_EXPORT int fstat(int fd, struct stat *buf)
{
    FSTAT_BODY(fd, buf, REAL(fstat)(fd, buf));
}

COPPER_EXPORT int fstat64(int fd, struct stat64 *buf)
{
    FSTAT_BODY(fd, buf, REAL(fstat64)(fd, buf));
}

COPPER_EXPORT int __fxstat(int ver, int fd, struct stat *buf)
{
    (void)ver;
    FSTAT_BODY(fd, buf, REAL(fstat)(fd, buf));
}

COPPER_EXPORT int __fxstat64(int ver, int fd, struct stat64 *buf)
{
    (void)ver;
    FSTAT_BODY(fd, buf, REAL(fstat64)(fd, buf));
}

/*
 * Extended-attribute readers: Copper files have none (ls -l asks for ACLs). A missing
 * file still answers its stat error.
 */
static int xattr_check(const char *path, int follow)
{
    char real[COPPER_MAX_PATH];
    int r = copper_strip(path, real);
    if (r)
        return -r;
    copper_in_shim++;
    int saved = errno;
    copper_stat cs;
    int s = copper_get_stat(follow ? COPPER_OP_STAT : COPPER_OP_LSTAT, real, &cs);
    errno = saved;
    copper_in_shim--;
    return s > 0 ? -s : 0;
}

#define XATTR_BODY(path, follow, none, realcall) \
    do {                                          \
        if (!copper_is_path(path)) {              \
            COPPER_PASS(path);                    \
            return realcall;                      \
        }                                         \
        int r_ = xattr_check(path, follow);       \
        if (r_ < 0) {                             \
            errno = -r_;                          \
            return -1;                            \
        }                                         \
        if (none) {                               \
            errno = ENODATA;                      \
            return -1;                            \
        }                                         \
        return 0;                                 \
    } while (0)

COPPER_EXPORT ssize_t getxattr(const char *path, const char *name, void *value, size_t size)
{
    XATTR_BODY(path, 1, 1, REAL(getxattr)(path, name, value, size));
}

COPPER_EXPORT ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size)
{
    XATTR_BODY(path, 0, 1, REAL(lgetxattr)(path, name, value, size));
}

COPPER_EXPORT ssize_t listxattr(const char *path, char *list, size_t size)
{
    XATTR_BODY(path, 1, 0, REAL(listxattr)(path, list, size));
}

COPPER_EXPORT ssize_t llistxattr(const char *path, char *list, size_t size)
{
    XATTR_BODY(path, 0, 0, REAL(llistxattr)(path, list, size));
}
