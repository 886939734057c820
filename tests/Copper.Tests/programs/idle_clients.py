# Opens N connections to a Copper agent, greets on each, says "open", then holds them
# for SECONDS. usage: idle_clients.py SOCKET N SECONDS
import os, socket, struct, sys, time

path, n, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
conns = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    hello = struct.pack('<IHHII', 0x52505043, 1, 1, os.getpid(), 0)
    s.sendall(struct.pack('<IBBHI', len(hello), 1, 0, 0, 0) + hello)
    head = s.recv(12, socket.MSG_WAITALL)
    s.recv(struct.unpack('<I', head[:4])[0], socket.MSG_WAITALL)
    conns.append(s)
print('open', len(conns), flush=True)
time.sleep(hold)
