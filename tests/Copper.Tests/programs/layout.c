/* Prints every size, offset and constant of interop/copper_protocol.h, one "name value"
 * per line, for ProtocolLayoutTests to compare with the C# mirror. */
#include <stddef.h>
#include <stdio.h>
#include "copper_protocol.h"

#define SIZE(t) printf("sizeof.%s %zu\n", #t, sizeof(t))
#define OFF(t, f) printf("offset.%s.%s %zu\n", #t, #f, offsetof(t, f))
#define CONST(c) printf("const.%s %lld\n", #c, (long long)(c))

int main(void)
{
    SIZE(copper_frame_header);
    OFF(copper_frame_header, length); OFF(copper_frame_header, op); OFF(copper_frame_header, flags);
    OFF(copper_frame_header, reserved); OFF(copper_frame_header, request_id);
    SIZE(copper_hello);
    OFF(copper_hello, magic); OFF(copper_hello, major); OFF(copper_hello, minor); OFF(copper_hello, pid);
    SIZE(copper_hello_reply);
    OFF(copper_hello_reply, magic); OFF(copper_hello_reply, agent_pid); OFF(copper_hello_reply, node);
    OFF(copper_hello_reply, max_cacheable);
    SIZE(copper_reply_head);
    OFF(copper_reply_head, status);
    SIZE(copper_stat);
    OFF(copper_stat, dev); OFF(copper_stat, ino); OFF(copper_stat, nlink); OFF(copper_stat, mode);
    OFF(copper_stat, uid); OFF(copper_stat, gid); OFF(copper_stat, rdev); OFF(copper_stat, size);
    OFF(copper_stat, blksize); OFF(copper_stat, blocks); OFF(copper_stat, atime_sec);
    OFF(copper_stat, mtime_sec); OFF(copper_stat, mtime_nsec); OFF(copper_stat, ctime_nsec);
    SIZE(copper_access_req);
    OFF(copper_access_req, mode);
    SIZE(copper_dirent);
    OFF(copper_dirent, ino); OFF(copper_dirent, type); OFF(copper_dirent, name_length);
    SIZE(copper_listdir_req);
    OFF(copper_listdir_req, flags);
    CONST(COPPER_LISTDIR_CACHED_ONLY);
    SIZE(copper_dirent_plus);
    OFF(copper_dirent_plus, de); OFF(copper_dirent_plus, lstat_status); OFF(copper_dirent_plus, open_kind); OFF(copper_dirent_plus, st);
    SIZE(copper_open_reply);
    OFF(copper_open_reply, kind); OFF(copper_open_reply, st);
    CONST(COPPER_PROTOCOL_MAGIC); CONST(COPPER_PROTOCOL_MAJOR); CONST(COPPER_PROTOCOL_MINOR);
    CONST(COPPER_HEADER_SIZE); CONST(COPPER_MAX_PAYLOAD); CONST(COPPER_MAX_PATH); CONST(COPPER_REPLY);
    CONST(COPPER_OP_HELLO); CONST(COPPER_OP_STAT); CONST(COPPER_OP_LSTAT); CONST(COPPER_OP_READLINK);
    CONST(COPPER_OP_ACCESS); CONST(COPPER_OP_LISTDIR); CONST(COPPER_OP_OPEN); CONST(COPPER_OP_PING);
    CONST(COPPER_OP_STATS); CONST(COPPER_OP_LISTDIRPLUS); CONST(COPPER_OP_MANIFESTSAVE); CONST(COPPER_OP_MAX);
    CONST(COPPER_S_FALLBACK); CONST(COPPER_S_TOO_BIG); CONST(COPPER_S_TOO_LONG);
    CONST(COPPER_OPEN_FILE); CONST(COPPER_OPEN_DIR);
    printf("fnv./tmp/alice/copper %016llx\n", (unsigned long long)copper_fnv1a64("/tmp/alice/copper"));
    printf("fnv. %016llx\n", (unsigned long long)copper_fnv1a64(""));
    return 0;
}
