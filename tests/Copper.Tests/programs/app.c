/* Linked against libfoo (no rpath): runs only if the loader finds libfoo through
 * LD_LIBRARY_PATH and libbar through libfoo's $ORIGIN. Prints the files it mapped them
 * from (/proc/self/maps names the file actually opened). */
#include <stdio.h>
#include <string.h>

int foo_value(void);

int main(void)
{
    printf("value %d\n", foo_value());
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[4096], last[4096] = "";
    while (maps && fgets(line, sizeof line, maps)) {
        char *path = strchr(line, '/');
        if (path && (strstr(path, "libfoo") || strstr(path, "libbar")) && strcmp(path, last) != 0) {
            printf("mapped %s", path);
            snprintf(last, sizeof last, "%s", path);
        }
    }
    if (maps) fclose(maps);
    return 0;
}
