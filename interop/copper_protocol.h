/*
 * Copper wire protocol between an application-side client (libcopper-preload.so,
 * libcopper-audit.so, the `copper` tool) and the node's copper-agent.
 *
 * This header is the single definition. managed/Copper.Interop/Protocol.cs mirrors it,
 * and tests/ compile this header and compare every size, offset and constant with the
 * C# mirror, so the two cannot drift apart silently.
 *
 * Transport: a SOCK_STREAM Unix socket. Every message is one frame:
 *
 *    0        4     5     6        8             12
 *    +--------+-----+-----+--------+-------------+------------------------+
 *    | length | op  |flags| rsvd=0 | request id  | payload (length bytes) |
 *    +--------+-----+-----+--------+-------------+------------------------+
 *     u32 LE   u8    u8    u16      u32 LE
 *
 * `length` is the payload length only. A receiver checks it against
 * COPPER_MAX_PAYLOAD before it waits for the payload; a larger value, an unknown op,
 * non-zero reserved bits or a request before HELLO close that connection (and only it).
 *
 * The first request on a connection is HELLO (payload copper_hello). The agent answers
 * with HELLO | COPPER_REPLY (payload copper_hello_reply followed by the node-local
 * mirror root, not NUL-terminated). A client whose major version differs falls back to
 * the real file system.
 *
 * Every other request carries a path (the real path: prefix already stripped, absolute,
 * normalized, no NUL) after its fixed part. Every reply starts with copper_reply_head:
 * `status` is 0 or a positive errno from the file system (ENOENT, EACCES, ...: the
 * answer the application must see), or a negative COPPER_S_* value meaning "Copper
 * cannot answer this; use the real path".
 *
 * All integers are little-endian; all structs are packed by construction (every field
 * naturally aligned, explicit padding) so the C and C# layouts are identical.
 */
#ifndef COPPER_PROTOCOL_H
#define COPPER_PROTOCOL_H

#include <stdint.h>

#define COPPER_PROTOCOL_MAGIC 0x52505043u /* "CPPR" */
#define COPPER_PROTOCOL_MAJOR 1
#define COPPER_PROTOCOL_MINOR 1 /* 1: LISTDIRPLUS */

#define COPPER_HEADER_SIZE 12
#define COPPER_MAX_PAYLOAD (4u * 1024u * 1024u)
#define COPPER_MAX_PATH 4096 /* PATH_MAX, including the terminating NUL on the C side */

/* Request opcodes. A reply carries the request's opcode with COPPER_REPLY set. */
enum copper_op {
    COPPER_OP_HELLO = 1,    /* copper_hello -> copper_hello_reply + mirror root */
    COPPER_OP_STAT = 2,     /* path; follows symlinks  -> head + copper_stat */
    COPPER_OP_LSTAT = 3,    /* path                     -> head + copper_stat */
    COPPER_OP_READLINK = 4, /* path                     -> head + target bytes */
    COPPER_OP_ACCESS = 5,   /* copper_access_req + path -> head */
    COPPER_OP_LISTDIR = 6,  /* path -> head + u32 count + count x (copper_dirent + name) */
    COPPER_OP_OPEN = 7,     /* path; follows symlinks -> head + copper_open_reply + local path */
    COPPER_OP_PING = 8,     /* empty -> head (status 0) */
    COPPER_OP_STATS = 9,    /* empty -> head + UTF-8 JSON counters */
    /* copper_listdir_req + path -> head + u32 count + count x (copper_dirent_plus + name):
     * the listing plus what the agent already knows of each entry (its lstat, whether its
     * file is in the mirror), so a client answers those without asking again. With
     * COPPER_LISTDIR_CACHED_ONLY the agent answers COPPER_S_FALLBACK rather than fetch a
     * listing it does not have. Agents of minor >= 1. */
    COPPER_OP_LISTDIRPLUS = 10,
    /* path of a file -> head + UTF-8 message: the agent merges the manifest of what it asked
     * the file system (docs/manifest.md) into that file; `copper manifest save`. */
    COPPER_OP_MANIFESTSAVE = 11,
    COPPER_OP_MAX = 11
};

#define COPPER_REPLY 0x80u

/* Copper's own (negative) statuses: the client must use the real path. */
#define COPPER_S_FALLBACK (-1)  /* cannot answer (internal error, upstream unavailable) */
#define COPPER_S_TOO_BIG (-2)   /* file larger than the agent's -M: open the real path */
#define COPPER_S_TOO_LONG (-3)  /* reply would not fit in a frame */

typedef struct copper_frame_header {
    uint32_t length;
    uint8_t op;
    uint8_t flags;
    uint16_t reserved;
    uint32_t request_id;
} copper_frame_header;

typedef struct copper_hello {
    uint32_t magic;
    uint16_t major;
    uint16_t minor;
    uint32_t pid; /* client pid, for the agent's log */
    uint32_t reserved;
} copper_hello;

typedef struct copper_hello_reply {
    uint32_t magic;
    uint16_t major;
    uint16_t minor;
    uint32_t agent_pid;
    uint32_t node; /* this agent's node index (0 for a single node) */
    int64_t max_cacheable; /* the agent's -M in bytes */
} copper_hello_reply;

typedef struct copper_reply_head {
    int32_t status;
    uint32_t reserved;
} copper_reply_head;

/* The fields of struct stat an application can observe, fixed-width. */
typedef struct copper_stat {
    uint64_t dev;
    uint64_t ino;
    uint64_t nlink;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    uint32_t pad0;
    uint64_t rdev;
    int64_t size;
    int64_t blksize;
    int64_t blocks;
    int64_t atime_sec;
    int64_t atime_nsec;
    int64_t mtime_sec;
    int64_t mtime_nsec;
    int64_t ctime_sec;
    int64_t ctime_nsec;
} copper_stat;

typedef struct copper_access_req {
    int32_t mode; /* F_OK / R_OK / W_OK / X_OK bits */
    uint32_t reserved;
} copper_access_req;

typedef struct copper_dirent {
    uint64_t ino;
    uint8_t type; /* DT_* value */
    uint8_t pad0;
    uint16_t name_length; /* bytes of name that follow, no NUL */
    uint32_t pad1;
} copper_dirent;

#define COPPER_LISTDIR_CACHED_ONLY 1u

typedef struct copper_listdir_req {
    uint32_t flags; /* COPPER_LISTDIR_* */
    uint32_t reserved;
} copper_listdir_req;

typedef struct copper_dirent_plus {
    copper_dirent de;
    int32_t lstat_status; /* 0 or errno: the entry's lstat; COPPER_S_FALLBACK: not known */
    uint32_t open_kind;   /* COPPER_OPEN_FILE: materialized at <mirror root><path>; 0: not known */
    copper_stat st;       /* the entry's lstat when lstat_status == 0 */
} copper_dirent_plus;

/* OPEN reply kinds. */
enum copper_open_kind {
    COPPER_OPEN_FILE = 1, /* local path names the materialized copy of the file */
    COPPER_OPEN_DIR = 2   /* local path names the mirror directory standing for it */
};

typedef struct copper_open_reply {
    uint32_t kind;
    uint32_t reserved;
    copper_stat st; /* the real file's stat (after following symlinks) */
} copper_open_reply;

/*
 * Where the agent for a prefix listens. Both sides compute the same name:
 *   <runtime dir>/<16 lowercase hex digits of fnv1a64(prefix)>[.n<node>]/agent.sock
 * The runtime dir is $COPPER_RUNTIME_DIR, else /tmp/copper-run-<uid>. The per-prefix
 * directory is mode 0700.
 */
#define COPPER_FNV_OFFSET 0xcbf29ce484222325ull
#define COPPER_FNV_PRIME 0x100000001b3ull
#define COPPER_SOCKET_NAME "agent.sock"

static inline uint64_t copper_fnv1a64(const char *s)
{
    uint64_t h = COPPER_FNV_OFFSET;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= COPPER_FNV_PRIME;
    }
    return h;
}

#endif /* COPPER_PROTOCOL_H */
