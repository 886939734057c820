/*
 * The agent connection, and what the client checks before it trusts an agent.
 *
 * Descriptors: a process holds at most COPPER_SLOTS connections (8 in the preload shim, 1
 * in the audit module, whose calls ld.so serializes), however many threads come and go: a
 * request takes a free slot, uses its connection and gives it back. Each connection's
 * descriptor is moved to a high number and its identity (device and inode of the socket)
 * is recorded; before every use the slot checks that the number still names that socket.
 * An application may close any descriptor (`exec 3>&-`, os.closerange, close_range,
 * daemonizing code) and reuse the number: then the slot forgets it, never reading,
 * writing or closing what is now the application's file. A slot also remembers the pid
 * that opened it: after a fork the child never reuses the parent's socket (fork handlers
 * close the parent's sockets in the child; a child made without them just forgets them).
 *
 * Trust (DESIGN decision 12): the socket's directory and the runtime directory above it
 * must be owned by the user with no group or other write bit, every directory above them
 * owned by the user or root and not writable by others unless sticky, the peer's uid
 * (SO_PEERCRED) must be the user's, and the mirror root the agent announces must pass the
 * same directory check. Anything else: the real paths, and one line on standard error.
 *
 * Every failure becomes COPPER_S_FALLBACK, and after a failed connect nobody in the
 * process retries for a second, so a dead agent costs one clock read per call.
 */
#include "copper_client.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#ifdef COPPER_CONN_TLS
#define COPPER_SLOTS 8
#else
#define COPPER_SLOTS 1
#endif

typedef struct conn_slot {
    int busy;          /* atomic: 1 while one request owns the slot */
    int fd;            /* owned by the holder of busy; -1 when none */
    pid_t pid;         /* process that opened fd (holder of busy) */
    uint64_t dev, ino; /* identity of fd's socket (holder of busy) */
    uint32_t next_id;  /* next request id on fd (holder of busy) */
} conn_slot;

static conn_slot slots[COPPER_SLOTS] = {[0 ... COPPER_SLOTS - 1] = {.fd = -1}};

/* The pid is asked every time (one cheap system call next to a round trip): a child made
   by a raw clone or fork system call runs no fork handlers, and must still never use its
   parent's connection. */
static pid_t my_pid(void)
{
    return getpid();
}

static int64_t retry_after_ns;   /* monotonic time before which we do not reconnect (atomic) */
static char mirror_root[COPPER_MAX_PATH]; /* written once, before mirror_len is published */
static size_t mirror_len;        /* atomic; 0 until the first trusted HELLO reply */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Returns 0 or -1 (errno from recv, or EPIPE on EOF). The agent answers a cached request
   in a few microseconds, while waking a thread blocked in recv on an idle core costs tens
   of microseconds on virtual and power-saving machines: so poll without blocking for up to
   50 us first, then block (the receive timeout still bounds the wait). */
static int read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    int64_t spin_until = now_ns() + 50000;
    while (len > 0) {
        int flags = spin_until ? MSG_DONTWAIT : 0;
        ssize_t r = recv(fd, p, len, flags);
        if (r < 0 && flags && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (now_ns() >= spin_until)
                spin_until = 0;
            continue;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            errno = EPIPE;
            return -1;
        }
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

/* MSG_NOSIGNAL: a dead agent must not kill the application with SIGPIPE. */
static int write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t r = send(fd, p, len, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

/* ---- descriptors we own ---- */

static int fd_identity(int fd, uint64_t *dev, uint64_t *ino)
{
    struct stat st;
    /* The raw system call: the preload shim wraps fstat, and this must never recurse. */
    if (syscall(SYS_fstat, fd, &st) != 0 || !S_ISSOCK(st.st_mode))
        return -1;
    *dev = (uint64_t)st.st_dev;
    *ino = (uint64_t)st.st_ino;
    return 0;
}

/* fd is read without holding the slot (a hint for slot_acquire), so it is written atomically. */
static void slot_set_fd(conn_slot *s, int fd)
{
    __atomic_store_n(&s->fd, fd, __ATOMIC_RELAXED);
}

/* Is the slot's descriptor still the socket this process opened? If not, forget it
   without touching the number (the application may own it now). Caller holds busy. */
static int slot_verified(conn_slot *s)
{
    if (s->fd < 0)
        return 0;
    uint64_t dev, ino;
    if (s->pid != my_pid() || fd_identity(s->fd, &dev, &ino) != 0 || dev != s->dev ||
        ino != s->ino) {
        slot_set_fd(s, -1);
        return 0;
    }
    return 1;
}

/* Closes the slot's connection if it is still ours, else just forgets it. */
static void slot_drop(conn_slot *s)
{
    int saved = errno;
    if (slot_verified(s))
        close(s->fd);
    slot_set_fd(s, -1);
    errno = saved;
}

/* A slot for one request: a free one with a connection if there is one, else any free
   one. With more concurrent requests than slots, wait (replies take microseconds); after
   as long as a reply may take, give up (the caller uses the real path). */
static conn_slot *slot_acquire(void)
{
    int64_t deadline = 0;
    for (unsigned spin = 0;; spin++) {
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < COPPER_SLOTS; i++) {
                conn_slot *s = &slots[i];
                if (pass == 0 && __atomic_load_n(&s->fd, __ATOMIC_RELAXED) < 0)
                    continue;
                int expected = 0;
                if (!__atomic_load_n(&s->busy, __ATOMIC_RELAXED) &&
                    __atomic_compare_exchange_n(&s->busy, &expected, 1, 0, __ATOMIC_ACQUIRE,
                                                __ATOMIC_RELAXED))
                    return s;
            }
        }
        if (spin < 64) {
            sched_yield();
            continue;
        }
        int64_t t = now_ns();
        if (deadline == 0)
            deadline = t + 10000000000ll;
        else if (t > deadline)
            return NULL;
        struct timespec nap = {0, 50000};
        nanosleep(&nap, NULL);
    }
}

static void slot_release(conn_slot *s)
{
    __atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE);
}

void copper_client_atfork_child(void)
{
    /* Only the forking thread survives: no slot is in use. The parent's sockets are
       closed here if they are still what they were (no application code ran yet). */
    for (int i = 0; i < COPPER_SLOTS; i++) {
        conn_slot *s = &slots[i];
        uint64_t dev, ino;
        if (s->fd >= 0 && fd_identity(s->fd, &dev, &ino) == 0 && dev == s->dev && ino == s->ino)
            close(s->fd);
        slot_set_fd(s, -1);
        __atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE);
    }
}

/* Moves a new descriptor above the numbers applications use (shells' `exec 3>`, the
   first files a program opens); keeps it where it is when there is no room up there. */
static int fd_move_high(int fd)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < 64)
        return fd;
    long lo = rl.rlim_cur >= 1024 ? 768 : (long)rl.rlim_cur / 2;
    if (fd >= lo)
        return fd;
    long hi = syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, lo);
    if (hi < 0)
        return fd;
    close(fd);
    return (int)hi;
}

/* ---- trust ---- */

static int say_once_done; /* atomic: one warning per process */

/* One line on standard error, once per process: the user must learn why Copper is not
   used, but an application must not be flooded. */
static void say_once(const char *fmt, ...)
{
    if (__atomic_exchange_n(&say_once_done, 1, __ATOMIC_RELAXED))
        return;
    char line[COPPER_MAX_PATH + 256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line - 1 ? (size_t)n : sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(2, line, len);
    (void)w;
}

static int raw_lstat(const char *path, struct stat *st, int follow)
{
    return (int)syscall(SYS_newfstatat, AT_FDCWD, path, st, follow ? 0 : AT_SYMLINK_NOFOLLOW);
}

int copper_dir_trusted(const char *dir, char *why, size_t cap)
{
    uid_t me = getuid();
    struct stat st;
    char path[COPPER_MAX_PATH];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path || dir[0] != '/') {
        snprintf(why, cap, "%s is not an absolute path", dir);
        return 0;
    }
    memcpy(path, dir, n + 1);
    while (n > 1 && path[n - 1] == '/')
        path[--n] = '\0';
    if (raw_lstat(path, &st, 0) != 0) {
        snprintf(why, cap, "%s cannot be examined (errno %d)", path, errno);
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, cap, "%s is not a directory", path);
        return 0;
    }
    if (st.st_uid != me) {
        snprintf(why, cap, "%s is owned by uid %u, not by uid %u", path, (unsigned)st.st_uid,
                 (unsigned)me);
        return 0;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(why, cap, "%s is writable by group or others (mode %04o)", path,
                 (unsigned)(st.st_mode & 07777));
        return 0;
    }
    /* Above it: nobody else may rename it away. Owned by the user or root, and not
       writable by others unless sticky (/tmp). A symlink there is followed once. */
    while (n > 1) {
        while (n > 1 && path[n - 1] != '/')
            n--;
        if (n > 1)
            n--;
        path[n] = '\0';
        if (raw_lstat(path, &st, 0) != 0 ||
            (S_ISLNK(st.st_mode) && (st.st_uid == 0 || st.st_uid == me) && raw_lstat(path, &st, 1) != 0)) {
            snprintf(why, cap, "%s cannot be examined (errno %d)", path, errno);
            return 0;
        }
        if (!S_ISDIR(st.st_mode) || (st.st_uid != 0 && st.st_uid != me) ||
            ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))) {
            snprintf(why, cap, "%s (uid %u, mode %04o) lets another user replace what is below it",
                     path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
            return 0;
        }
    }
    return 1;
}

/* The socket's directory and the runtime directory holding it (both Copper's). */
static int socket_dirs_trusted(char *why, size_t cap)
{
    char dir[COPPER_MAX_PATH];
    snprintf(dir, sizeof dir, "%s", copper_cfg.socket_path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) {
        snprintf(why, cap, "%s has no directory", dir);
        return 0;
    }
    *slash = '\0';
    /* copper_dir_trusted checks the runtime directory above as an ancestor; it must also
       be the user's own, so check it as a leaf too. */
    if (!copper_dir_trusted(dir, why, cap))
        return 0;
    slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (!copper_dir_trusted(dir, why, cap))
            return 0;
    }
    return 1;
}

static int peer_is_me(int fd, char *why, size_t cap)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len < sizeof cred) {
        snprintf(why, cap, "the agent's credentials cannot be read (errno %d)", errno);
        return 0;
    }
    if (cred.uid != getuid()) {
        snprintf(why, cap, "the process serving %s runs as uid %u, not as uid %u",
                 copper_cfg.socket_path, (unsigned)cred.uid, (unsigned)getuid());
        return 0;
    }
    return 1;
}

static int send_frame(int fd, uint8_t op, uint32_t id, const void *fixed, size_t fixed_len,
                      const char *path)
{
    char buf[COPPER_HEADER_SIZE + 16 + COPPER_MAX_PATH];
    size_t plen = path ? strlen(path) : 0;
    if (fixed_len > 16 || plen >= COPPER_MAX_PATH)
        return -1;
    copper_frame_header h = {(uint32_t)(fixed_len + plen), op, 0, 0, id};
    memcpy(buf, &h, COPPER_HEADER_SIZE);
    if (fixed_len)
        memcpy(buf + COPPER_HEADER_SIZE, fixed, fixed_len);
    if (plen)
        memcpy(buf + COPPER_HEADER_SIZE + fixed_len, path, plen);
    return write_full(fd, buf, COPPER_HEADER_SIZE + fixed_len + plen);
}

/* Reads one reply frame for (op, id). Returns payload (malloc'ed, +1 NUL) or NULL. */
static char *recv_frame(int fd, uint8_t op, uint32_t id, size_t *len, int *timed_out)
{
    copper_frame_header h;
    if (read_full(fd, &h, COPPER_HEADER_SIZE) != 0) {
        if (timed_out != NULL)
            *timed_out = errno == EAGAIN || errno == EWOULDBLOCK;
        return NULL;
    }
    if (h.op != (uint8_t)(op | COPPER_REPLY) || h.request_id != id || h.length > COPPER_MAX_PAYLOAD)
        return NULL;
    char *p = malloc((size_t)h.length + 1);
    if (p == NULL)
        return NULL;
    if (h.length && read_full(fd, p, h.length) != 0) {
        free(p);
        return NULL;
    }
    p[h.length] = '\0';
    *len = h.length;
    return p;
}

/* Opens a connection into the slot (caller holds busy). 0 on success. */
static int conn_open(conn_slot *s)
{
    if (copper_cfg.prefix_len == 0)
        return -1;
    int64_t t = now_ns();
    if (t < __atomic_load_n(&retry_after_ns, __ATOMIC_RELAXED))
        return -1;
    int saved = errno;
    char why[COPPER_MAX_PATH + 128];
    int fd = -1;
    if (!socket_dirs_trusted(why, sizeof why)) {
        say_once("copper: not using the agent for %s: %s; reading the real paths",
                 copper_cfg.prefix, why);
        goto fail;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    fd = fd_move_high(fd);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t n = strlen(copper_cfg.socket_path);
    if (n >= sizeof sa.sun_path)
        goto fail;
    memcpy(sa.sun_path, copper_cfg.socket_path, n + 1);
    /* A wedged agent must never hang the application: 10 s and we fall back. */
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int r;
    do
        r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        goto fail;
    if (!peer_is_me(fd, why, sizeof why)) {
        say_once("copper: not using the agent for %s: %s; reading the real paths",
                 copper_cfg.prefix, why);
        goto fail;
    }

    copper_hello hello = {COPPER_PROTOCOL_MAGIC, COPPER_PROTOCOL_MAJOR, COPPER_PROTOCOL_MINOR,
                          (uint32_t)getpid(), 0};
    if (send_frame(fd, COPPER_OP_HELLO, 0, &hello, sizeof hello, NULL) != 0)
        goto fail;
    size_t len = 0;
    char *rep = recv_frame(fd, COPPER_OP_HELLO, 0, &len, NULL);
    if (rep == NULL)
        goto fail;
    copper_hello_reply hr;
    if (len < sizeof hr) {
        free(rep);
        goto fail;
    }
    memcpy(&hr, rep, sizeof hr);
    if (hr.magic != COPPER_PROTOCOL_MAGIC || hr.major != COPPER_PROTOCOL_MAJOR) {
        free(rep);
        goto fail;
    }
    size_t mlen = len - sizeof hr;
    if (__atomic_load_n(&mirror_len, __ATOMIC_ACQUIRE) == 0) {
        char root[COPPER_MAX_PATH];
        if (mlen == 0 || mlen >= COPPER_MAX_PATH) {
            free(rep);
            goto fail;
        }
        while (mlen > 1 && rep[sizeof hr + mlen - 1] == '/')
            mlen--;
        memcpy(root, rep + sizeof hr, mlen);
        root[mlen] = '\0';
        /* Files are opened from the mirror by path: it must be as private as the socket. */
        if (!copper_dir_trusted(root, why, sizeof why)) {
            free(rep);
            say_once("copper: not using the agent for %s: its cache %s; reading the real paths",
                     copper_cfg.prefix, why);
            goto fail;
        }
        /* Racing threads write identical bytes; the length is published last. */
        memcpy(mirror_root, root, mlen + 1);
        __atomic_store_n(&mirror_len, mlen, __ATOMIC_RELEASE);
    }
    free(rep);
    if (fd_identity(fd, &s->dev, &s->ino) != 0)
        goto fail;
    slot_set_fd(s, fd);
    s->pid = my_pid();
    s->next_id = 1;
    errno = saved;
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    __atomic_store_n(&retry_after_ns, now_ns() + 1000000000, __ATOMIC_RELAXED);
    errno = saved;
    return -1;
}

int copper_ensure_connected(void)
{
    conn_slot *s = slot_acquire();
    if (s == NULL)
        return -1;
    int r = slot_verified(s) || conn_open(s) == 0 ? 0 : -1;
    slot_release(s);
    return r;
}

int copper_request(uint8_t op, const void *fixed, size_t fixed_len, const char *path,
                   char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int saved = errno;
    size_t rlen = 0;
    char *rep = NULL;
    /* A connection the agent closed while it was idle fails on first use: one more try on
       a new connection (requests only read, so asking twice is harmless). */
    for (int attempt = 0; attempt < 2 && rep == NULL; attempt++) {
        conn_slot *s = slot_acquire();
        if (s == NULL)
            break;
        int fresh = 0;
        if (!slot_verified(s)) {
            if (conn_open(s) != 0) {
                slot_release(s);
                break;
            }
            fresh = 1;
        }
        uint32_t id = s->next_id++;
        int timed_out = 0;
        if (send_frame(s->fd, op, id, fixed, fixed_len, path) == 0)
            rep = recv_frame(s->fd, op, id, &rlen, &timed_out);
        if (rep == NULL || rlen < sizeof(copper_reply_head)) {
            free(rep);
            rep = NULL;
            slot_drop(s); /* timeout, EOF or garbage: this connection is done */
            slot_release(s);
            if (fresh || timed_out)
                break;
            continue;
        }
        slot_release(s);
    }
    if (rep == NULL) {
        errno = saved;
        return COPPER_S_FALLBACK;
    }
    copper_reply_head head;
    memcpy(&head, rep, sizeof head);
    rlen -= sizeof head;
    if (rlen > 0) {
        memmove(rep, rep + sizeof head, rlen);
        rep[rlen] = '\0';
        *data = rep;
        *len = rlen;
    } else {
        free(rep);
    }
    errno = saved;
    return head.status;
}

const char *copper_mirror_root(void)
{
    return __atomic_load_n(&mirror_len, __ATOMIC_ACQUIRE) ? mirror_root : "";
}

int copper_mirror_to_real(const char *path, char *out)
{
    size_t n = __atomic_load_n(&mirror_len, __ATOMIC_ACQUIRE);
    if (n == 0 || path == NULL || strncmp(path, mirror_root, n) != 0 ||
        (path[n] != '/' && path[n] != '\0'))
        return 0;
    if (strlen(path) >= COPPER_MAX_PATH)
        return 0;
    return copper_normalize(path + n, out) == 0;
}
