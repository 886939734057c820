/*
 * Internal interface of libcopper-preload.so.
 *
 * Every exported wrapper is: fast non-Copper check -> real function; otherwise a core
 * handle_*() returning a result, -errno, or COPPER_FALLTHROUGH ("call the real function
 * with the caller's arguments"). Only wrappers set errno.
 */
#ifndef COPPER_SHIM_H
#define COPPER_SHIM_H

/* We wrap readdir_r/readdir64_r because applications still call them. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utime.h>

#include "copper_client.h"

#define COPPER_FALLTHROUGH INT_MIN

/* Thread-local reentrancy guard: non-zero while the shim itself is running. */
extern __thread int copper_in_shim __attribute__((tls_model("initial-exec")));
extern int copper_ready; /* set once bindings and config are initialized */
void copper_init(void);

static inline void copper_check_init(void)
{
    if (__builtin_expect(!__atomic_load_n(&copper_ready, __ATOMIC_ACQUIRE), 0))
        copper_init();
}

/* Fast test used by every path wrapper: is this path possibly Copper's business? */
static inline int copper_is_path(const char *path)
{
    copper_check_init();
    return copper_in_shim == 0 && copper_under_prefix(path);
}

/*
 * In the shim already (a signal handler that interrupted it, or libc calling back into a
 * wrapper), a Copper path is not served, but it must still name the right file: the real
 * function gets the real path (the prefix stripped). Every wrapper's pass-through branch
 * starts with COPPER_PASS(path).
 */
const char *copper_guard_real(const char *path, char *buf);
#define COPPER_PASS(path)                                          \
    char copper_guard_buf_[COPPER_MAX_PATH];                       \
    if (__builtin_expect(copper_in_shim != 0, 0))                  \
        (path) = copper_guard_real((path), copper_guard_buf_)

/*
 * The one shape of every path wrapper (libfuse's "core returns an errno, the wrapper only
 * reports it"): not Copper's path -> the real function (with the real path if the shim is
 * already running on this thread); else the core handler's result: COPPER_FALLTHROUGH ->
 * the real function, -errno -> errno and -1, anything else is returned.
 */
#define COPPER_WRAP(type, dirfd, path, handle, realcall) \
    do {                                                  \
        if (!copper_is_at(dirfd, path)) {                 \
            COPPER_PASS(path);                            \
            return realcall;                              \
        }                                                 \
        int saved_ = errno;                               \
        type r_ = (handle);                               \
        if (r_ == COPPER_FALLTHROUGH) {                   \
            errno = saved_;                               \
            return realcall;                              \
        }                                                 \
        if (r_ < 0) {                                     \
            errno = (int)-r_;                             \
            return -1;                                    \
        }                                                 \
        return r_;                                        \
    } while (0)

/* Copper-dir fd bitmap: fds we returned for mirror directories (hint only). */
#define COPPER_FD_BITS 65536
void copper_dirfd_mark(int fd);
int copper_dirfd_marked(int fd);

/* Is (dirfd, path) relative to a Copper directory fd? Cheap test for *at wrappers. */
static inline int copper_is_at(int dirfd, const char *path)
{
    copper_check_init();
    if (copper_in_shim)
        return 0;
    if (path == NULL)
        return 0;
    if (path[0] == '/')
        return copper_under_prefix(path);
    return dirfd >= 0 && copper_dirfd_marked(dirfd);
}

/*
 * Resolve (dirfd, path) to a Copper real path (normalized, prefix stripped).
 * Returns 1 (Copper, real filled), 2 (the same, and path ended in "/" or "/.", which the
 * kernel resolves to a directory: real is one, symlinks followed), 0 (not Copper), or
 * -errno (ENOTDIR for "file/", the error of the path itself).
 */
int copper_resolve_at(int dirfd, const char *path, char *real);
/* The trailing-slash rule on its own, for families that use copper_strip: 0 (no trailing
 * "/" or "/."), 1 (there is one and real is a directory), or -errno. */
int copper_trailing_dir(const char *path, const char *real);
/* What a trailing slash asks of real: 0 if it is a directory (symlinks followed), else
 * -ENOTDIR or the error of reaching it. */
int copper_require_dir(const char *real);
/* Is fd a directory whose /proc/self/fd link lies under the mirror root? 1 + real path. */
int copper_fd_real(int fd, char *real);

/* Stat-family helpers over the per-process cache and the agent. Return 0, errno, or <0. */
int copper_get_stat(uint8_t op, const char *real, copper_stat *st);
int copper_get_readlink(const char *real, char *buf, size_t cap, size_t *len);
int copper_get_access(const char *real, int mode);
/* OPEN request. Returns 0 (kind + local path + st filled), errno, or <0 fallback. */
int copper_get_open(const char *real, uint32_t *kind, char *local, copper_stat *st);
/* Process-cache keys that are not protocol ops (see intercept_dir.c). */
#define COPPER_CK_LISTED 0x40u   /* the directory's complete listing was absorbed */
#define COPPER_CK_NAME 0x41u     /* the path is an entry of an absorbed listing */
#define COPPER_CK_PREFETCH 0x42u /* a cached-only listing of the directory was asked for */

/* Absorbs a LISTDIRPLUS payload of real into the process cache. */
void copper_absorb_listing(const char *real, const char *data, size_t len);
/*
 * On a miss for real: once per directory, ask the agent for the parent's listing if it
 * already has it (no file-system operation; for an open in a __pycache__ directory, even
 * if it must fetch it), and absorb it. Returns 1 if real's parent has an absorbed listing
 * (then a name not in it does not exist).
 */
int copper_prefetch_parent(const char *real, int for_open);
/* The same, always asking the agent (when a remembered mirror copy cannot be opened). */
int copper_ask_open(const char *real, uint32_t *kind, char *local, copper_stat *st);

void copper_fill_stat(const copper_stat *cs, struct stat *st);

/* Per-process answer cache (cache.c). */
int copper_cache_get(uint8_t op, int mode, const char *real, int *status, void *buf, size_t cap,
                     size_t *len);
void copper_cache_put(uint8_t op, int mode, const char *real, int status, const void *buf,
                      size_t len);
/* The same, replacing an existing entry (a file's metadata once its bytes are known). */
void copper_cache_replace(uint8_t op, int mode, const char *real, int status, const void *buf,
                          size_t len);
void copper_cache_atfork_child(void);

/* ---- policy (policy.c) ---- */
/* Do these open flags ask for writing (write access, O_TRUNC, O_APPEND, O_TMPFILE)? */
int copper_open_wants_write(int flags);
/* The open flags an fopen mode means ("r", "w+", "ae", "wx", ...). */
int copper_fopen_flags(const char *mode);
/* Does this access mode ask for writing? */
int copper_access_wants_write(int mode);
/* LISTDIRPLUS flags for listing dir ahead of need, on a miss below it (open: for_open). */
uint32_t copper_list_ahead_flags(const char *dir, int for_open);
/*
 * Mutations: the errno a read-only mount gives (never 0, except COPPER_MUT_OPEN_CREAT of an
 * existing non-directory, which the caller then opens or refuses by its access mode).
 * trailing: the path as written ended in "/" or "/.".
 */
enum copper_mut_kind {
    COPPER_MUT_OBJECT,          /* changes the object, following symlinks: chmod, chown, utime */
    COPPER_MUT_OBJECT_NOFOLLOW, /* the same, not following: lchown, lutimes, lsetxattr */
    COPPER_MUT_WRITE,           /* opens or truncates it for writing: EISDIR on a directory */
    COPPER_MUT_ENTRY,           /* removes or replaces the entry: unlink, rmdir, rename target */
    COPPER_MUT_RENAME,          /* rename source: "file/" is ENOTDIR */
    COPPER_MUT_CREATE,          /* creates the entry: mkdir, mknod, symlink, link target */
    COPPER_MUT_OPEN_CREAT,      /* open with O_CREAT */
    COPPER_MUT_OPEN_EXCL,       /* open with O_CREAT | O_EXCL */
};
int copper_readonly_errno(int kind, const char *real, int trailing);
/* copper_resolve_at without the trailing-slash check: 1 and *trailing, 0, or -errno. */
int copper_resolve_raw(int dirfd, const char *path, char *real, int *trailing);

/* Core open used by open*, fopen*, dirfd. Returns fd, -errno. real is a Copper real path. */
int copper_open_real(const char *real, int flags, mode_t mode, int trailing);
/* Core stat by real path (for *stat wrappers and realpath). */

/* ---- binding table ---- */
#define COPPER_SYMBOLS(X) \
    X(open) X(open64) X(openat) X(openat64) X(__open_2) X(__open64_2) X(__openat_2) \
    X(__openat64_2) X(creat) X(creat64) \
    X(stat) X(stat64) X(lstat) X(lstat64) X(fstatat) X(fstatat64) X(statx) \
    X(__xstat) X(__xstat64) X(__lxstat) X(__lxstat64) X(__fxstatat) X(__fxstatat64) \
    X(access) X(faccessat) X(eaccess) X(euidaccess) \
    X(readlink) X(readlinkat) \
    X(opendir) X(fdopendir) X(readdir) X(readdir64) X(readdir_r) X(readdir64_r) X(closedir) \
    X(dirfd) X(rewinddir) X(telldir) X(seekdir) X(scandir) X(scandir64) \
    X(fopen) X(fopen64) X(freopen) X(freopen64) \
    X(realpath) X(canonicalize_file_name) X(__realpath_chk) \
    X(dlopen) X(dlmopen) \
    X(execve) X(execv) X(execvp) X(execvpe) X(posix_spawn) X(posix_spawnp) X(fork) \
    X(mkdir) X(mkdirat) X(unlink) X(unlinkat) X(rmdir) X(rename) X(renameat) X(renameat2) \
    X(link) X(linkat) X(symlink) X(symlinkat) X(truncate) X(truncate64) X(chmod) X(fchmodat) \
    X(chown) X(lchown) X(fchownat) X(utime) X(utimes) X(lutimes) X(utimensat) X(futimesat) \
    X(mknod) X(mknodat) X(setxattr) X(lsetxattr) X(removexattr) X(lremovexattr) \
    X(dup) X(dup2) X(dup3) X(fcntl) X(fcntl64) \
    X(fstat) X(fstat64) X(getxattr) X(lgetxattr) X(listxattr) X(llistxattr)

/* Prototypes glibc 2.36 headers no longer (or only under fortify) declare. */
int __open_2(const char *, int);
int __open64_2(const char *, int);
int __openat_2(int, const char *, int);
int __openat64_2(int, const char *, int);
int __xstat(int, const char *, struct stat *);
int __xstat64(int, const char *, struct stat64 *);
int __lxstat(int, const char *, struct stat *);
int __lxstat64(int, const char *, struct stat64 *);
int __fxstat(int, int, struct stat *);
int __fxstat64(int, int, struct stat64 *);
int __fxstatat(int, int, const char *, struct stat *, int);
int __fxstatat64(int, int, const char *, struct stat64 *, int);
char *__realpath_chk(const char *, char *, size_t);

#define COPPER_DECLARE_REAL(name) extern __typeof__(name) *real_##name;
COPPER_SYMBOLS(COPPER_DECLARE_REAL)

/* The real function (an ENOSYS stub if dlsym could not resolve it). */
#define REAL(name) (copper_check_init(), real_##name)
#endif
