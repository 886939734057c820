/* Linked against libfoo (no rpath): runs only if the loader finds libfoo through
 * LD_LIBRARY_PATH and libbar through libfoo's $ORIGIN. Prints where each was loaded from. */
#include <link.h>
#include <stdio.h>
#include <string.h>

int foo_value(void);

static int show(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size; (void)data;
    if (strstr(info->dlpi_name, "libfoo") || strstr(info->dlpi_name, "libbar"))
        printf("loaded %s\n", info->dlpi_name);
    return 0;
}

int main(void)
{
    printf("value %d\n", foo_value());
    dl_iterate_phdr(show, NULL);
    return 0;
}
