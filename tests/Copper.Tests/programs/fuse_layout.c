/* Prints the libfuse3 struct sizes and offsets the agent mirrors in Interop.Fuse.cs. */
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#define SIZE(t) printf("sizeof.%s %zu\n", #t, sizeof(struct t))
#define OFF(t, f) printf("offset.%s.%s %zu\n", #t, #f, offsetof(struct t, f))

int main(void)
{
    SIZE(fuse_args); OFF(fuse_args, argc); OFF(fuse_args, argv); OFF(fuse_args, allocated);
    SIZE(fuse_entry_param); OFF(fuse_entry_param, ino); OFF(fuse_entry_param, generation);
    OFF(fuse_entry_param, attr); OFF(fuse_entry_param, attr_timeout); OFF(fuse_entry_param, entry_timeout);
    SIZE(fuse_file_info); OFF(fuse_file_info, flags); OFF(fuse_file_info, fh);
    OFF(fuse_file_info, lock_owner); OFF(fuse_file_info, poll_events);
    /* With FUSE_USE_VERSION < 312 this is the struct fuse_session_loop_mt@FUSE_3.2 takes. */
    printf("sizeof.fuse_loop_config_v1 %zu\n", sizeof(struct fuse_loop_config));
    printf("offset.fuse_loop_config_v1.max_idle_threads %zu\n", offsetof(struct fuse_loop_config, max_idle_threads));
    SIZE(stat);
    SIZE(fuse_conn_info); OFF(fuse_conn_info, capable); OFF(fuse_conn_info, want); OFF(fuse_conn_info, time_gran);
    printf("const.FUSE_CAP_NO_OPEN_SUPPORT %u\n", (unsigned)FUSE_CAP_NO_OPEN_SUPPORT);
    printf("const.FUSE_CAP_NO_OPENDIR_SUPPORT %u\n", (unsigned)FUSE_CAP_NO_OPENDIR_SUPPORT);
    printf("const.FUSE_CAP_CACHE_SYMLINKS %u\n", (unsigned)FUSE_CAP_CACHE_SYMLINKS);
    SIZE(statvfs); OFF(statvfs, f_flag); OFF(statvfs, f_namemax);
    SIZE(fuse_lowlevel_ops);
    OFF(fuse_lowlevel_ops, init); OFF(fuse_lowlevel_ops, lookup); OFF(fuse_lowlevel_ops, forget);
    OFF(fuse_lowlevel_ops, getattr); OFF(fuse_lowlevel_ops, setattr); OFF(fuse_lowlevel_ops, readlink);
    OFF(fuse_lowlevel_ops, mknod); OFF(fuse_lowlevel_ops, mkdir); OFF(fuse_lowlevel_ops, unlink);
    OFF(fuse_lowlevel_ops, rmdir); OFF(fuse_lowlevel_ops, symlink); OFF(fuse_lowlevel_ops, rename);
    OFF(fuse_lowlevel_ops, link); OFF(fuse_lowlevel_ops, open); OFF(fuse_lowlevel_ops, read);
    OFF(fuse_lowlevel_ops, write); OFF(fuse_lowlevel_ops, release); OFF(fuse_lowlevel_ops, opendir);
    OFF(fuse_lowlevel_ops, readdir); OFF(fuse_lowlevel_ops, releasedir); OFF(fuse_lowlevel_ops, statfs);
    OFF(fuse_lowlevel_ops, setxattr); OFF(fuse_lowlevel_ops, removexattr); OFF(fuse_lowlevel_ops, access);
    OFF(fuse_lowlevel_ops, create); OFF(fuse_lowlevel_ops, write_buf); OFF(fuse_lowlevel_ops, forget_multi);
    OFF(fuse_lowlevel_ops, fallocate); OFF(fuse_lowlevel_ops, readdirplus);
    OFF(fuse_lowlevel_ops, copy_file_range); OFF(fuse_lowlevel_ops, lseek);
    /* The bit fields the agent sets, found by setting each one alone. */
    struct fuse_file_info fi;
    unsigned int word;
    memset(&fi, 0, sizeof fi); fi.keep_cache = 1; memcpy(&word, (char *)&fi + 4, 4);
    printf("bit.keep_cache %u\n", word);
    memset(&fi, 0, sizeof fi); fi.cache_readdir = 1; memcpy(&word, (char *)&fi + 4, 4);
    printf("bit.cache_readdir %u\n", word);
    memset(&fi, 0, sizeof fi); fi.direct_io = 1; memcpy(&word, (char *)&fi + 4, 4);
    printf("bit.direct_io %u\n", word);
    return 0;
}
