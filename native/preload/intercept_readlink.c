/*
 * readlink, readlinkat. READLINK for Copper paths (cached); the target is truncated to
 * bufsiz like the kernel does; EINVAL for a non-link comes from the agent.
 * Return/errno contract: that of the wrapped function.
 */
#include "shim.h"

#include <errno.h>
#include <string.h>

static ssize_t handle_readlink(int dirfd, const char *path, char *buf, size_t bufsiz)
{
    char real[COPPER_MAX_PATH];
    int r = copper_resolve_at(dirfd, path, real);
    if (r <= 0)
        return r == 0 ? COPPER_FALLTHROUGH : r;
    if (r == 2)
        return -EINVAL; /* "link/" is the directory it points to, not a link */
    copper_in_shim++;
    int saved = errno;
    char target[COPPER_MAX_PATH];
    size_t len = 0;
    ssize_t out;
    int s = copper_get_readlink(real, target, sizeof target, &len);
    if (s == 0) {
        if (len > sizeof target)
            len = sizeof target;
        out = (ssize_t)(len < bufsiz ? len : bufsiz);
        memcpy(buf, target, (size_t)out);
    } else if (s > 0) {
        out = -s;
    } else {
        out = REAL(readlink)(real, buf, bufsiz);
        if (out < 0)
            out = -errno;
    }
    errno = saved;
    copper_in_shim--;
    return out;
}

COPPER_EXPORT ssize_t readlink(const char *path, char *buf, size_t bufsiz)
{
    COPPER_WRAP(ssize_t, AT_FDCWD, path, handle_readlink(AT_FDCWD, path, buf, bufsiz),
                REAL(readlink)(path, buf, bufsiz));
}

COPPER_EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t bufsiz)
{
    COPPER_WRAP(ssize_t, dirfd, path, handle_readlink(dirfd, path, buf, bufsiz),
                REAL(readlinkat)(dirfd, path, buf, bufsiz));
}
