/* Tries every mutation on a path (and a new name beside it) and prints the errno of each.
 * Through Copper every one must fail with EROFS. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <utime.h>

#define TRY(name, expr) do { errno = 0; int rc_ = (expr); printf("%s %d %s\n", name, rc_ < 0 ? -1 : 0, rc_ < 0 ? strerrorname_np(errno) : "-"); } while (0)

int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    const char *file = argv[1], *dir = argv[2];
    char fresh[4096], fresh2[4096];
    snprintf(fresh, sizeof fresh, "%s/new-entry", dir);
    snprintf(fresh2, sizeof fresh2, "%s/new-entry-2", dir);
    TRY("open_wronly", open(file, O_WRONLY));
    TRY("open_rdwr", open(file, O_RDWR));
    TRY("open_trunc", open(file, O_RDONLY | O_TRUNC));
    TRY("open_creat", open(fresh, O_WRONLY | O_CREAT, 0644));
    TRY("creat", creat(fresh, 0644));
    TRY("fopen_w", fopen(file, "w") ? 0 : -1);
    TRY("fopen_a", fopen(file, "a") ? 0 : -1);
    TRY("fopen_rplus", fopen(file, "r+") ? 0 : -1);
    TRY("mkdir", mkdir(fresh, 0755));
    TRY("rmdir", rmdir(dir));
    TRY("unlink", unlink(file));
    TRY("rename", rename(file, fresh));
    TRY("link", link(file, fresh));
    TRY("symlink", symlink("target", fresh2));
    TRY("truncate", truncate(file, 0));
    TRY("chmod", chmod(file, 0777));
    TRY("chown", chown(file, 0, 0));
    TRY("lchown", lchown(file, 0, 0));
    TRY("utime", utime(file, NULL));
    TRY("utimes", utimes(file, NULL));
    TRY("utimensat", utimensat(AT_FDCWD, file, NULL, 0));
    TRY("mkdirat", mkdirat(AT_FDCWD, fresh, 0755));
    TRY("unlinkat", unlinkat(AT_FDCWD, file, 0));
    TRY("renameat", renameat(AT_FDCWD, file, AT_FDCWD, fresh));
    TRY("fchmodat", fchmodat(AT_FDCWD, file, 0777, 0));
    TRY("mknod", mknod(fresh, S_IFIFO | 0644, 0));
    return 0;
}
