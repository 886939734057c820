/*
 * Per-process cache of STAT / LSTAT / ACCESS / READLINK answers, negative ones too.
 * The job's view of the file system is a snapshot, so entries never expire; only an
 * OPEN reply naming a newer version of a file replaces what was cached of it.
 * cache_mutex is held only around table operations: never across a real call or a
 * socket round trip.
 */
#include "shim.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 4096

typedef struct entry {
    struct entry *next; /* protected by cache_mutex */
    uint64_t hash;
    uint8_t op;
    int mode;
    int status;
    size_t len;  /* bytes of data */
    char *data;  /* points into the same allocation, after path */
    char path[]; /* NUL-terminated real path */
} entry;

static pthread_mutex_t cache_mutex = PTHREAD_MUTEX_INITIALIZER;
static entry *buckets[NBUCKETS]; /* protected by cache_mutex */

static uint64_t key_hash(uint8_t op, int mode, const char *real)
{
    uint64_t h = copper_fnv1a64(real);
    h ^= (uint64_t)op * 0x9e3779b97f4a7c15ull ^ (uint64_t)(unsigned)mode << 40;
    return h;
}

int copper_cache_get(uint8_t op, int mode, const char *real, int *status, void *buf, size_t cap,
                     size_t *len)
{
    uint64_t h = key_hash(op, mode, real);
    int found = 0;
    pthread_mutex_lock(&cache_mutex);
    for (entry *e = buckets[h % NBUCKETS]; e; e = e->next) {
        if (e->hash == h && e->op == op && e->mode == mode && strcmp(e->path, real) == 0) {
            *status = e->status;
            size_t n = e->len < cap ? e->len : cap;
            if (n)
                memcpy(buf, e->data, n);
            if (len)
                *len = e->len;
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&cache_mutex);
    return found;
}

static void cache_insert(uint8_t op, int mode, const char *real, int status, const void *buf,
                         size_t len, int replace);

void copper_cache_put(uint8_t op, int mode, const char *real, int status, const void *buf,
                      size_t len)
{
    cache_insert(op, mode, real, status, buf, len, 0);
}

void copper_cache_replace(uint8_t op, int mode, const char *real, int status, const void *buf,
                          size_t len)
{
    cache_insert(op, mode, real, status, buf, len, 1);
}

static void cache_insert(uint8_t op, int mode, const char *real, int status, const void *buf,
                         size_t len, int replace)
{
    if (status < 0)
        return; /* Copper's own failures are not answers */
    size_t plen = strlen(real) + 1;
    entry *e = malloc(sizeof *e + plen + len);
    if (e == NULL)
        return;
    e->hash = key_hash(op, mode, real);
    e->op = op;
    e->mode = mode;
    e->status = status;
    e->len = len;
    memcpy(e->path, real, plen);
    e->data = e->path + plen;
    if (len)
        memcpy(e->data, buf, len);
    pthread_mutex_lock(&cache_mutex);
    entry **b = &buckets[e->hash % NBUCKETS];
    for (entry **at = b; *at; at = &(*at)->next) {
        entry *o = *at;
        if (o->hash == e->hash && o->op == op && o->mode == mode && strcmp(o->path, real) == 0) {
            if (!replace) {
                pthread_mutex_unlock(&cache_mutex);
                free(e);
                return;
            }
            /* Readers copy under the lock, so the old entry can go. */
            e->next = o->next;
            *at = e;
            pthread_mutex_unlock(&cache_mutex);
            free(o);
            return;
        }
    }
    e->next = *b;
    *b = e;
    pthread_mutex_unlock(&cache_mutex);
}

void copper_cache_atfork_child(void)
{
    /* Another thread may have held the lock at fork time; the table itself is intact
       because every update is a single pointer store under the lock. */
    pthread_mutex_init(&cache_mutex, NULL);
}
