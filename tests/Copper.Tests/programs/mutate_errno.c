/* Mutation errno probe: for each path argument, tries every mutation with that path as its
 * target and prints "call rc errno". Run on a read-only mount of a tree and on the same
 * tree through Copper, the output must be identical: the path's own error (ENOENT,
 * ENOTDIR, ELOOP, EACCES, EEXIST, EISDIR) first, EROFS only where the kernel says so. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utime.h>

#define TRY(name, expr)                                                                        \
    do {                                                                                       \
        errno = 0;                                                                             \
        long rc_ = (long)(expr);                                                               \
        printf("%s %d %s\n", name, rc_ < 0 ? -1 : 0, rc_ < 0 ? strerrorname_np(errno) : "-"); \
    } while (0)

static int fopen_w(const char *p)
{
    FILE *f = fopen(p, "w");
    if (f == NULL)
        return -1;
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *p = argv[i];
        char other[4096];
        snprintf(other, sizeof other, "%s-other", p);
        printf("## %d\n", i);
        TRY("open_wronly", open(p, O_WRONLY));
        TRY("open_rdwr", open(p, O_RDWR));
        TRY("open_creat", open(p, O_WRONLY | O_CREAT, 0644));
        TRY("open_excl", open(p, O_WRONLY | O_CREAT | O_EXCL, 0644));
        TRY("open_rdonly_creat", open(p, O_RDONLY | O_CREAT, 0644));
        TRY("open_trunc", open(p, O_RDONLY | O_TRUNC));
        TRY("creat", creat(p, 0644));
        TRY("fopen_w", fopen_w(p));
        TRY("mkdir", mkdir(p, 0755));
        TRY("rmdir", rmdir(p));
        TRY("unlink", unlink(p));
        TRY("rename_from", rename(p, other));
        TRY("link_to", link("/etc/hostname", p));
        TRY("symlink", symlink("target", p));
        TRY("mknod", mknod(p, S_IFIFO | 0644, 0));
        TRY("truncate", truncate(p, 0));
        TRY("chmod", chmod(p, 0777));
        TRY("chown", chown(p, 0, 0));
        TRY("lchown", lchown(p, 0, 0));
        TRY("utimensat", utimensat(AT_FDCWD, p, NULL, 0));
        TRY("utime", utime(p, NULL));
        TRY("setxattr", setxattr(p, "user.copper", "x", 1, 0));
        TRY("access_w", access(p, W_OK));
    }
    return 0;
}
