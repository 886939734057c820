/*
 * dlopen, dlmopen. A Copper path is opened (materialized) through the agent and the
 * local copy is loaded. Anything else is a tail call to the real function, so glibc
 * still sees the application's return address (RUNPATH of the caller, namespace).
 * Dependencies of a library loaded from the mirror are found by libcopper-audit.so.
 * Return contract: that of dlopen(3) (errors through dlerror()).
 */
#include "shim.h"

#include <errno.h>
#include <string.h>

/* Returns the path to hand to the loader: local copy, real path, or the original. */
static __attribute__((noinline)) const char *dl_target(const char *file, char *buf)
{
    char real[COPPER_MAX_PATH];
    int saved = errno;
    if (copper_strip(file, real) != 0)
        return file;
    copper_in_shim++;
    uint32_t kind = 0;
    copper_stat st;
    int s = copper_get_open(real, &kind, buf, &st);
    copper_in_shim--;
    errno = saved;
    if (s == 0 && kind == COPPER_OPEN_FILE)
        return buf;
    if (s < 0) {
        strcpy(buf, real);
        return buf;
    }
    return file; /* let the loader report the error in its own words */
}

static __attribute__((noinline)) void *dlopen_copper(const char *file, int mode)
{
    char buf[COPPER_MAX_PATH];
    return REAL(dlopen)(dl_target(file, buf), mode);
}

static __attribute__((noinline)) void *dlmopen_copper(Lmid_t lmid, const char *file, int mode)
{
    char buf[COPPER_MAX_PATH];
    return REAL(dlmopen)(lmid, dl_target(file, buf), mode);
}

COPPER_EXPORT void *dlopen(const char *file, int mode)
{
    if (__builtin_expect(copper_is_path(file), 0))
        return dlopen_copper(file, mode);
    COPPER_PASS(file);
    return real_dlopen(file, mode);
}

COPPER_EXPORT void *dlmopen(Lmid_t lmid, const char *file, int mode)
{
    if (__builtin_expect(copper_is_path(file), 0))
        return dlmopen_copper(lmid, file, mode);
    COPPER_PASS(file);
    return real_dlmopen(lmid, file, mode);
}
