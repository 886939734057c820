/*
 * realpath, canonicalize_file_name, __realpath_chk. A Copper path is resolved component
 * by component with LSTAT/READLINK (cached); an absolute symlink target is a real path,
 * so the result stays under the prefix. Errors as the kernel would give them (ENOENT,
 * ENOTDIR, ELOOP after 40 links). Return/errno contract: that of realpath(3).
 */
#include "shim.h"

#include <errno.h>
#include <string.h>

#define MAX_LINKS 40

static void pop_component(char *out, size_t *ol)
{
    while (*ol > 0 && out[*ol - 1] != '/')
        (*ol)--;
    if (*ol > 0)
        (*ol)--;
    out[*ol] = '\0';
}

/* Returns 0 (out = resolved real path), a positive errno, or <0 (fallback). */
static int resolve_real(const char *real, char *out)
{
    char rest[2 * COPPER_MAX_PATH];
    snprintf(rest, sizeof rest, "%s", real);
    size_t ol = 0;
    int links = 0;
    char *p = rest;
    out[0] = '\0';
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        char *e = p;
        while (*e && *e != '/')
            e++;
        size_t n = (size_t)(e - p);
        if (n == 1 && p[0] == '.') {
            p = e;
            continue;
        }
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            pop_component(out, &ol);
            p = e;
            continue;
        }
        if (ol + 1 + n >= COPPER_MAX_PATH)
            return ENAMETOOLONG;
        out[ol++] = '/';
        memcpy(out + ol, p, n);
        ol += n;
        out[ol] = '\0';
        copper_stat st;
        int s = copper_get_stat(COPPER_OP_LSTAT, out, &st);
        if (s != 0)
            return s;
        if (S_ISLNK(st.mode)) {
            if (++links > MAX_LINKS)
                return ELOOP;
            char target[COPPER_MAX_PATH];
            size_t tl = 0;
            s = copper_get_readlink(out, target, sizeof target - 1, &tl);
            if (s != 0)
                return s;
            if (tl >= sizeof target)
                return ENAMETOOLONG;
            target[tl] = '\0';
            char tmp[2 * COPPER_MAX_PATH];
            if ((size_t)snprintf(tmp, sizeof tmp, "%s%s", target, e) >= sizeof tmp)
                return ENAMETOOLONG;
            if (target[0] == '/') {
                ol = 0;
                out[0] = '\0';
            } else {
                pop_component(out, &ol);
            }
            memcpy(rest, tmp, strlen(tmp) + 1);
            p = rest;
            continue;
        }
        if (*e && !S_ISDIR(st.mode))
            return ENOTDIR;
        p = e;
    }
    if (ol == 0)
        strcpy(out, "/");
    return 0;
}

/* Returns the malloc'ed or caller-buffer result, or NULL with *err set. */
static char *handle_realpath(const char *path, char *resolved, int *err)
{
    char real[COPPER_MAX_PATH], res[COPPER_MAX_PATH], full[COPPER_MAX_PATH];
    int r = copper_strip(path, real);
    int t = r == 0 ? copper_trailing_dir(path, real) : 0;
    if (t < 0)
        r = -t;
    if (r) {
        *err = r;
        return NULL;
    }
    copper_in_shim++;
    int s = resolve_real(real, res);
    if (s < 0) {
        /* Fallback: resolve the real path, present it under the prefix. */
        char *x = REAL(realpath)(real, NULL);
        if (x == NULL) {
            s = errno;
        } else {
            snprintf(res, sizeof res, "%s", x);
            free(x);
            s = 0;
        }
    }
    copper_in_shim--;
    if (s == 0)
        s = copper_unstrip(res, full);
    if (s != 0) {
        *err = s;
        return NULL;
    }
    if (resolved != NULL) {
        if (strlen(full) >= PATH_MAX) {
            *err = ENAMETOOLONG;
            return NULL;
        }
        strcpy(resolved, full);
        return resolved;
    }
    char *m = strdup(full);
    if (m == NULL)
        *err = ENOMEM;
    return m;
}

static char *realpath_body(const char *path, char *resolved)
{
    int saved = errno, err = 0;
    char *r = handle_realpath(path, resolved, &err);
    errno = r ? saved : err;
    return r;
}

COPPER_EXPORT char *realpath(const char *path, char *resolved)
{
    if (!copper_is_path(path)) {
        COPPER_PASS(path);
        return REAL(realpath)(path, resolved);
    }
    return realpath_body(path, resolved);
}

COPPER_EXPORT char *canonicalize_file_name(const char *path)
{
    if (!copper_is_path(path)) {
        COPPER_PASS(path);
        return REAL(canonicalize_file_name)(path);
    }
    return realpath_body(path, NULL);
}

COPPER_EXPORT char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen)
{
    if (!copper_is_path(path)) {
        COPPER_PASS(path);
        return REAL(__realpath_chk)(path, resolved, resolvedlen);
    }
    if (resolved != NULL && resolvedlen < PATH_MAX)
        return REAL(__realpath_chk)(path, resolved, resolvedlen); /* let glibc abort */
    return realpath_body(path, resolved);
}
