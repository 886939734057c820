/* The C side of the names parity test: reads lines "hex" (a path) and prints, per line,
 * the hex of copper_strip's normalization of it as a real path ("E<errno>" when it fails),
 * then, with COPPER_PREFIX set to the same bytes, the socket path config.c computes.
 * Built with native/common/path.c and config.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copper_client.h"

static size_t unhex(const char *hex, char *out, size_t cap)
{
    size_t n = 0;
    for (; hex[0] && hex[1] && n + 1 < cap; hex += 2) {
        unsigned v;
        sscanf(hex, "%2x", &v);
        out[n++] = (char)v;
    }
    out[n] = '\0';
    return n;
}

static void puthex(const char *s)
{
    for (; *s; s++)
        printf("%02x", (unsigned char)*s);
}

int main(void)
{
    static char line[40000], path[20000], out[COPPER_MAX_PATH];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        unhex(line, path, sizeof path);
        int r = strlen(path) >= COPPER_MAX_PATH ? ENAMETOOLONG : copper_normalize(path, out);
        if (r)
            printf("E%d", r);
        else
            puthex(out);
        setenv("COPPER_PREFIX", path, 1);
        memset(&copper_cfg, 0, sizeof copper_cfg);
        copper_config_init();
        printf(" %s\n", copper_cfg.prefix_len ? copper_cfg.socket_path : "-");
    }
    return 0;
}
