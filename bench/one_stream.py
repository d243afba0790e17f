#!/usr/bin/env python3
"""One bulk stream through a running relay, timed (interim benchmark; the full
`make bench` comes with its own issue).

Plays a v1 server (control connection with the client certificate, one reverse
connection per new_connection that counts bytes and answers the count) and a
client that sends SIZE bytes and waits for that answer, so only bytes that
crossed the relay are counted.

usage: one_stream.py KEYS_DIR CONTROL_PORT [SIZE_MB]
"""
import socket
import ssl
import sys
import threading
import time

keys, port = sys.argv[1], int(sys.argv[2])
size = (int(sys.argv[3]) if len(sys.argv) > 3 else 1024) * 1024 * 1024
chunk = 1 << 20

ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=f"{keys}/ca.crt.pem")
ctx.load_cert_chain(f"{keys}/client.crt.pem", f"{keys}/client.key.pem")
ctx.check_hostname = False
control = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
lines = control.makefile("rb")
public = reverse = None
while public is None or reverse is None:
    word, address = lines.readline().decode().split()
    host, p = address.rsplit(":", 1)
    if word == "public_listener":
        public = (host, int(p))
    elif word == "reverse_listener":
        reverse = (host, int(p))


def serve_one():
    assert lines.readline().strip() == b"new_connection"
    conn = socket.create_connection(reverse, timeout=60)
    buf = bytearray(chunk)
    total = 0
    while True:
        n = conn.recv_into(buf)
        if n == 0:
            break
        total += n
    conn.sendall(str(total).encode())
    conn.close()


server = threading.Thread(target=serve_one, daemon=True)
server.start()
client = socket.create_connection(public, timeout=60)
payload = bytes(chunk)
start = time.monotonic()
sent = 0
while sent < size:
    client.sendall(payload)
    sent += chunk
client.shutdown(socket.SHUT_WR)
answer = int(client.recv(64))
elapsed = time.monotonic() - start
assert answer == size, (answer, size)
print(f"{size / 2**20:.0f} MiB in {elapsed:.3f} s: {size * 8 / elapsed / 1e9:.2f} Gbit/s")
