/*
 * The agent connection. One connection per thread (COPPER_CONN_TLS; the audit module
 * builds with a single process-wide connection because ld.so serializes its calls),
 * tagged with the pid that opened it: after fork() the child never reuses the parent's
 * socket. Every failure becomes COPPER_S_FALLBACK, and after a failed connect nobody in
 * the process retries for a second, so a dead agent costs one clock read per call.
 */
#include "copper_client.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifdef COPPER_CONN_TLS
#define CONN_STORAGE static __thread __attribute__((tls_model("initial-exec")))
#else
#define CONN_STORAGE static
#endif

CONN_STORAGE int conn_fd = -1;   /* this thread's socket; -1 when none */
CONN_STORAGE pid_t conn_pid;     /* pid that opened conn_fd */
CONN_STORAGE uint32_t conn_next_id; /* next request id on conn_fd */

#ifdef COPPER_CONN_TLS
/* The preload shim learns of every fork through pthread_atfork, so it keeps the pid here
   instead of paying a getpid() system call per request. */
static pid_t current_pid; /* atomic; 0 until first use, reset in the atfork child handler */
static pid_t my_pid(void)
{
    pid_t p = __atomic_load_n(&current_pid, __ATOMIC_RELAXED);
    if (p == 0) {
        p = getpid();
        __atomic_store_n(&current_pid, p, __ATOMIC_RELAXED);
    }
    return p;
}
#else
/* The audit module lives in the loader's namespace, whose libc runs no fork handlers. */
static pid_t my_pid(void)
{
    return getpid();
}
#endif

static int64_t retry_after_ns;   /* monotonic time before which we do not reconnect (atomic) */
static char mirror_root[COPPER_MAX_PATH]; /* written once, before mirror_len is published */
static size_t mirror_len;        /* atomic; 0 until the first HELLO reply */
static int agent_minor;          /* atomic; the agent's protocol minor from HELLO */

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

static void conn_drop(void)
{
    if (conn_fd >= 0 && conn_pid == my_pid())
        close(conn_fd);
    conn_fd = -1;
}

void copper_client_atfork_child(void)
{
#ifdef COPPER_CONN_TLS
    __atomic_store_n(&current_pid, getpid(), __ATOMIC_RELAXED);
#endif
    /* The descriptor is still ours at this point (no application code ran yet). */
    if (conn_fd >= 0)
        close(conn_fd);
    conn_fd = -1;
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
static char *recv_frame(int fd, uint8_t op, uint32_t id, size_t *len)
{
    copper_frame_header h;
    if (read_full(fd, &h, COPPER_HEADER_SIZE) != 0)
        return NULL;
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

static int conn_open(void)
{
    if (copper_cfg.prefix_len == 0)
        return -1;
    int64_t t = now_ns();
    if (t < __atomic_load_n(&retry_after_ns, __ATOMIC_RELAXED))
        return -1;
    int saved = errno;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
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

    copper_hello hello = {COPPER_PROTOCOL_MAGIC, COPPER_PROTOCOL_MAJOR, COPPER_PROTOCOL_MINOR,
                          (uint32_t)getpid(), 0};
    if (send_frame(fd, COPPER_OP_HELLO, 0, &hello, sizeof hello, NULL) != 0)
        goto fail;
    size_t len = 0;
    char *rep = recv_frame(fd, COPPER_OP_HELLO, 0, &len);
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
    __atomic_store_n(&agent_minor, (int)hr.minor, __ATOMIC_RELAXED);
    size_t mlen = len - sizeof hr;
    if (__atomic_load_n(&mirror_len, __ATOMIC_ACQUIRE) == 0 && mlen > 0 && mlen < COPPER_MAX_PATH) {
        /* Racing threads write identical bytes; the length is published last. */
        while (mlen > 1 && rep[sizeof hr + mlen - 1] == '/')
            mlen--;
        memcpy(mirror_root, rep + sizeof hr, mlen);
        mirror_root[mlen] = '\0';
        __atomic_store_n(&mirror_len, mlen, __ATOMIC_RELEASE);
    }
    free(rep);
    conn_fd = fd;
    conn_pid = my_pid();
    conn_next_id = 1;
    errno = saved;
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    __atomic_store_n(&retry_after_ns, now_ns() + 1000000000, __ATOMIC_RELAXED);
    errno = saved;
    return -1;
}

static int conn_get(void)
{
    if (conn_fd >= 0 && conn_pid != my_pid())
        conn_fd = -1; /* inherited across a fork we did not see: not ours to use or close */
    if (conn_fd < 0 && conn_open() != 0)
        return -1;
    return 0;
}

int copper_ensure_connected(void)
{
    return conn_get();
}

int copper_request(uint8_t op, const void *fixed, size_t fixed_len, const char *path,
                   char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int saved = errno;
    if (conn_get() != 0)
        return COPPER_S_FALLBACK;
    uint32_t id = conn_next_id++;
    size_t rlen = 0;
    char *rep = NULL;
    if (send_frame(conn_fd, op, id, fixed, fixed_len, path) == 0)
        rep = recv_frame(conn_fd, op, id, &rlen);
    if (rep == NULL || rlen < sizeof(copper_reply_head)) {
        free(rep);
        conn_drop(); /* timeout, EOF or garbage: this connection is done */
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

int copper_agent_minor(void)
{
    return __atomic_load_n(&agent_minor, __ATOMIC_RELAXED);
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
