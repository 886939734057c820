/* Errno probe: for each path argument, runs stat, lstat, open(O_RDONLY), readlink, opendir
 * scandir and access(R_OK) and prints one line per call: "call rc errno detail". Run on the real
 * path and on the Copper path, the output must be identical (modulo the prefix). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void report(const char *call, int rc, int err, const char *detail)
{
    printf("%s %d %s %s\n", call, rc < 0 ? -1 : 0, rc < 0 ? strerrorname_np(err) : "-", detail);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *p = argv[i];
        struct stat st;
        char detail[256];
        int rc;
        printf("## %d\n", i);
        errno = 0; rc = stat(p, &st);
        snprintf(detail, sizeof detail, "mode=%o size=%lld", rc == 0 ? st.st_mode : 0, rc == 0 ? (long long)st.st_size : 0LL);
        report("stat", rc, errno, detail);
        errno = 0; rc = lstat(p, &st);
        snprintf(detail, sizeof detail, "mode=%o size=%lld", rc == 0 ? st.st_mode : 0, rc == 0 ? (long long)st.st_size : 0LL);
        report("lstat", rc, errno, detail);
        errno = 0; rc = open(p, O_RDONLY);
        int err = errno;
        detail[0] = 0;
        if (rc >= 0) {
            ssize_t n = read(rc, detail, 16);
            int rerr = errno;
            snprintf(detail, sizeof detail, "read=%zd%s", n, n < 0 ? strerrorname_np(rerr) : "");
            close(rc);
        }
        report("open", rc, err, detail);
        char buf[4096];
        errno = 0; ssize_t n = readlink(p, buf, sizeof buf - 1);
        if (n >= 0) buf[n] = 0; else buf[0] = 0;
        report("readlink", (int)n, errno, buf);
        errno = 0; DIR *d = opendir(p);
        err = errno;
        int count = 0;
        if (d) { while (readdir(d)) count++; closedir(d); }
        snprintf(detail, sizeof detail, "entries=%d", count);
        report("opendir", d ? 0 : -1, err, detail);
        struct dirent **list = NULL;
        errno = 0; int found = scandir(p, &list, NULL, alphasort);
        err = errno;
        detail[0] = 0;
        for (int k = 0; k < found; k++) {
            strncat(detail, list[k]->d_name, sizeof detail - strlen(detail) - 2);
            strcat(detail, ",");
            free(list[k]);
        }
        free(list);
        report("scandir", found < 0 ? -1 : 0, err, detail);
        errno = 0; rc = access(p, R_OK);
        report("access", rc, errno, "");
        errno = 0; rc = access(p, F_OK);
        report("access_f", rc, errno, "");
    }
    return 0;
}
