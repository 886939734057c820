/*
 * libcopper-audit.so: LD_AUDIT module. ld.so opens libraries with internal calls the
 * preload shim cannot see (DT_NEEDED through a Copper LD_LIBRARY_PATH, dlopen of
 * extension modules, $ORIGIN rpaths); la_objsearch rewrites those candidates:
 *   - under the prefix: OPEN through the agent -> the local materialized copy;
 *     a file-system error -> NULL (ld.so skips the candidate); agent unavailable -> the
 *     real path if it exists, else NULL (a missing candidate must not make ld.so mark
 *     the whole Copper directory as nonexistent);
 *   - under the node-local mirror root ($ORIGIN of a library loaded from the mirror):
 *     map back to the real path and OPEN it the same way;
 *   - anything else: returned unchanged.
 * Returned strings are malloc'ed and never freed: the loader may keep them.
 * This module lives in its own link-map namespace with its own libc; ld.so serializes
 * its calls, so the client uses one process-wide connection.
 */
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "copper_client.h"

static int initialized; /* ld.so serializes audit callbacks */

static void init_once(void)
{
    if (!initialized) {
        initialized = 1;
        copper_config_init();
    }
}

COPPER_EXPORT unsigned int la_version(unsigned int version)
{
    init_once();
    if (version == 0)
        return 0;
    return version < LAV_CURRENT ? version : LAV_CURRENT;
}

/* No symbol-binding audit (LA_FLG_BIND*): it would route every PLT call of the process
   through the audit trampolines. la_objsearch does not depend on these flags. */
COPPER_EXPORT unsigned int la_objopen(struct link_map *map, Lmid_t lmid, uintptr_t *cookie)
{
    (void)map;
    (void)lmid;
    (void)cookie;
    return 0;
}

/* Candidate for a Copper real path: malloc'ed local path, real path, or NULL. */
static char *lookup(const char *real)
{
    char *data = NULL;
    size_t len = 0;
    int s = copper_request(COPPER_OP_OPEN, NULL, 0, real, &data, &len);
    if (s == 0 && data != NULL && len > sizeof(copper_open_reply)) {
        copper_open_reply rep;
        memcpy(&rep, data, sizeof rep);
        if (rep.kind != COPPER_OPEN_FILE) {
            free(data);
            return NULL; /* a directory is never a library */
        }
        size_t n = len - sizeof rep;
        memmove(data, data + sizeof rep, n);
        data[n] = '\0';
        return data;
    }
    free(data);
    if (s > 0)
        return NULL;
    /* Copper cannot answer: the real path, if it is there at all. */
    if (access(real, F_OK) != 0)
        return NULL;
    return strdup(real);
}

COPPER_EXPORT char *la_objsearch(const char *name, uintptr_t *cookie, unsigned int flag)
{
    (void)cookie;
    (void)flag;
    if (name == NULL || name[0] != '/')
        return (char *)name;
    init_once();
    char real[COPPER_MAX_PATH];
    if (copper_under_prefix(name)) {
        if (copper_strip(name, real) != 0)
            return NULL;
        return lookup(real);
    }
    const char *mirror = copper_mirror_root();
    if (mirror[0] == '\0' && copper_cfg.prefix_len != 0) {
        /* We have not talked to the agent yet; a library the preload shim loaded from
           the mirror can already be here, so learn the mirror root (once; failures
           back off inside the client). */
        static int tried;
        if (!tried) {
            tried = 1;
            copper_ensure_connected();
        }
    }
    if (copper_mirror_to_real(name, real)) {
        char *local = lookup(real);
        return local; /* NULL when the real file does not exist */
    }
    return (char *)name;
}
