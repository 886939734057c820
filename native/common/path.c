/*
 * Path policy: lexical normalization, prefix stripping, mirror-root mapping.
 * Normalization is lexical on purpose: ".." never climbs out of the Copper namespace.
 */
#include "copper_client.h"

#include <errno.h>

int copper_normalize(const char *in, char *out)
{
    size_t o = 0;
    out[o++] = '/';
    const char *s = in;
    while (*s) {
        while (*s == '/')
            s++;
        if (!*s)
            break;
        const char *e = s;
        while (*e && *e != '/')
            e++;
        size_t n = (size_t)(e - s);
        if (n == 1 && s[0] == '.') {
            /* skip */
        } else if (n == 2 && s[0] == '.' && s[1] == '.') {
            if (o > 1) {
                o--; /* drop the separator before the last component, then the component */
                while (o > 0 && out[o - 1] != '/')
                    o--;
                if (o > 1)
                    o--;
                if (o == 0)
                    o = 1;
            }
        } else {
            if (o > 1) {
                if (o + 1 >= COPPER_MAX_PATH)
                    return ENAMETOOLONG;
                out[o++] = '/';
            }
            if (o + n >= COPPER_MAX_PATH)
                return ENAMETOOLONG;
            memcpy(out + o, s, n);
            o += n;
        }
        s = e;
    }
    out[o] = '\0';
    return 0;
}

int copper_strip(const char *path, char *out)
{
    if (strlen(path) >= COPPER_MAX_PATH)
        return ENAMETOOLONG;
    int r = copper_normalize(path + copper_cfg.prefix_len, out);
    while (r == 0 && copper_under_prefix(out)) {
        char again[COPPER_MAX_PATH];
        memcpy(again, out + copper_cfg.prefix_len, strlen(out + copper_cfg.prefix_len) + 1);
        r = copper_normalize(again, out);
    }
    return r;
}

int copper_unstrip(const char *real, char *out)
{
    size_t n = copper_cfg.prefix_len;
    size_t r = strlen(real);
    if (r == 1 && real[0] == '/')
        r = 0;
    if (n + r >= COPPER_MAX_PATH)
        return ENAMETOOLONG;
    memcpy(out, copper_cfg.prefix, n);
    memcpy(out + n, real, r);
    out[n + r] = '\0';
    return 0;
}
