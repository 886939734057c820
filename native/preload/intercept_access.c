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
        r = copper_access_wants_write(mode) ? -EROFS : 0;
    else if (s > 0)
        r = -s;
    else {
        r = REAL(faccessat)(AT_FDCWD, real, mode & ~W_OK, flags);
        r = r < 0 ? -errno : copper_access_wants_write(mode) ? -EROFS : 0;
    }
    errno = saved;
    copper_in_shim--;
    return r;
}

COPPER_EXPORT int access(const char *path, int mode)
{
    COPPER_WRAP(int, AT_FDCWD, path, handle_access(AT_FDCWD, path, mode, 0),
                REAL(access)(path, mode));
}

COPPER_EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
    COPPER_WRAP(int, dirfd, path, handle_access(dirfd, path, mode, flags),
                REAL(faccessat)(dirfd, path, mode, flags));
}

COPPER_EXPORT int eaccess(const char *path, int mode)
{
    COPPER_WRAP(int, AT_FDCWD, path, handle_access(AT_FDCWD, path, mode, AT_EACCESS),
                REAL(eaccess)(path, mode));
}

COPPER_EXPORT int euidaccess(const char *path, int mode)
{
    COPPER_WRAP(int, AT_FDCWD, path, handle_access(AT_FDCWD, path, mode, AT_EACCESS),
                REAL(euidaccess)(path, mode));
}
