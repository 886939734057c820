/*
 * Mapping (dirfd, path) to a Copper real path, and the agent queries the families
 * share (STAT, LSTAT, READLINK, ACCESS through the cache; OPEN).
 */
#include "shim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

int copper_fd_real(int fd, char *real)
{
    char link[64], target[COPPER_MAX_PATH];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = REAL(readlink)(link, target, sizeof target - 1);
    if (n <= 0)
        return 0;
    target[n] = '\0';
    return copper_mirror_to_real(target, real);
}

const char *copper_guard_real(const char *path, char *buf)
{
    if (path == NULL || path[0] != '/' || !copper_under_prefix(path) || copper_strip(path, buf) != 0)
        return path;
    return buf;
}

static int has_trailing_slash(const char *path)
{
    size_t n = strlen(path);
    return (n > 0 && path[n - 1] == '/') || (n > 1 && path[n - 1] == '.' && path[n - 2] == '/');
}

int copper_require_dir(const char *real)
{
    copper_in_shim++;
    int saved = errno;
    copper_stat st;
    int s = copper_get_stat(COPPER_OP_STAT, real, &st);
    int r;
    if (s == 0)
        r = S_ISDIR(st.mode) ? 0 : -ENOTDIR;
    else if (s > 0)
        r = -s;
    else {
        /* Copper cannot answer: ask the real file system, keeping the slash. */
        char slashed[COPPER_MAX_PATH + 1];
        struct stat kst;
        snprintf(slashed, sizeof slashed, "%s/", real);
        r = REAL(stat)(slashed, &kst) == 0 ? 0 : -errno;
    }
    errno = saved;
    copper_in_shim--;
    return r;
}

int copper_trailing_dir(const char *path, const char *real)
{
    if (!has_trailing_slash(path))
        return 0;
    int r = copper_require_dir(real);
    return r < 0 ? r : 1;
}

int copper_resolve_raw(int dirfd, const char *path, char *real, int *trailing)
{
    *trailing = has_trailing_slash(path);
    if (path[0] == '/') {
        if (!copper_under_prefix(path))
            return 0;
        int r = copper_strip(path, real);
        return r ? -r : 1;
    }
    if (dirfd < 0 || !copper_dirfd_marked(dirfd))
        return 0;
    char base[COPPER_MAX_PATH];
    int saved = errno;
    int ok = copper_fd_real(dirfd, base);
    errno = saved;
    if (!ok)
        return 0;
    size_t bl = strlen(base), pl = strlen(path);
    if (bl + 1 + pl >= COPPER_MAX_PATH)
        return -ENAMETOOLONG;
    char joined[COPPER_MAX_PATH];
    memcpy(joined, base, bl);
    joined[bl] = '/';
    memcpy(joined + bl + 1, path, pl + 1);
    int r = copper_normalize(joined, real);
    return r ? -r : 1;
}

int copper_resolve_at(int dirfd, const char *path, char *real)
{
    int trailing;
    int r = copper_resolve_raw(dirfd, path, real, &trailing);
    if (r <= 0 || !trailing)
        return r;
    r = copper_require_dir(real);
    return r < 0 ? r : 2;
}

int copper_get_stat(uint8_t op, const char *real, copper_stat *st)
{
    int status;
    size_t len = 0;
    if (copper_cache_get(op, 0, real, &status, st, sizeof *st, &len))
        return status;
    if (copper_prefetch_parent(real, 0)) {
        if (copper_cache_get(op, 0, real, &status, st, sizeof *st, &len))
            return status;
        if (!copper_cache_get(COPPER_CK_NAME, 0, real, &status, NULL, 0, NULL)) {
            /* Not in its directory's complete listing: it does not exist (or, longer than
               NAME_MAX, could not: the file system says so before it looks). */
            status = strlen(strrchr(real, '/') + 1) > NAME_MAX ? ENAMETOOLONG : ENOENT;
            copper_cache_put(op, 0, real, status, NULL, 0);
            return status;
        }
    }
    char *data;
    status = copper_request(op, NULL, 0, real, &data, &len);
    if (status == 0 && (data == NULL || len < sizeof *st))
        status = COPPER_S_FALLBACK;
    if (status == 0)
        memcpy(st, data, sizeof *st);
    free(data);
    copper_cache_put(op, 0, real, status, st, status == 0 ? sizeof *st : 0);
    return status;
}

int copper_get_readlink(const char *real, char *buf, size_t cap, size_t *len)
{
    int status;
    if (copper_cache_get(COPPER_OP_READLINK, 0, real, &status, buf, cap, len))
        return status;
    char *data;
    size_t n = 0;
    status = copper_request(COPPER_OP_READLINK, NULL, 0, real, &data, &n);
    if (status == 0) {
        copper_cache_put(COPPER_OP_READLINK, 0, real, 0, data, n);
        memcpy(buf, data, n < cap ? n : cap);
        *len = n;
    } else {
        copper_cache_put(COPPER_OP_READLINK, 0, real, status, NULL, 0);
    }
    free(data);
    return status;
}

int copper_get_access(const char *real, int mode)
{
    int status;
    if (copper_cache_get(COPPER_OP_ACCESS, mode, real, &status, NULL, 0, NULL))
        return status;
    copper_access_req req = {mode, 0};
    char *data;
    size_t n;
    status = copper_request(COPPER_OP_ACCESS, &req, sizeof req, real, &data, &n);
    free(data);
    copper_cache_put(COPPER_OP_ACCESS, mode, real, status, NULL, 0);
    return status;
}

int copper_get_open(const char *real, uint32_t *kind, char *local, copper_stat *st)
{
    int cached;
    size_t clen = 0;
    const char *mirror = copper_mirror_root();
    /* A listing told us this file is in the mirror: open it there without asking. */
    if (mirror[0] != '\0') {
        int hit = copper_cache_get(COPPER_OP_OPEN, 0, real, &cached, st, sizeof *st, &clen);
        if (!hit && copper_prefetch_parent(real, 1))
            hit = copper_cache_get(COPPER_OP_OPEN, 0, real, &cached, st, sizeof *st, &clen);
        size_t ml = strlen(mirror), rl = strlen(real);
        if (hit && cached == 0 && clen == sizeof *st && ml + rl < COPPER_MAX_PATH) {
            memcpy(local, mirror, ml);
            memcpy(local + ml, real, rl + 1);
            *kind = COPPER_OPEN_FILE;
            return 0;
        }
    }
    return copper_ask_open(real, kind, local, st);
}

int copper_ask_open(const char *real, uint32_t *kind, char *local, copper_stat *st)
{
    char *data;
    size_t n;
    int status = copper_request(COPPER_OP_OPEN, NULL, 0, real, &data, &n);
    if (status == 0) {
        copper_open_reply rep;
        if (data == NULL || n < sizeof rep || n - sizeof rep >= COPPER_MAX_PATH) {
            free(data);
            return COPPER_S_FALLBACK;
        }
        memcpy(&rep, data, sizeof rep);
        memcpy(local, data + sizeof rep, n - sizeof rep);
        local[n - sizeof rep] = '\0';
        *kind = rep.kind;
        *st = rep.st;
        /* The reply describes the bytes the file now has: if it changed since this process
           stat'ed it, its metadata follows (a regular file's lstat is its stat). */
        copper_cache_replace(COPPER_OP_STAT, 0, real, 0, &rep.st, sizeof rep.st);
        copper_stat old;
        size_t olen = 0;
        int ostatus;
        if (rep.kind == COPPER_OPEN_FILE &&
            copper_cache_get(COPPER_OP_LSTAT, 0, real, &ostatus, &old, sizeof old, &olen) &&
            ostatus == 0 && olen == sizeof old && S_ISREG(old.mode))
            copper_cache_replace(COPPER_OP_LSTAT, 0, real, 0, &rep.st, sizeof rep.st);
    } else if (status > 0) {
        copper_cache_put(COPPER_OP_STAT, 0, real, status, NULL, 0);
    }
    free(data);
    return status;
}

void copper_fill_stat(const copper_stat *cs, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_dev = (dev_t)cs->dev;
    st->st_ino = (ino_t)cs->ino;
    st->st_nlink = (nlink_t)cs->nlink;
    st->st_mode = (mode_t)cs->mode;
    st->st_uid = (uid_t)cs->uid;
    st->st_gid = (gid_t)cs->gid;
    st->st_rdev = (dev_t)cs->rdev;
    st->st_size = (off_t)cs->size;
    st->st_blksize = (blksize_t)cs->blksize;
    st->st_blocks = (blkcnt_t)cs->blocks;
    st->st_atim.tv_sec = cs->atime_sec;
    st->st_atim.tv_nsec = cs->atime_nsec;
    st->st_mtim.tv_sec = cs->mtime_sec;
    st->st_mtim.tv_nsec = cs->mtime_nsec;
    st->st_ctim.tv_sec = cs->ctime_sec;
    st->st_ctim.tv_nsec = cs->ctime_nsec;
}
