/*
 * access family: access, faccessat, eaccess, euidaccess. ACCESS for Copper paths;
 * W_OK on an existing file fails with EROFS like a read-only mount.
 * Return/errno contract: that of the wrapped function.
 */
#include "shim.h"

#include <errno.h>

static int handle_access(int dirfd, const char *path, int mode, int flags)
{
    char real[COPPER_MAX_PATH];
    int r = copper_resolve_at(dirfd, path, real);
    if (r <= 0)
        return r == 0 ? COPPER_FALLTHROUGH : r;
    copper_in_shim++;
    int saved = errno;
    int s = copper_get_access(real, mode & ~W_OK);
    if (s == 0)
        r = (mode & W_OK) ? -EROFS : 0;
    else if (s > 0)
        r = -s;
    else {
        r = REAL(faccessat)(AT_FDCWD, real, mode & ~W_OK, flags);
        r = r < 0 ? -errno : (mode & W_OK) ? -EROFS : 0;
    }
    errno = saved;
    copper_in_shim--;
    return r;
}

#define ACCESS_BODY(dirfd, path, mode, flags, realcall) \
    do {                                                 \
        if (!copper_is_at(dirfd, path)) {                \
            COPPER_PASS(path);                           \
            return realcall;                             \
        }                                                \
        int saved_ = errno;                              \
        int r_ = handle_access(dirfd, path, mode, flags); \
        if (r_ == COPPER_FALLTHROUGH) {                  \
            errno = saved_;                              \
            return realcall;                             \
        }                                                \
        if (r_ < 0) {                                    \
            errno = -r_;                                 \
            return -1;                                   \
        }                                                \
        return 0;                                        \
    } while (0)

COPPER_EXPORT int access(const char *path, int mode)
{
    ACCESS_BODY(AT_FDCWD, path, mode, 0, REAL(access)(path, mode));
}

COPPER_EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
    ACCESS_BODY(dirfd, path, mode, flags, REAL(faccessat)(dirfd, path, mode, flags));
}

COPPER_EXPORT int eaccess(const char *path, int mode)
{
    ACCESS_BODY(AT_FDCWD, path, mode, AT_EACCESS, REAL(eaccess)(path, mode));
}

COPPER_EXPORT int euidaccess(const char *path, int mode)
{
    ACCESS_BODY(AT_FDCWD, path, mode, AT_EACCESS, REAL(euidaccess)(path, mode));
}
