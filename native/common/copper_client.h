/*
 * Client side of the Copper protocol, shared by libcopper-preload.so and
 * libcopper-audit.so: configuration (prefix, socket path), path policy (is a path
 * under the prefix, strip + normalize it) and the agent connection.
 *
 * Return convention: functions return 0 or a positive errno; copper_request returns
 * the reply status (0, positive errno from the file system, or a negative COPPER_S_*
 * value meaning "use the real path"). No function here touches errno on purpose
 * except through the libc calls it makes; callers save/restore errno at the boundary.
 */
#ifndef COPPER_CLIENT_H
#define COPPER_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "copper_protocol.h"

#define COPPER_EXPORT __attribute__((visibility("default")))

typedef struct copper_config {
    char prefix[COPPER_MAX_PATH]; /* normalized, no trailing '/'; written once at init */
    size_t prefix_len;            /* 0 => Copper disabled (bad prefix) */
    char socket_path[COPPER_MAX_PATH];
} copper_config;

/* Process-wide configuration; filled by copper_config_init (call once, before use). */
extern copper_config copper_cfg;
void copper_config_init(void);

/* True if path is the prefix itself or below it ("prefix" followed by '/' or end). */
static inline int copper_under_prefix(const char *path)
{
    size_t n = copper_cfg.prefix_len;
    return path != NULL && n != 0 && strncmp(path, copper_cfg.prefix, n) == 0 &&
           (path[n] == '/' || path[n] == '\0');
}

/*
 * Lexical normalization of an absolute path: collapse "//", ".", ".." (clamped at
 * "/"); no trailing '/' except for "/" itself. out has COPPER_MAX_PATH bytes.
 * Returns 0 or ENAMETOOLONG.
 */
int copper_normalize(const char *in, char *out);

/* path is under the prefix: out = normalized real path ("/" for the prefix). A real path
 * that is itself under the prefix is stripped again: Copper's view of the prefix is the
 * real root, so nothing resolves through its own mount. 0 or errno. */
int copper_strip(const char *path, char *out);

/* out = prefix + real path (real "/" gives the prefix itself). 0 or ENAMETOOLONG. */
int copper_unstrip(const char *real, char *out);

/*
 * The node-local mirror root announced by the agent in HELLO ("" until a connection
 * succeeded). If path is under it, out = the real path it stands for and 1 is returned.
 */
int copper_mirror_to_real(const char *path, char *out);
const char *copper_mirror_root(void);
/* Connect now if not connected (used to learn the mirror root). 0 on success. */
int copper_ensure_connected(void);

/*
 * Send one request (fixed part + path, path may be NULL) and wait for its reply.
 * Returns the reply status; on success *data (malloc'ed, NUL-terminated for
 * convenience, may be NULL if empty) and *len receive the bytes after
 * copper_reply_head. Connection trouble => COPPER_S_FALLBACK and *data == NULL.
 */
int copper_request(uint8_t op, const void *fixed, size_t fixed_len, const char *path,
                   char **data, size_t *len);

/* After fork, in the child: drop the parent's connections. */
void copper_client_atfork_child(void);

/*
 * May Copper trust dir? It must be a directory (not a symlink) owned by the user with no
 * group or other write bit, and every directory above it owned by the user or root and
 * not writable by others unless sticky. 1 if so; else 0 and a reason in why.
 */
int copper_dir_trusted(const char *dir, char *why, size_t cap);

#endif
