#!/usr/bin/env python3
"""A server behind the relay, written only from the original tx_tlsrelay README.

What the README says, and all this program relies on:
  * the server connects to the relay's control port over TLS; the relay and
    the server both hold certificates of one CA;
  * the control protocol is line based, lines end in \\r\\n, a command and
    sometimes one argument separated by a space;
  * `public_listener HOST:PORT` is the address clients use,
    `reverse_listener HOST:PORT` the address the server connects back to;
  * `new_connection` announces a client: the server opens one connection to
    the reverse address and that connection becomes the session with it;
  * `no_available_listeners` means the relay has no ports left.

The service offered is "echo with upper-case". Once both listener lines have
arrived it prints `public HOST:PORT` (flushed) on stdout.

Python 3 standard library only.
"""

import argparse
import os
import socket
import ssl
import sys
import threading


def parse_address(argument):
    host, sep, port = argument.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("not HOST:PORT: %r" % argument)
    return host, int(port)


def serve_client(conn):
    """Echo with upper-case until the client's EOF, then EOF back."""
    with conn:
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data.upper())
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the relay closed the connection: nothing left to serve


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relay-host", default="localhost")
    parser.add_argument("--relay-port", type=int, default=12000)
    parser.add_argument("--keys", default="./relay_server_certs",
                        help="directory with ca.crt.pem, client.crt.pem, client.key.pem")
    parser.add_argument("--reverse-host",
                        help="connect back here instead of the reverse_listener host")
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # The README ties trust to the common CA; it says nothing about the names
    # in the relay's certificate.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(os.path.join(args.keys, "ca.crt.pem"))
    context.load_cert_chain(os.path.join(args.keys, "client.crt.pem"),
                            os.path.join(args.keys, "client.key.pem"))

    raw = socket.create_connection((args.relay_host, args.relay_port), timeout=10)
    control = context.wrap_socket(raw)
    control.settimeout(None)
    lines = control.makefile("rb")

    public = reverse = None
    announced = False
    for raw_line in lines:
        line = raw_line.rstrip(b"\r\n").decode("ascii", "replace")
        command, _, argument = line.partition(" ")
        if command == "no_available_listeners":
            print("relay has no available listeners", file=sys.stderr, flush=True)
            return 1
        elif command == "public_listener":
            public = parse_address(argument)
        elif command == "reverse_listener":
            reverse = parse_address(argument)
        elif command == "new_connection":
            if reverse is None:
                print("new_connection before reverse_listener", file=sys.stderr, flush=True)
                return 1
            target = (args.reverse_host or reverse[0], reverse[1])
            conn = socket.create_connection(target, timeout=10)
            conn.settimeout(None)
            threading.Thread(target=serve_client, args=(conn,), daemon=True).start()
        else:
            print("ignoring unknown control line %r" % line, file=sys.stderr, flush=True)
        if public and reverse and not announced:
            print("public %s:%d" % public, flush=True)
            announced = True
    print("relay closed the control connection", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
