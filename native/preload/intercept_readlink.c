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

#define READLINK_BODY(dirfd, path, buf, bufsiz, realcall) \
    do {                                                   \
        if (!copper_is_at(dirfd, path)) {                  \
            COPPER_PASS(path);                             \
            return realcall;                               \
        }                                                  \
        int saved_ = errno;                                \
        ssize_t r_ = handle_readlink(dirfd, path, buf, bufsiz); \
        if (r_ == COPPER_FALLTHROUGH) {                    \
            errno = saved_;                                \
            return realcall;                               \
        }                                                  \
        if (r_ < 0) {                                      \
            errno = (int)-r_;                              \
            return -1;                                     \
        }                                                  \
        return r_;                                         \
    } while (0)

COPPER_EXPORT ssize_t readlink(const char *path, char *buf, size_t bufsiz)
{
    READLINK_BODY(AT_FDCWD, path, buf, bufsiz, REAL(readlink)(path, buf, bufsiz));
}

COPPER_EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t bufsiz)
{
    READLINK_BODY(dirfd, path, buf, bufsiz, REAL(readlinkat)(dirfd, path, buf, bufsiz));
}
