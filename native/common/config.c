/*
 * Configuration from the environment, computed once per process:
 *   prefix  $COPPER_PREFIX, default /tmp/$USER/copper
 *   node    $COPPER_NODE, default 0 (no ".n<node>" suffix for node 0)
 *   socket  <$COPPER_RUNTIME_DIR or /tmp/copper-run-<uid>>/<fnv1a64(prefix)>[.n<node>]/agent.sock
 */
#include "copper_client.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

copper_config copper_cfg;

static void user_name(char *buf, size_t cap)
{
    const char *u = getenv("USER");
    if (u == NULL || *u == '\0')
        u = getenv("LOGNAME");
    if (u != NULL && *u != '\0') {
        snprintf(buf, cap, "%s", u);
        return;
    }
    struct passwd pw, *res = NULL;
    char tmp[1024];
    if (getpwuid_r(getuid(), &pw, tmp, sizeof tmp, &res) == 0 && res != NULL)
        snprintf(buf, cap, "%s", res->pw_name);
    else
        snprintf(buf, cap, "%u", (unsigned)getuid());
}

void copper_config_init(void)
{
    char raw[COPPER_MAX_PATH];
    const char *p = getenv("COPPER_PREFIX");
    if (p != NULL && *p != '\0') {
        if (strlen(p) >= sizeof raw)
            return;
        snprintf(raw, sizeof raw, "%s", p);
    } else {
        char user[256];
        user_name(user, sizeof user);
        snprintf(raw, sizeof raw, "/tmp/%s/copper", user);
    }
    if (raw[0] != '/' || copper_normalize(raw, copper_cfg.prefix) != 0)
        return;
    if (strcmp(copper_cfg.prefix, "/") == 0) /* a prefix of "/" would capture everything */
        return;

    const char *rt = getenv("COPPER_RUNTIME_DIR");
    char rtbuf[64];
    if (rt == NULL || *rt == '\0') {
        snprintf(rtbuf, sizeof rtbuf, "/tmp/copper-run-%u", (unsigned)getuid());
        rt = rtbuf;
    }
    const char *node = getenv("COPPER_NODE");
    char suffix[32] = "";
    /* Node 0 is the plain directory (a lone agent and node 0 of a simulated run are the same
     * agent); node k > 0 adds ".n<k>", as copper-agent --node k does. */
    if (node != NULL && *node != '\0' && strcmp(node, "0") != 0)
        snprintf(suffix, sizeof suffix, ".n%s", node);
    int n = snprintf(copper_cfg.socket_path, sizeof copper_cfg.socket_path, "%s/%016llx%s/%s", rt,
                     (unsigned long long)copper_fnv1a64(copper_cfg.prefix), suffix,
                     COPPER_SOCKET_NAME);
    if (n < 0 || (size_t)n >= sizeof copper_cfg.socket_path)
        return;
    copper_cfg.prefix_len = strlen(copper_cfg.prefix);
}
