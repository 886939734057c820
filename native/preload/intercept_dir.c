/*
 * Directories: opendir, fdopendir, readdir(64), readdir(64)_r, closedir, dirfd,
 * rewinddir, telldir, seekdir, scandir(64); plus dup/dup2/dup3/fcntl(F_DUPFD*) so a
 * duplicated Copper directory fd stays recognizable to the *at wrappers.
 *
 * A Copper DIR is our own struct. It starts with a 64-bit magic whose low 32 bits, read
 * as glibc's DIR (which starts with `int fd`), are a negative fd, so the wrappers tell
 * ours from glibc's with one load and no lock. Entries come from LISTDIRPLUS, with "." and
 * ".." first like the kernel. Like glibc, a DIR must not be used from two threads at once.
 * Return/errno contract of every export: that of the wrapped function.
 */
#include "shim.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* "CPPC" + 0xC0FFEE5E: the low 32 bits have the sign bit set (a negative "fd"). */
#define COPPER_DIR_MAGIC 0x434f5050c0ffee5eull

typedef struct copper_dir {
    uint64_t magic;  /* COPPER_DIR_MAGIC; must stay first */
    int fd;          /* mirror-dir fd (owned), -1 until dirfd() asks */
    long pos;        /* 0 ".", 1 "..", 2 + i: agent entry i */
    size_t count;    /* agent entries (without "." / "..") */
    char *data;      /* LISTDIRPLUS payload (owned) */
    size_t *offsets; /* offset of each entry's copper_dirent_plus in data (owned); the name follows */
    uint64_t dot_ino, dotdot_ino;
    char real[COPPER_MAX_PATH];
    union {
        struct dirent d;
        struct dirent64 d64;
    } ent;
} copper_dir;

_Static_assert(sizeof(struct dirent) == sizeof(struct dirent64), "dirent layouts differ");
_Static_assert(offsetof(struct dirent, d_name) == offsetof(struct dirent64, d_name), "dirent");

static inline copper_dir *as_copper(void *dirp)
{
    if (dirp != NULL && *(int *)dirp < 0 && ((copper_dir *)dirp)->magic == COPPER_DIR_MAGIC)
        return dirp;
    return NULL;
}

static uint64_t ino_of(const char *real)
{
    copper_stat st;
    return copper_get_stat(COPPER_OP_STAT, real, &st) == 0 ? st.ino : 1;
}

/*
 * What a LISTDIRPLUS entry tells about the entry itself goes into the process cache: that
 * it exists, its lstat (and stat, when it is not a symlink), and that its file is in the
 * mirror, so stat() and open() of listed files need no round trip.
 */
static void remember_entry(const char *real, const copper_dirent_plus *dp, const char *name)
{
    char child[COPPER_MAX_PATH];
    size_t rl = strlen(real);
    if (rl + 1 + dp->de.name_length >= sizeof child)
        return;
    memcpy(child, real, rl);
    size_t at = rl;
    if (rl != 1)
        child[at++] = '/';
    memcpy(child + at, name, dp->de.name_length);
    child[at + dp->de.name_length] = '\0';
    copper_cache_put(COPPER_CK_NAME, 0, child, 0, NULL, 0);
    if (dp->lstat_status >= 0) {
        copper_cache_put(COPPER_OP_LSTAT, 0, child, dp->lstat_status, &dp->st,
                         dp->lstat_status == 0 ? sizeof dp->st : 0);
        if (dp->lstat_status == 0 && !S_ISLNK(dp->st.mode))
            copper_cache_put(COPPER_OP_STAT, 0, child, 0, &dp->st, sizeof dp->st);
    }
    if (dp->open_kind == COPPER_OPEN_FILE && dp->lstat_status == 0 && S_ISREG(dp->st.mode))
        copper_cache_put(COPPER_OP_OPEN, 0, child, 0, &dp->st, sizeof dp->st);
}

/* Walks a LISTDIRPLUS payload: fills offs (if given) with each entry's offset, absorbs the
 * entries into the process cache; returns the number of entries. */
static size_t walk_listing(const char *real, const char *data, size_t len, size_t *offs)
{
    const size_t esize = sizeof(copper_dirent_plus);
    uint32_t n;
    memcpy(&n, data, 4);
    size_t off = 4, count = 0;
    int complete = 1;
    for (uint32_t i = 0; i < n; i++) {
        copper_dirent_plus dp;
        if (off + esize > len || (memcpy(&dp, data + off, esize), off + esize + dp.de.name_length > len)) {
            complete = 0;
            break;
        }
        const char *name = data + off + esize;
        int dots = (dp.de.name_length == 1 && name[0] == '.') ||
                   (dp.de.name_length == 2 && name[0] == '.' && name[1] == '.');
        if (!dots && dp.de.name_length > 0 && dp.de.name_length <= 255 &&
            memchr(name, '/', dp.de.name_length) == NULL) {
            if (offs)
                offs[count] = off;
            count++;
            remember_entry(real, &dp, name);
        }
        off += esize + dp.de.name_length;
    }
    if (complete)
        copper_cache_put(COPPER_CK_LISTED, 0, real, 0, NULL, 0);
    return count;
}

void copper_absorb_listing(const char *real, const char *data, size_t len)
{
    if (data != NULL && len >= 4)
        walk_listing(real, data, len, NULL);
}

int copper_prefetch_parent(const char *real, int for_open)
{
    char parent[COPPER_MAX_PATH];
    const char *slash = strrchr(real, '/');
    if (slash == NULL || slash == real)
        snprintf(parent, sizeof parent, "/");
    else
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - real), real);
    if (strcmp(real, "/") == 0)
        return 0;
    int st;
    if (copper_cache_get(COPPER_CK_LISTED, 0, parent, &st, NULL, 0, NULL))
        return 1;
    if (copper_cache_get(COPPER_CK_PREFETCH, 0, parent, &st, NULL, 0, NULL))
        return 0;
    copper_cache_put(COPPER_CK_PREFETCH, 0, parent, 0, NULL, 0);
    copper_listdir_req req = {copper_list_ahead_flags(parent, for_open), 0};
    char *data;
    size_t len;
    if (copper_request(COPPER_OP_LISTDIRPLUS, &req, sizeof req, parent, &data, &len) == 0)
        copper_absorb_listing(parent, data, len);
    free(data);
    return copper_cache_get(COPPER_CK_LISTED, 0, parent, &st, NULL, 0, NULL);
}

/* LISTDIRPLUS real into a new copper_dir. Returns it, or NULL with *err (errno or <0). */
static copper_dir *dir_load(const char *real, int *err)
{
    char *data;
    size_t len;
    copper_listdir_req req = {0, 0};
    int s = copper_request(COPPER_OP_LISTDIRPLUS, &req, sizeof req, real, &data, &len);
    if (s != 0 || data == NULL || len < 4) {
        free(data);
        *err = s != 0 ? s : COPPER_S_FALLBACK;
        return NULL;
    }
    uint32_t n;
    memcpy(&n, data, 4);
    copper_dir *d = calloc(1, sizeof *d);
    size_t *offs = calloc(n ? n : 1, sizeof *offs);
    if (d == NULL || offs == NULL) {
        free(d);
        free(offs);
        free(data);
        *err = ENOMEM;
        return NULL;
    }
    size_t count = walk_listing(real, data, len, offs);
    d->magic = COPPER_DIR_MAGIC;
    d->fd = -1;
    d->count = count;
    d->data = data;
    d->offsets = offs;
    snprintf(d->real, sizeof d->real, "%s", real);
    d->dot_ino = ino_of(real);
    char parent[COPPER_MAX_PATH];
    snprintf(parent, sizeof parent, "%s/..", real);
    char np[COPPER_MAX_PATH];
    d->dotdot_ino = copper_normalize(parent, np) == 0 ? ino_of(np) : 1;
    return d;
}

static void dir_free(copper_dir *d)
{
    d->magic = 0;
    free(d->data);
    free(d->offsets);
    free(d);
}

/* Fill d->ent for the current position and advance. NULL at the end. */
static struct dirent64 *dir_next(copper_dir *d)
{
    struct dirent64 *e = &d->ent.d64;
    long p = d->pos;
    if (p < 0 || (size_t)p >= d->count + 2)
        return NULL;
    memset(e, 0, offsetof(struct dirent64, d_name));
    if (p < 2) {
        e->d_ino = p == 0 ? d->dot_ino : d->dotdot_ino;
        e->d_type = DT_DIR;
        strcpy(e->d_name, p == 0 ? "." : "..");
    } else {
        copper_dirent de;
        size_t off = d->offsets[p - 2];
        memcpy(&de, d->data + off, sizeof de);
        e->d_ino = de.ino ? de.ino : 1;
        e->d_type = de.type;
        memcpy(e->d_name, d->data + off + sizeof(copper_dirent_plus), de.name_length);
        e->d_name[de.name_length] = '\0';
    }
    d->pos = p + 1;
    e->d_off = d->pos;
    e->d_reclen = sizeof *e;
    return e;
}

/* Opens the mirror directory for dirfd(); falls back to the real directory. */
static int dir_fd(copper_dir *d)
{
    if (d->fd >= 0)
        return d->fd;
    uint32_t kind = 0;
    char local[COPPER_MAX_PATH];
    copper_stat st;
    int fd = -1;
    if (copper_get_open(d->real, &kind, local, &st) == 0 && kind == COPPER_OPEN_DIR) {
        fd = REAL(open)(local, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0)
            copper_dirfd_mark(fd);
    }
    if (fd < 0)
        fd = REAL(open)(d->real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    d->fd = fd;
    return fd;
}

COPPER_EXPORT DIR *opendir(const char *path)
{
    if (!copper_is_path(path)) {
        COPPER_PASS(path);
        return REAL(opendir)(path);
    }
    int saved = errno;
    char real[COPPER_MAX_PATH];
    int r = copper_strip(path, real);
    if (r != 0) {
        errno = r;
        return NULL;
    }
    copper_in_shim++;
    int err = 0;
    copper_dir *d = dir_load(real, &err);
    copper_in_shim--;
    if (d != NULL) {
        errno = saved;
        return (DIR *)d;
    }
    if (err > 0) {
        errno = err;
        return NULL;
    }
    errno = saved;
    return REAL(opendir)(real);
}

COPPER_EXPORT DIR *fdopendir(int fd)
{
    copper_check_init();
    if (copper_in_shim || copper_mirror_root()[0] == '\0')
        return REAL(fdopendir)(fd);
    int saved = errno;
    char real[COPPER_MAX_PATH];
    copper_in_shim++;
    copper_dir *d = NULL;
    int err = 0;
    if (copper_fd_real(fd, real))
        d = dir_load(real, &err);
    copper_in_shim--;
    errno = saved;
    if (d == NULL)
        return REAL(fdopendir)(fd);
    d->fd = fd; /* fdopendir takes ownership; closedir closes it */
    copper_dirfd_mark(fd);
    return (DIR *)d;
}

COPPER_EXPORT struct dirent *readdir(DIR *dirp)
{
    copper_dir *d = as_copper(dirp);
    if (d == NULL)
        return REAL(readdir)(dirp);
    return (struct dirent *)dir_next(d);
}

COPPER_EXPORT struct dirent64 *readdir64(DIR *dirp)
{
    copper_dir *d = as_copper(dirp);
    if (d == NULL)
        return REAL(readdir64)(dirp);
    return dir_next(d);
}

COPPER_EXPORT int readdir_r(DIR *dirp, struct dirent *entry, struct dirent **result)
{
    copper_dir *d = as_copper(dirp);
    if (d == NULL)
        return REAL(readdir_r)(dirp, entry, result);
    struct dirent64 *e = dir_next(d);
    if (e == NULL) {
        *result = NULL;
        return 0;
    }
    memcpy(entry, e, sizeof *entry);
    *result = entry;
    return 0;
}

COPPER_EXPORT int readdir64_r(DIR *dirp, struct dirent64 *entry, struct dirent64 **result)
{
    copper_dir *d = as_copper(dirp);
    if (d == NULL)
        return REAL(readdir64_r)(dirp, entry, result);
    struct dirent64 *e = dir_next(d);
    if (e == NULL) {
        *result = NULL;
        return 0;
    }
    memcpy(entry, e, sizeof *entry);
    *result = entry;
    return 0;
}

COPPER_EXPORT int closedir(DIR *dirp)
{
    copper_dir *d = as_copper(dirp);
    if (d == NULL)
        return REAL(closedir)(dirp);
    int r = d->fd >= 0 ? close(d->fd) : 0;
    dir_free(d);
    return r;
}

COPPER_EXPORT int dirfd(DIR *dirp)
{
    copper_dir *d = as_copper(dirp);
    if (d == NULL)
        return REAL(dirfd)(dirp);
    int saved = errno;
    copper_in_shim++;
    int fd = dir_fd(d);
    copper_in_shim--;
    if (fd < 0) {
        errno = -fd;
        return -1;
    }
    errno = saved;
    return fd;
}

COPPER_EXPORT void rewinddir(DIR *dirp)
{
    copper_dir *d = as_copper(dirp);
    if (d == NULL) {
        REAL(rewinddir)(dirp);
        return;
    }
    d->pos = 0;
}

COPPER_EXPORT long telldir(DIR *dirp)
{
    copper_dir *d = as_copper(dirp);
    if (d == NULL)
        return REAL(telldir)(dirp);
    return d->pos;
}

COPPER_EXPORT void seekdir(DIR *dirp, long loc)
{
    copper_dir *d = as_copper(dirp);
    if (d == NULL) {
        REAL(seekdir)(dirp, loc);
        return;
    }
    d->pos = loc;
}

/* scandir over our own opendir/readdir. Returns count or -errno. */
#define SCANDIR_IMPL(name, dirent_t, readfn)                                                 \
    static int name(const char *path, dirent_t ***namelist,                                  \
                    int (*filter)(const dirent_t *),                                         \
                    int (*compar)(const dirent_t **, const dirent_t **))                     \
    {                                                                                        \
        DIR *dp = opendir(path);                                                             \
        if (dp == NULL)                                                                      \
            return -errno;                                                                   \
        dirent_t **list = NULL, *e;                                                          \
        size_t n = 0, cap = 0;                                                               \
        int err = 0;                                                                         \
        while ((e = readfn(dp)) != NULL) {                                                   \
            if (filter != NULL && !filter(e))                                                \
                continue;                                                                    \
            if (n == cap) {                                                                  \
                cap = cap ? cap * 2 : 16;                                                    \
                dirent_t **nl = realloc(list, cap * sizeof *nl);                             \
                if (nl == NULL) {                                                            \
                    err = ENOMEM;                                                            \
                    break;                                                                   \
                }                                                                            \
                list = nl;                                                                   \
            }                                                                                \
            dirent_t *c = malloc(sizeof *c);                                                 \
            if (c == NULL) {                                                                 \
                err = ENOMEM;                                                                \
                break;                                                                       \
            }                                                                                \
            memcpy(c, e, sizeof *c);                                                         \
            list[n++] = c;                                                                   \
        }                                                                                    \
        closedir(dp);                                                                        \
        if (err) {                                                                           \
            while (n > 0)                                                                    \
                free(list[--n]);                                                             \
            free(list);                                                                      \
            return -err;                                                                     \
        }                                                                                    \
        if (compar != NULL && n > 1)                                                         \
            qsort(list, n, sizeof *list, (int (*)(const void *, const void *))(void *)compar); \
        *namelist = list;                                                                    \
        return (int)n;                                                                       \
    }

SCANDIR_IMPL(scan_copper, struct dirent, readdir)
SCANDIR_IMPL(scan_copper64, struct dirent64, readdir64)

COPPER_EXPORT int scandir(const char *path, struct dirent ***namelist,
                          int (*filter)(const struct dirent *),
                          int (*compar)(const struct dirent **, const struct dirent **))
{
    if (!copper_is_path(path)) {
        COPPER_PASS(path);
        return REAL(scandir)(path, namelist, filter, compar);
    }
    int saved = errno;
    int r = scan_copper(path, namelist, filter, compar);
    if (r < 0) {
        errno = -r;
        return -1;
    }
    errno = saved;
    return r;
}

COPPER_EXPORT int scandir64(const char *path, struct dirent64 ***namelist,
                            int (*filter)(const struct dirent64 *),
                            int (*compar)(const struct dirent64 **, const struct dirent64 **))
{
    if (!copper_is_path(path)) {
        COPPER_PASS(path);
        return REAL(scandir64)(path, namelist, filter, compar);
    }
    int saved = errno;
    int r = scan_copper64(path, namelist, filter, compar);
    if (r < 0) {
        errno = -r;
        return -1;
    }
    errno = saved;
    return r;
}

/* ---- keep Copper-dir marks on duplicated descriptors ---- */

COPPER_EXPORT int dup(int fd)
{
    int r = REAL(dup)(fd);
    if (r >= 0 && fd >= 0 && copper_dirfd_marked(fd))
        copper_dirfd_mark(r);
    return r;
}

COPPER_EXPORT int dup2(int fd, int fd2)
{
    int r = REAL(dup2)(fd, fd2);
    if (r >= 0 && fd >= 0 && copper_dirfd_marked(fd))
        copper_dirfd_mark(r);
    return r;
}

COPPER_EXPORT int dup3(int fd, int fd2, int flags)
{
    int r = REAL(dup3)(fd, fd2, flags);
    if (r >= 0 && fd >= 0 && copper_dirfd_marked(fd))
        copper_dirfd_mark(r);
    return r;
}

/* Every fcntl third argument fits in a pointer-sized register on Linux. */
#define FCNTL_BODY(realfn)                                                         \
    va_list ap;                                                                    \
    va_start(ap, cmd);                                                             \
    void *arg = va_arg(ap, void *);                                                \
    va_end(ap);                                                                    \
    int r = REAL(realfn)(fd, cmd, arg);                                            \
    if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && fd >= 0 &&         \
        copper_dirfd_marked(fd))                                                   \
        copper_dirfd_mark(r);                                                      \
    return r;

COPPER_EXPORT int fcntl(int fd, int cmd, ...)
{
    FCNTL_BODY(fcntl)
}

COPPER_EXPORT int fcntl64(int fd, int cmd, ...)
{
    FCNTL_BODY(fcntl64)
}
