/*
 * The shim's policy, in one place (Spindle's should_intercept.c):
 *   - what counts as a write: open flags, fopen modes, access modes;
 *   - what a read-only mount answers to a mutation (DESIGN decision 9, and the kernel's own
 *     order on a read-only super block): the path's own error first (ENOENT, ENOTDIR, ELOOP,
 *     EACCES, EEXIST, EISDIR), EROFS only once the path resolves; one function for every
 *     mutating call, so open(O_CREAT), mkdir, unlink, chmod and friends cannot drift apart;
 *   - when a directory is listed ahead of need (the __pycache__ rule).
 * Answers come from the same cache as stat, and from the real file system when the agent
 * cannot answer.
 */
#include "shim.h"

#include <errno.h>
#include <string.h>

#ifndef __O_TMPFILE
#define __O_TMPFILE 0
#endif

int copper_open_wants_write(int flags)
{
    return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_TRUNC | O_APPEND)) ||
           (__O_TMPFILE && (flags & __O_TMPFILE) == __O_TMPFILE);
}

int copper_fopen_flags(const char *mode)
{
    int flags = mode[0] == 'w' ? O_WRONLY | O_CREAT | O_TRUNC
              : mode[0] == 'a' ? O_WRONLY | O_CREAT | O_APPEND
                               : O_RDONLY;
    if (strchr(mode, '+'))
        flags = (flags & ~O_ACCMODE) | O_RDWR;
    if (strchr(mode, 'x'))
        flags |= O_EXCL;
    if (strchr(mode, 'e'))
        flags |= O_CLOEXEC;
    return flags;
}

int copper_access_wants_write(int mode)
{
    return (mode & W_OK) != 0;
}

uint32_t copper_list_ahead_flags(const char *dir, int for_open)
{
    /* Python reads bytecode from __pycache__ without ever listing it: there, one listing
     * (two operations on the file system, once per job) saves a round trip per module in
     * every later process. Elsewhere only a listing the agent already has is worth it. */
    size_t n = strlen(dir);
    int pycache = for_open && n >= 12 && strcmp(dir + n - 12, "/__pycache__") == 0;
    return pycache ? 0u : COPPER_LISTDIR_CACHED_ONLY;
}

/* stat (follow) or lstat of real: 0 and *mode, or a positive errno. */
static int probe(uint8_t op, const char *real, uint32_t *mode)
{
    copper_stat cs;
    int s = copper_get_stat(op, real, &cs);
    if (s == 0) {
        *mode = cs.mode;
        return 0;
    }
    if (s > 0)
        return s;
    struct stat st;
    if (REAL(fstatat)(AT_FDCWD, real, &st, op == COPPER_OP_LSTAT ? AT_SYMLINK_NOFOLLOW : 0) != 0)
        return errno;
    *mode = st.st_mode;
    return 0;
}

/* The error of reaching real's directory: it must exist, be a directory, and be searchable. */
static int parent_error(const char *real)
{
    const char *slash = strrchr(real, '/');
    if (slash == NULL || strcmp(real, "/") == 0)
        return 0;
    char parent[COPPER_MAX_PATH];
    size_t n = slash == real ? 1 : (size_t)(slash - real);
    memcpy(parent, real, n);
    parent[n] = '\0';
    uint32_t mode = 0;
    int e = probe(COPPER_OP_STAT, parent, &mode);
    if (e)
        return e;
    if (!S_ISDIR(mode))
        return ENOTDIR;
    int a = copper_get_access(parent, X_OK);
    if (a < 0)
        a = REAL(faccessat)(AT_FDCWD, parent, X_OK, 0) == 0 ? 0 : errno;
    return a;
}

int copper_readonly_errno(int kind, const char *real, int trailing)
{
    copper_in_shim++;
    int saved = errno;
    uint32_t mode = 0;
    int e;
    switch (kind) {
    case COPPER_MUT_OBJECT:
    case COPPER_MUT_OBJECT_NOFOLLOW:
    case COPPER_MUT_WRITE:
        /* "name/" follows a symlink even where the call itself would not. */
        e = probe(kind == COPPER_MUT_OBJECT_NOFOLLOW && !trailing ? COPPER_OP_LSTAT : COPPER_OP_STAT,
                  real, &mode);
        if (e == 0 && trailing && !S_ISDIR(mode))
            e = ENOTDIR;
        if (e == 0)
            e = kind == COPPER_MUT_WRITE && S_ISDIR(mode) ? EISDIR : EROFS;
        break;
    case COPPER_MUT_ENTRY:
    case COPPER_MUT_RENAME:
        e = parent_error(real);
        if (e == 0 && kind == COPPER_MUT_RENAME && trailing &&
            probe(COPPER_OP_LSTAT, real, &mode) == 0 &&
            (probe(COPPER_OP_STAT, real, &mode) != 0 || !S_ISDIR(mode)))
            e = ENOTDIR;
        if (e == 0)
            e = EROFS;
        break;
    case COPPER_MUT_CREATE:
    case COPPER_MUT_OPEN_EXCL:
        e = parent_error(real);
        if (e == 0 && kind == COPPER_MUT_OPEN_EXCL && trailing)
            e = EISDIR;
        if (e == 0)
            e = probe(COPPER_OP_LSTAT, real, &mode) == 0 ? EEXIST : EROFS;
        break;
    case COPPER_MUT_OPEN_CREAT:
        e = parent_error(real);
        if (e == 0 && trailing)
            e = EISDIR;
        if (e == 0) {
            e = probe(COPPER_OP_STAT, real, &mode);
            if (e == 0)
                e = S_ISDIR(mode) ? EISDIR : 0; /* an existing file: opening it is up to the flags */
            else if (e == ENOENT)
                e = EROFS; /* missing, or a dangling link: it would be created */
        }
        break;
    default:
        e = EROFS;
    }
    errno = saved;
    copper_in_shim--;
    return e;
}
