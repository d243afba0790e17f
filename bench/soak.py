#!/usr/bin/env python3
"""Bounded soak run of tlsrelay: one relay on loopback under a mix of checked traffic,
control sessions that come and go, and every kind of bad input, for a fixed time.

    python3 bench/soak.py --build build [--seconds 600] [--out bench/results]

Samples the relay's RSS, descriptors, threads, sessions and connections every 10 s,
judges the pass criteria (see bench/README.md, section Soak), writes soak.md and soak.png
and exits non-zero when a criterion fails. Only the Python standard library, plus
matplotlib (Agg) for the plot; it re-runs itself with /usr/bin/python3 when the current
interpreter cannot import matplotlib (Debian's python3-matplotlib lives there).
"""

import argparse
import collections
import ctypes
import datetime
import hashlib
import hmac
import os
import platform
import random
import re
import resource
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

T0 = time.monotonic()
SAMPLE_EVERY = 10.0
WARMUP_SECONDS = 10.0
SETTLE_LIMIT = 30.0
RSS_WARMUP_FRACTION = 0.2
RSS_GROWTH_LIMIT_PCT = 5.0
IDLE_STAGES = 256                 # protocol/defaults.hpp idle_stages
SPARE_PIPE_FDS = 2 * IDLE_STAGES  # two descriptors per idle pipe, kept by design
CHECKED_RATE = 40.0               # checked connections/s from 127.0.0.1, under --client-rate
BULK_BYTES = 4 << 20
PORT_COUNT = 96
TOKENS = {
    "stable": "soak-stable-token",
    "churn": "soak-churn-token",
    "short": "soak-short-token",
    "lab": "soak-lab-token",
    "bad": "soak-bad-token",
}
# Short relay timeouts so that bad inputs cycle within the run. Checked traffic is shaped
# to stay clear of every one of them (no pause of a second inside a transfer; at most
# CHECKED_RATE new clients/s from 127.0.0.1).
RELAY_LIMITS = {
    "--pending-timeout": "2", "--half-close-timeout": "5", "--idle-timeout": "30",
    "--hello-timeout": "2", "--warm-idle": "10", "--reservation-ttl": "5",
    "--keepalive": "10", "--max-handshakes-per-source": "8",
    "--max-unchecked-per-source": "32", "--client-rate": "100", "--control-rate": "50",
    "--max-pending": "64",
}
HANDSHAKE_TIMEOUT = 10.0          # tls_handshake_timeout, fixed in the relay
ACCEPT_LINE_TIMEOUT = 10.0        # accept_line_timeout, fixed in the relay
BAD_SOURCES = [f"127.0.0.{i}" for i in range(2, 6)]   # the bad inputs without their own address
FLOOD_HANDSHAKES_SRC = "127.0.0.9"
FLOOD_REVERSE_SRC = "127.0.0.8"
FLOOD_CONTROL_SRC = "127.0.0.7"
FLOOD_CLIENT_SRC = "127.0.0.6"


def log(message):
    print(f"[soak {time.monotonic() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    # A soak killed without cleanup must not leave its children running.
    _libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


# --------------------------------------------------------------------------- processes

class Child:
    registry = []
    lock = threading.Lock()
    serial = 0

    def __init__(self, name, argv, run_dir):
        self.name = name
        with Child.lock:
            Child.serial += 1
            stem = f"{name}-{Child.serial}"
        self.out_path = run_dir / f"{stem}.out"
        self.err_path = run_dir / f"{stem}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True, preexec_fn=_child_setup)
        self.pid = self.proc.pid
        self.returncode = None
        Child.registry.append(self)

    done = []

    def output(self):
        text = ""
        for p in (self.out_path, self.err_path):
            try:
                text += p.read_text(errors="replace")
            except OSError:
                pass
        return text

    def alive(self):
        return self.proc.poll() is None

    def wait_for(self, pattern, timeout=20.0):
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = regex.search(self.output())
            if m:
                return m
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): "
                                   f"{self.output()[-400:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no /{pattern}/ within {timeout:.0f} s: {self.output()[-400:]}")

    def stop(self, timeout=5.0):
        """SIGTERM by PID, SIGKILL after timeout; returns the exit code."""
        if self in Child.registry:
            Child.registry.remove(self)
            Child.done.append(self)
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) ignored SIGTERM: SIGKILL")
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self.returncode = self.proc.returncode
        return self.returncode

    @classmethod
    def stop_all(cls):
        for c in reversed(list(cls.registry)):
            try:
                c.stop()
            except Exception as e:
                log(f"stopping {c.name}: {e}")


def free_block(count):
    """count consecutive free ports on 127.0.0.1, below the ephemeral range."""
    for _ in range(500):
        base = random.randint(20000, 32000 - count)
        ok = True
        for p in range(base, base + count):
            s = socket.socket()
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if ok:
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


# --------------------------------------------------------------------------- counters

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        # checked traffic, per kind ("churn v1 agent", "bulk v2 expose", ...)
        self.checked = collections.defaultdict(lambda: {"transfers": 0, "ok": 0, "bytes": 0,
                                                        "failures": collections.Counter()})
        # bad inputs: kind -> {"sent": n, "outcomes": Counter}
        self.bad = collections.defaultdict(lambda: {"sent": 0, "outcomes": collections.Counter()})
        self.events = collections.Counter()   # control sessions, churn cycles, warm use...
        self.failure_notes = []               # first few checked failures, for the report

    def checked_result(self, kind, nbytes, failure=None, note=""):
        with self.lock:
            c = self.checked[kind]
            c["transfers"] += 1
            if failure is None:
                c["ok"] += 1
                c["bytes"] += nbytes
            else:
                c["failures"][failure] += 1
                if len(self.failure_notes) < 30:
                    self.failure_notes.append(f"{time.monotonic() - T0:.1f}s {kind}: {failure} {note}")

    def bad_result(self, kind, outcome):
        with self.lock:
            self.bad[kind]["sent"] += 1
            self.bad[kind]["outcomes"][outcome] += 1

    def event(self, name, n=1):
        with self.lock:
            self.events[name] += n


STATS = Stats()

# Failures of a checked transfer that a deliberate relay timeout explains (not a loss);
# checked traffic is designed never to produce them.
DELIBERATE = {"reset_after_half_close_timeout", "reset_after_idle_timeout"}


class RateLimiter:
    """Token bucket shared by the checked clients from 127.0.0.1 (under --client-rate)."""

    def __init__(self, rate):
        self.rate, self.tokens, self.last = rate, rate, time.monotonic()
        self.lock = threading.Lock()

    def take(self, stop):
        while not stop.is_set():
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return True
            time.sleep(1.0 / self.rate)
        return False


# --------------------------------------------------------------------------- sockets

def tcp(port, src="127.0.0.1", timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src != "127.0.0.1":
        s.bind((src, 0))
    try:
        s.connect(("127.0.0.1", port))
    except Exception:
        s.close()
        raise
    return s


def reset_close(s):
    """Close with RST (SO_LINGER 0)."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def drain_until_eof(s, bound=10.0):
    s.settimeout(bound)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass


def wait_all_closed(socks, bound):
    """Seconds after which each socket was closed or reset by the peer (None: not in bound)."""
    t0 = time.monotonic()
    when = {s: None for s in socks}
    live = set(socks)
    while live and time.monotonic() - t0 < bound:
        ready, _, _ = select.select(list(live), [], [], 0.2)
        for s in ready:
            try:
                d = s.recv(65536)
            except OSError:
                d = b""
            if not d:
                when[s] = time.monotonic() - t0
                live.discard(s)
    return [when[s] for s in socks]


def wait_closed(s, bound):
    """Reads (and drops) until the peer closes or resets; (closed, seconds, bytes_read)."""
    t0 = time.monotonic()
    got = 0
    s.settimeout(0.5)
    while time.monotonic() - t0 < bound:
        try:
            d = s.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except (OSError, ssl.SSLError):
            return True, time.monotonic() - t0, got
        if not d:
            return True, time.monotonic() - t0, got
        got += len(d)
    return False, bound, got


class Lines:
    """Line reader on a (TLS) socket."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no line")
            self.sock.settimeout(min(left, 1.0))
            try:
                d = self.sock.recv(4096)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            if not d:
                return None
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode(errors="replace")


class Env:
    """What every part of the load needs to know."""

    def __init__(self, build, keys, control_port):
        self.build, self.keys, self.control = build, keys, control_port
        self.ctx = {}
        for v2 in (False, True):
            for cert in (False, True):
                c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                c.check_hostname = False
                c.load_verify_locations(str(keys / "ca.crt.pem"))
                if cert:
                    c.load_cert_chain(str(keys / "client.crt.pem"), str(keys / "client.key.pem"))
                if v2:
                    c.set_alpn_protocols(["tlsrelay/2"])
                self.ctx[(v2, cert)] = c

    def reverse_of(self, public_port):
        return public_port - PORT_COUNT // 2

    def control_tls(self, v2, cert, src="127.0.0.1", timeout=10.0):
        raw = tcp(self.control, src, timeout)
        try:
            t = self.ctx[(v2, cert)].wrap_socket(raw, server_hostname=None)
        except Exception:
            raw.close()
            raise
        return t


def parse_hostport(text):
    return int(text.rsplit(":", 1)[1])


# --------------------------------------------------------------------------- checked traffic

def _classify(exc):
    if isinstance(exc, ConnectionRefusedError):
        return "connect_refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, BrokenPipeError):
        return "broken_pipe"
    return type(exc).__name__


def checked_exchange(port, kind, size=None, half_close=None):
    """One client: random bytes + SHA-256, echoed back byte-exact, then close."""
    size = size if size is not None else random.choice([1, 100, 1000, 16384, random.randint(1, 65536)])
    payload = b"DATA" + os.urandom(size)
    data = payload + hashlib.sha256(payload).digest()
    half_close = random.random() < 0.5 if half_close is None else half_close
    s = None
    got = bytearray()
    t_fin = None
    try:
        s = tcp(port, timeout=10.0)
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
            t_fin = time.monotonic()
        while len(got) < len(data) or half_close:
            d = s.recv(65536)
            if not d:
                break
            got += d
        if bytes(got) != data:
            if got.startswith(b"no controller linked"):
                failure = "no_controller"
            elif bytes(got) == data[:len(got)]:
                failure = "short"
            elif bytes(got[:len(data)]) == data:
                failure = "extra_bytes"
            else:
                failure = "corrupt"
            STATS.checked_result(kind, 0, failure, f"{len(got)}/{len(data)} bytes")
            return False
        if hashlib.sha256(bytes(got[:-32])).digest() != bytes(got[-32:]):
            STATS.checked_result(kind, 0, "checksum")
            return False
        STATS.checked_result(kind, 2 * len(data))
        return True
    except Exception as e:
        failure = _classify(e)
        if t_fin is not None and time.monotonic() - t_fin >= float(RELAY_LIMITS["--half-close-timeout"]):
            failure = "reset_after_half_close_timeout"
        STATS.checked_result(kind, 0, failure, f"{len(got)}/{len(data)} bytes: {e}")
        return False
    finally:
        if s is not None:
            s.close()


def mismatch(data, got):
    """Where a corrupted transfer first differs and how (for the report)."""
    n = min(len(data), len(got))
    i = next((k for k in range(0, n, 4096) if data[k:k + 4096] != got[k:k + 4096]), None)
    if i is None:
        return ""
    while data[i] == got[i]:
        i += 1
    shift = next((d for d in range(1, 64) if got[i:i + 256] == data[i + d:i + d + 256]), None)
    return (f"; first difference at byte {i}: sent {data[i:i + 16].hex()} got {got[i:i + 16].hex()}"
            + (f"; from there the data is the sent data {shift} bytes later (bytes dropped)"
               if shift else ""))


def checked_bulk(port, kind, nbytes=BULK_BYTES):
    """nbytes each way at once, then half-close; every byte compared on return."""
    data = os.urandom(nbytes - 32)
    data += hashlib.sha256(data).digest()
    s = None
    got = bytearray()
    send_error = []
    try:
        s = tcp(port, timeout=15.0)

        def sender():
            try:
                view = memoryview(data)
                for off in range(0, len(data), 65536):
                    s.sendall(view[off:off + 65536])
                s.shutdown(socket.SHUT_WR)
            except Exception as e:
                send_error.append(e)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        while True:
            d = s.recv(262144)
            if not d:
                break
            got += d
            if len(got) > len(data):
                break
        t.join(timeout=30)
        if t.is_alive():
            # Never close a socket another thread still sends on (its descriptor
            # number could go to another socket): stop the sender first.
            socket.socket.shutdown(s, socket.SHUT_RDWR)
            t.join(timeout=30)
        if send_error:
            raise send_error[0]
        if bytes(got) != data:
            failure = "short" if data.startswith(bytes(got)) else "corrupt"
            STATS.checked_result(kind, 0, failure, f"{len(got)}/{len(data)} bytes" + mismatch(data, got))
            return False
        STATS.checked_result(kind, 2 * len(data))
        return True
    except Exception as e:
        STATS.checked_result(kind, 0, _classify(e), f"{len(got)}/{len(data)} bytes: {e}")
        return False
    finally:
        if s is not None:
            s.close()


# --------------------------------------------------------------------------- python servers

def hold_half_open(sock, bound=20.0):
    """After the client's EOF, keep our direction open and wait until the relay resets
    the pair (TCP state CLOSE), at most bound seconds."""
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < bound:
        try:
            state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
        except OSError:
            closed = True
            break
        if state == 7:  # TCP_CLOSE: the relay's reset arrived
            closed = True
            break
        time.sleep(0.2)
    STATS.event("half-open pairs ended by the relay (server side)" if closed
                else "half-open pairs NOT ended (server side)")
    sock.close()


def serve_relayed(sock, stop):
    """The Python servers' backend: echo; a client starting HOLD gets no EOF back (its
    pair is left half-open for the relay's half-close timeout)."""
    sock.settimeout(1.0)
    hold = None
    try:
        while not stop.is_set():
            try:
                d = sock.recv(65536)
            except socket.timeout:
                continue
            if not d:
                break
            if hold is None:
                hold = d.startswith(b"HOLD")
            if not hold:
                sock.sendall(d)
        if hold:
            hold_half_open(sock)
            return
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.close()


class PySession:
    """A server written here: v1 (certificate) or v2 (token), optional warm connections,
    optional replays of its accept ids and warm tickets from other addresses."""

    def __init__(self, env, v2, token=None, name=None, lazy=False, warm=0, replays=False,
                 label="py"):
        self.env, self.v2, self.token, self.name = env, v2, token, name
        self.lazy, self.warm_target, self.replays, self.label = lazy, warm, replays, label
        self.stop = threading.Event()
        self.wlock = threading.Lock()
        self.threads = []
        self.serial = 0
        self.warm_live = 0
        self.accepts = 0
        self.public = self.reverse = None
        self.secret = None

    def open(self):
        self.sock = self.env.control_tls(self.v2, cert=not self.v2)
        self.lines = Lines(self.sock)
        if self.v2:
            hello = "hello 2"
            if self.token:
                hello += f" token={self.token}"
            if self.name:
                hello += f" name={self.name}"
            self.send(hello)
        while self.public is None or self.reverse is None:
            line = self.lines.readline(10.0)
            if line is None:
                raise RuntimeError(f"{self.label}: closed before the listener lines")
            f = line.split()
            if f and f[0] == "welcome":
                self.secret = bytes.fromhex(f[1].split("=", 1)[1])
            elif f and f[0] == "public_listener":
                self.public = parse_hostport(f[1])
            elif f and f[0] == "reverse_listener":
                self.reverse = parse_hostport(f[1])
            elif f and f[0] in ("error", "no_available_listeners"):
                raise RuntimeError(f"{self.label}: {line}")
        self._spawn(self._control_loop)
        if self.warm_target and self.secret:
            self._spawn(self._warm_loop)
        STATS.event(f"python {'v2' if self.v2 else 'v1'} sessions opened")
        return self

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads = [x for x in self.threads if x.is_alive()] + [t]

    def send(self, line):
        with self.wlock:
            self.sock.sendall(line.encode() + b"\r\n")

    def _control_loop(self):
        while not self.stop.is_set():
            try:
                line = self.lines.readline(1.0)
            except socket.timeout:
                continue
            except (OSError, ssl.SSLError):
                break
            if line is None:
                break
            f = line.split()
            if not f:
                continue
            if f[0] == "ping":
                try:
                    self.send("pong")
                except OSError:
                    break
            elif f[0] == "new_connection":
                STATS.event("new_connection lines")
                if not self.lazy:
                    self._spawn(self._answer, f[1] if len(f) > 1 else None)
        if not self.stop.is_set():
            STATS.event(f"{self.label}: control connection ended by the relay")

    def _answer(self, conn_id):
        try:
            s = tcp(self.reverse, timeout=10.0)
            if conn_id:
                s.sendall(f"accept {conn_id}\r\n".encode())
                self.accepts += 1
                if self.replays and self.accepts % 3 == 0:
                    threading.Thread(target=bad_replay, args=(self.env, self.reverse,
                                     f"accept {conn_id}", "replayed accept id"), daemon=True).start()
        except OSError:
            STATS.event(f"{self.label}: reverse connect failed")
            return
        serve_relayed(s, self.stop)

    def _ticket(self, serial):
        tag = hmac.new(self.secret, f"tlsrelay warm ticket {serial}".encode(), hashlib.sha256).digest()
        return f"ready {serial} {tag[:16].hex()}"

    def _warm_loop(self):
        while not self.stop.is_set():
            if self.warm_live < self.warm_target:
                self.serial += 1
                line = self._ticket(self.serial)
                try:
                    s = tcp(self.reverse, timeout=10.0)
                    s.sendall(line.encode() + b"\r\n")
                except OSError:
                    time.sleep(0.5)
                    continue
                self.warm_live += 1
                STATS.event("python warm connections opened")
                self._spawn(self._warm_conn, s)
                if self.replays and self.serial % 2 == 0:
                    threading.Thread(target=bad_replay, args=(self.env, self.reverse, line,
                                     "replayed ready ticket"), daemon=True).start()
            else:
                time.sleep(0.2)

    def _warm_conn(self, s):
        try:
            lines = Lines(s)
            first = None
            deadline = time.monotonic() + float(RELAY_LIMITS["--warm-idle"]) + 10
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    first = lines.readline(1.0)
                    break
                except socket.timeout:
                    continue
                except OSError:
                    break
            if first is None:
                STATS.event("python warm connections expired or closed unused")
                s.close()
                return
            STATS.event("python warm connections joined")
        finally:
            self.warm_live -= 1
        if lines.buf:
            # Client bytes that came with the joined line: answer them as serve_relayed would.
            if lines.buf.startswith(b"HOLD"):
                pass
            else:
                try:
                    s.sendall(lines.buf)
                except OSError:
                    s.close()
                    return
        if lines.buf.startswith(b"HOLD"):
            drain_until_eof(s)
            hold_half_open(s)
            return
        serve_relayed(s, self.stop)

    def close(self, reset=False):
        # The control loop's thread may be inside an SSL read on this socket. Closing
        # the socket under it would free the descriptor number while OpenSSL still
        # reads and writes that number: once another socket of this process gets it,
        # the stale reader steals its bytes and writes TLS alerts into it (that is
        # how two checked transfers came back corrupted). So: wake the reader with
        # SHUT_RD (sends nothing to the relay, keeps the descriptor ours), let every
        # thread finish, and only then close (or reset).
        self.stop.set()
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RD)
        except OSError:
            pass
        for t in self.threads:
            t.join(timeout=25)
        try:
            if reset:
                reset_close(self.sock)
            else:
                self.sock.close()
        except OSError:
            pass


def bad_replay(env, reverse_port, line, kind):
    """A reverse connection from another address replaying a line already used."""
    try:
        s = tcp(reverse_port, random.choice(BAD_SOURCES))
        time.sleep(0.05)
        s.sendall(line.encode() + b"\r\n")
        closed, secs, got = wait_closed(s, 5.0)
        s.close()
        STATS.bad_result(kind, "closed" if closed and not got else
                         ("closed after sending data" if closed else "NOT closed within 5 s"))
    except OSError as e:
        STATS.bad_result(kind, f"connect failed: {_classify(e)}")


# --------------------------------------------------------------------------- bad inputs

class BadInputs:
    """Each kind returns an outcome string; 'NOT ...' outcomes are unexpected (the relay
    did not end what it should have within the bound)."""

    def __init__(self, env, lab, lazy, stable_v2_public):
        self.env, self.lab, self.lazy, self.v2pub = env, lab, lazy, stable_v2_public
        # kind -> (function, bound in s, weight)
        self.kinds = {
            "wrong token": (self.wrong_token, 15, 3),
            "line after hello before welcome": (self.line_before_welcome, 8, 3),
            "over-long control line (v2 hello)": (self.long_line_v2, 8, 2),
            "over-long control line (v1 session)": (self.long_line_v1, 8, 1),
            "over-long accept line": (self.long_accept, 8, 2),
            "bad accept id": (self.bad_accept, 8, 3),
            "bad ready ticket": (self.bad_ready, 8, 3),
            "silent reverse connection": (self.silent_reverse, ACCEPT_LINE_TIMEOUT + 6, 2),
            "client reset while waiting": (self.client_reset_waiting, 5, 3),
            "client spoke then reset while waiting": (self.client_spoke_reset, 5, 2),
            "client never speaks (waiting)": (self.client_silent_waiting, 8, 2),
            "client never speaks (joined, idle timeout)": (self.client_silent_joined,
                                                          float(RELAY_LIMITS["--idle-timeout"]) + 12, 1),
            "half-open pair (half-close timeout)": (self.half_open, 16, 2),
            "TLS handshake stopped midway (partial ClientHello)": (self.tls_partial,
                                                                  HANDSHAKE_TIMEOUT + 6, 2),
            "TLS handshake stopped midway (after ServerHello)": (self.tls_stall,
                                                                HANDSHAKE_TIMEOUT + 6, 2),
            "v2 handshake, no hello": (self.no_hello, 8, 2),
            "v1 without client certificate": (self.v1_no_cert, 8, 1),
            "plain-text garbage on the control port": (self.garbage, 8, 1),
            "handshake flood from one address (12 > per-source 8)": (self.handshake_flood,
                                                                     HANDSHAKE_TIMEOUT + 8, 1),
            "unchecked reverse flood from one address (40 > 32)": (self.reverse_flood,
                                                                   ACCEPT_LINE_TIMEOUT + 8, 1),
            "control connection burst from one address (150, rate 50/s)": (self.control_burst, 15, 1),
            "client burst from one address (250, rate 100/s, max-pending 64)": (self.client_burst, 12, 1),
        }

    @staticmethod
    def src():
        return random.choice(BAD_SOURCES)

    def _tls_v2(self, src, cert=False):
        return self.env.control_tls(True, cert, src)

    def wrong_token(self):
        s = self._tls_v2(self.src())
        s.sendall(f"hello 2 token=wrong-{random.randint(0, 1 << 30)}\r\n".encode())
        lines = Lines(s)
        try:
            first = lines.readline(14.0)
        except socket.timeout:
            s.close()
            return "NOT answered within 14 s"
        except (OSError, ssl.SSLError):
            return "closed (no line)"
        closed, _, _ = wait_closed(s, 5.0)
        s.close()
        if first and first.startswith("welcome"):
            return "NOT refused: welcomed"
        if not closed:
            return "NOT closed after the refusal"
        return "refused: " + (" ".join(first.split()[:2]) if first else "closed without a line")

    def line_before_welcome(self):
        s = self._tls_v2(self.src())
        # hello with a token the relay does not know (its refusal is slowed down:
        # the flood the credit bound is for) and a second line in one write. With a
        # good token the relay may have welcomed the server before it reads the
        # second line (the actors can answer a hello between two reads of the io
        # thread); a line after the welcome is allowed, so that case proves nothing.
        s.sendall(f"hello 2 token=not-a-token-{random.randint(0, 1 << 30)}\r\nping\r\n".encode())
        lines, seen = Lines(s), []
        try:
            while True:
                line = lines.readline(6.0)
                if line is None:
                    break
                seen.append(line.split()[0] if line.split() else "")
        except socket.timeout:
            s.close()
            return "NOT closed within 6 s: got " + " ".join(seen)
        except (OSError, ssl.SSLError):
            pass
        s.close()
        return "session ended: got " + (" ".join(seen[:2]) or "nothing")

    def long_line_v2(self):
        s = self._tls_v2(self.src())
        try:
            s.sendall(b"hello 2 token=" + b"x" * 2000 + b"\r\n")
        except (OSError, ssl.SSLError):
            s.close()
            return "closed (while we were still sending)"
        closed, _, _ = wait_closed(s, 6.0)
        s.close()
        return "closed" if closed else "NOT closed within 6 s"

    def long_line_v1(self):
        s = self.env.control_tls(False, True, self.src())
        lines = Lines(s)
        seen = 0
        while seen < 2:
            line = lines.readline(5.0)
            if line is None:
                s.close()
                return "closed before the listener lines"
            seen += line.startswith(("public_listener", "reverse_listener"))
        s.sendall(b"y" * 1500 + b"\r\n")
        closed, _, _ = wait_closed(s, 6.0)
        s.close()
        return "session ended" if closed else "NOT closed within 6 s"

    def _reverse_target(self):
        # Mostly the lab session; sometimes the stable expose's pair, whose waiting
        # clients must be unaffected (checked traffic runs through it).
        return self.env.reverse_of(self.v2pub) if random.random() < 0.3 else self.lab.reverse

    def _reverse_line(self, line):
        s = tcp(self._reverse_target(), self.src())
        s.sendall(line)
        closed, _, got = wait_closed(s, 6.0)
        s.close()
        return ("closed" if not got else "closed after data") if closed else "NOT closed within 6 s"

    def long_accept(self):
        return self._reverse_line(b"accept " + b"a" * 2000 + b"\r\n")

    def bad_accept(self):
        return self._reverse_line(f"accept {os.urandom(16).hex()}\r\n".encode())

    def bad_ready(self):
        return self._reverse_line(f"ready {random.randint(1, 1 << 40)} {os.urandom(16).hex()}\r\n".encode())

    def silent_reverse(self):
        s = tcp(self._reverse_target(), self.src())
        closed, secs, _ = wait_closed(s, ACCEPT_LINE_TIMEOUT + 5)
        s.close()
        return "closed at the accept-line timeout" if closed else "NOT closed"

    def client_reset_waiting(self):
        s = tcp(self.lazy.public, self.src())
        time.sleep(random.uniform(0.05, 1.0))
        reset_close(s)
        return "reset sent"

    def client_spoke_reset(self):
        s = tcp(self.lazy.public, self.src())
        s.sendall(os.urandom(100))
        time.sleep(random.uniform(0.05, 1.0))
        reset_close(s)
        return "reset sent"

    def client_silent_waiting(self):
        s = tcp(self.lazy.public, self.src())
        closed, secs, _ = wait_closed(s, 6.0)
        s.close()
        return "closed at the pending timeout" if closed else "NOT closed within 6 s"

    def client_silent_joined(self):
        s = tcp(self.v2pub, self.src())
        bound = float(RELAY_LIMITS["--idle-timeout"]) + 10
        closed, secs, _ = wait_closed(s, bound)
        s.close()
        if not closed:
            return f"NOT closed within {bound:.0f} s"
        return "closed at the idle timeout" if secs >= 25 else f"closed early ({secs:.0f} s)"

    def half_open(self):
        s = tcp(self.lab.public, self.src())
        s.sendall(b"HOLD" + os.urandom(100))
        s.shutdown(socket.SHUT_WR)
        closed, secs, _ = wait_closed(s, 14.0)
        s.close()
        if not closed:
            return "NOT ended within 14 s"
        return "reset at the half-close timeout" if secs >= 4 else f"ended early ({secs:.1f} s)"

    def _client_hello(self, v2=True):
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.env.ctx[(v2, False)].wrap_bio(inc, out)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return out.read()

    def tls_partial(self, src=None):
        s = tcp(self.env.control, src or self.src())
        hello = self._client_hello()
        s.sendall(hello[:len(hello) // 2])
        closed, secs, _ = wait_closed(s, HANDSHAKE_TIMEOUT + 5)
        s.close()
        return "closed at the handshake timeout" if closed else "NOT closed"

    def tls_stall(self):
        s = tcp(self.env.control, self.src())
        s.sendall(self._client_hello())
        closed, secs, _ = wait_closed(s, HANDSHAKE_TIMEOUT + 5)
        s.close()
        return "closed at the handshake timeout" if closed else "NOT closed"

    def no_hello(self):
        s = self._tls_v2(self.src())
        closed, secs, _ = wait_closed(s, 6.0)
        s.close()
        return "closed at the hello timeout" if closed else "NOT closed within 6 s"

    def v1_no_cert(self):
        try:
            s = self.env.control_tls(False, False, self.src())
        except (OSError, ssl.SSLError):
            return "refused in the handshake"
        closed, _, got = wait_closed(s, 6.0)
        s.close()
        return ("refused" if not got else "NOT refused: got lines") if closed else "NOT closed"

    def garbage(self):
        s = tcp(self.env.control, self.src())
        s.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(64))
        closed, _, _ = wait_closed(s, 6.0)
        s.close()
        return "closed" if closed else "NOT closed within 6 s"

    def _flood(self, port, src, n, bound, payload_fn=None):
        """n connections from src at once; (refused at once, closed later, left open)."""
        socks, refused = [], 0
        for _ in range(n):
            try:
                s = tcp(port, src)
                if payload_fn:
                    s.sendall(payload_fn())
                socks.append(s)
            except OSError:
                refused += 1   # closed by the relay before we could even send
        when = wait_all_closed(socks, bound)
        for s in socks:
            s.close()
        refused += sum(1 for w in when if w is not None and w < 2.0)
        later = sum(1 for w in when if w is not None and w >= 2.0)
        return refused, later, sum(1 for w in when if w is None)

    def handshake_flood(self):
        def partial():
            h = self._client_hello()
            return h[:len(h) // 2]
        refused, later, left = self._flood(self.env.control, FLOOD_HANDSHAKES_SRC, 12,
                                           HANDSHAKE_TIMEOUT + 5, partial)
        if left:
            return "NOT all closed"
        return f"{refused} refused at once, {later} closed at the handshake timeout"

    def reverse_flood(self):
        refused, later, left = self._flood(self.lab.reverse, FLOOD_REVERSE_SRC, 40, ACCEPT_LINE_TIMEOUT + 5)
        if left:
            return "NOT all closed"
        return f"{refused} refused at once, {later} closed at the accept-line timeout"

    def control_burst(self):
        n = 0
        for _ in range(150):
            try:
                s = tcp(self.env.control, FLOOD_CONTROL_SRC)
                s.close()
                n += 1
            except OSError:
                pass
        return f"{n} connected and closed"

    def client_burst(self):
        socks = []
        for _ in range(250):
            try:
                socks.append(tcp(self.lazy.public, FLOOD_CLIENT_SRC))
            except OSError:
                pass
        t0 = time.monotonic()
        open_ = 0
        for s in socks:
            closed, _, _ = wait_closed(s, max(0.1, 8 - (time.monotonic() - t0)))
            open_ += not closed
            s.close()
        return "NOT all closed" if open_ else "all closed (refused or pending timeout)"

    def run(self, deadline, stop):
        """Launches bad inputs at random until deadline; at most 24 at once; a kind is
        launched only if its bound ends before the deadline."""
        sem = threading.Semaphore(24)
        threads = []
        names = list(self.kinds)
        weights = [self.kinds[k][2] for k in names]
        while not stop.is_set() and time.monotonic() < deadline:
            kind = random.choices(names, weights)[0]
            fn, bound, _ = self.kinds[kind]
            if time.monotonic() + bound > deadline:
                kind = "client reset while waiting"
                fn, bound, _ = self.kinds[kind]
                if time.monotonic() + bound > deadline:
                    break
            if not sem.acquire(timeout=1.0):
                continue

            def one(kind=kind, fn=fn):
                try:
                    STATS.bad_result(kind, fn())
                except Exception as e:
                    STATS.bad_result(kind, f"client error: {_classify(e)}")
                finally:
                    sem.release()

            t = threading.Thread(target=one, daemon=True)
            t.start()
            threads = [x for x in threads if x.is_alive()] + [t]
            stop.wait(random.uniform(0.05, 0.25))
        return threads


# --------------------------------------------------------------------------- relay sampling

class RelayLog:
    """Counts from the relay's log (info level), read incrementally."""

    PATTERNS = {
        "sessions started": re.compile(r"session \S+ started"),
        "sessions ended (had a pair)": re.compile(r"session \S+ ended \([^)]*\): public port"),
        "sessions ended (before a pair)": re.compile(r"session \S+ ended \([^)]*\)$"),
        "authentication failures": re.compile(r"authentication failed"),
        "TLS handshake timeouts": re.compile(r"TLS handshake timed out"),
        "TLS handshake refusals": re.compile(r"refused: TLS handshake"),
        "no hello in time": re.compile(r"no hello within"),
        "over-long control lines": re.compile(r"line longer than"),
        "reverse connections refused (bad id/ticket)": re.compile(r"reverse connection from \S+ refused"),
        "clients closed at the pending timeout": re.compile(r"no reverse connection within"),
        "clients closed: too many waiting": re.compile(r"clients already waiting"),
        "v1 without certificate refused": re.compile(r"protocol v1 without a client certificate"),
        "warm connections over the limit": re.compile(r"warm connections already kept"),
        "errors": re.compile(r"\[error\]|\[critical\]"),
    }
    REFUSED_FIRST = re.compile(r"refused a connection.*?: (.+?) \(see (\S+)\)")
    REFUSED_MORE = re.compile(r"refused (\d+) more connection\(s\) in the last second: (.+?) \(see (\S+)\)")

    def __init__(self, paths):
        self.paths = paths
        self.offsets = {p: 0 for p in paths}
        self.partial = {p: "" for p in paths}
        self.counts = collections.Counter()
        self.refusals = collections.Counter()   # by the flag named
        self.error_lines = []

    def update(self):
        for p in self.paths:
            try:
                with open(p, "r", errors="replace") as f:
                    f.seek(self.offsets[p])
                    chunk = f.read()
                    self.offsets[p] = f.tell()
            except OSError:
                continue
            text = self.partial[p] + chunk
            lines = text.split("\n")
            self.partial[p] = lines.pop()
            for line in lines:
                for k, rx in self.PATTERNS.items():
                    if rx.search(line):
                        self.counts[k] += 1
                        if k == "errors" and len(self.error_lines) < 20:
                            self.error_lines.append(line)
                m = self.REFUSED_MORE.search(line)
                if m:
                    self.refusals[m.group(3)] += int(m.group(1))
                    continue
                m = self.REFUSED_FIRST.search(line)
                if m:
                    self.refusals[m.group(2)] += 1

    def live_sessions(self):
        return self.counts["sessions started"] - self.counts["sessions ended (had a pair)"]


def relay_sockets(pid, control_port):
    """Relay descriptors by kind and its TCP sockets by state and port class."""
    fds = {"total": 0, "socket": 0, "pipe": 0, "other": 0}
    inodes = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for n in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{n}")
        except OSError:
            continue
        fds["total"] += 1
        if target.startswith("socket:["):
            fds["socket"] += 1
            inodes.add(target[8:-1])
        elif target.startswith("pipe:["):
            fds["pipe"] += 1
        else:
            fds["other"] += 1
    conns = collections.Counter()
    rev_lo, pub_lo = control_port + 1, control_port + 1 + PORT_COUNT // 2
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for row in f:
                    cols = row.split()
                    if cols[9] not in inodes:
                        continue
                    port = int(cols[1].rsplit(":", 1)[1], 16)
                    state = cols[3]
                    if state == "0A":
                        conns["listening"] += 1
                        continue
                    cls = ("control" if port == control_port else
                           "reverse" if rev_lo <= port < pub_lo else
                           "public" if pub_lo <= port <= control_port + PORT_COUNT else "other")
                    conns[cls] += 1
                    conns["connections"] += 1
        except OSError:
            pass
    return fds, conns


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "Threads:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])
    except OSError:
        return None
    return out


class Sampler:
    def __init__(self, relay, control_port, relay_log):
        self.relay, self.control, self.log = relay, control_port, relay_log
        self.samples = []

    def sample(self, phase):
        self.log.update()
        st = proc_status(self.relay.pid)
        sk = relay_sockets(self.relay.pid, self.control)
        if st is None or sk is None:
            return None
        fds, conns = sk
        s = {
            "t": round(time.monotonic() - T0, 1), "phase": phase,
            "rss_kib": st.get("VmRSS"), "threads": st.get("Threads"),
            "fds": fds["total"], "fd_sockets": fds["socket"], "fd_pipes": fds["pipe"],
            "fd_other": fds["other"],
            "sessions": self.log.live_sessions(),
            "conn_control": conns["control"], "conn_public": conns["public"],
            "conn_reverse": conns["reverse"], "connections": conns["connections"],
        }
        # Actor count proxy: one control_session per live session, at most one pair_broker
        # per relay connection on a public port (waiting or joined clients).
        s["actors_proxy"] = s["sessions"] + s["conn_public"]
        self.samples.append(s)
        return s


# --------------------------------------------------------------------------- the soak

class Soak:
    def __init__(self, args):
        self.args = args
        self.build = Path(args.build).resolve()
        self.out = Path(args.out).resolve()
        self.tmp = Path(tempfile.mkdtemp(prefix="tlsrelay-soak-"))
        self.stop = threading.Event()
        self.rate = RateLimiter(CHECKED_RATE)
        self.servers = {}          # stable targets: label -> public port
        self.children = {}
        self.exit_codes = {}
        self.notes = []

    # ----- set-up
    def start_relay(self):
        keys = self.tmp / "keys"
        subprocess.run([str(self.build / "tlsrelay"), "certs", "init", str(keys)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        tokens = self.tmp / "tokens"
        tokens.write_text("".join(f"{t}\n" for t in TOKENS.values()))
        self.keys = keys
        self.port = free_block(PORT_COUNT + 1)
        self.relay_argv = [str(self.build / "tlsrelay"), "serve", "--listen", "127.0.0.1",
                           "--port", str(self.port), "--port-count", str(PORT_COUNT),
                           "--keys", str(keys), "--tokens", str(tokens), "--log-level", "info",
                           # stopped once the load has settled: drains, within stop(timeout=10)
                           "--drain-timeout", "5"]
        for k, v in RELAY_LIMITS.items():
            self.relay_argv += [k, v]
        self.relay = Child("relay", self.relay_argv, self.tmp)
        self.relay.wait_for(r"listening on")
        self.env = Env(self.build, keys, self.port)
        self.rlog = RelayLog([self.relay.out_path, self.relay.err_path])
        self.sampler = Sampler(self.relay, self.port, self.rlog)

    def start_agent(self, label):
        c = Child(label, [str(self.build / "tlsrelay-bench"), "agent", "--relay", f"127.0.0.1:{self.port}",
                          "--keys", str(self.keys), "--backend", "echo"], self.tmp)
        return c, parse_hostport(c.wait_for(r"^public (\S+)").group(1))

    def start_expose(self, label, token, warm, name=None):
        argv = [str(self.build / "tlsrelay"), "expose", f"127.0.0.1:{self.echo_port}",
                "--relay", f"127.0.0.1:{self.port}", "-k", str(self.keys), "--token", token,
                "--warm", str(warm), "--log-level", "warn"]
        if name:
            argv += ["--name", name]
        c = Child(label, argv, self.tmp)
        return c, parse_hostport(c.wait_for(r"exposing \S+ on (\S+)").group(1))

    def start_backend(self):
        self.echo = Child("echo-backend", [str(self.build / "tlsrelay-bench"), "echo", "--listen",
                                           "127.0.0.1:0"], self.tmp)
        self.echo_port = parse_hostport(self.echo.wait_for(r"listening on (\S+)").group(1))

    def start_example(self):
        exe = self.build / "examples" / "relayed_echo_server"
        if not exe.exists():
            self.notes.append("build/examples/relayed_echo_server missing: not used")
            return None
        c = Child("relayed_echo_server", [str(exe), f"127.0.0.1:{self.port}", "--ca",
                                          str(self.keys / "ca.crt.pem"), "--token", TOKENS["stable"],
                                          "--name", "example"], self.tmp)
        return c, parse_hostport(c.wait_for(r"public address (\S+)").group(1))

    # ----- load parts
    def churn_clients(self, deadline):
        labels = list(self.servers)
        while not self.stop.is_set() and time.monotonic() < deadline:
            if not self.rate.take(self.stop):
                break
            label = random.choice(labels)
            checked_exchange(self.servers[label], f"churn via {label}")

    def bulk_loop(self, deadline):
        labels = list(self.servers)
        while not self.stop.is_set() and time.monotonic() < deadline - 20:
            if not self.rate.take(self.stop):
                break
            label = random.choice(labels)
            checked_bulk(self.servers[label], f"bulk via {label}")
            self.stop.wait(0.5)

    def churn_v1_agent(self, deadline):
        n = 0
        while not self.stop.is_set() and time.monotonic() < deadline - 30:
            n += 1
            try:
                c, pub = self.start_agent(f"churn-agent")
            except RuntimeError as e:
                STATS.event("churn v1 agent: start failed")
                self.notes.append(f"churn v1 agent start failed: {e}")
                self.stop.wait(2)
                continue
            STATS.event("churn v1 agent: sessions")
            for i in range(random.randint(5, 20)):
                if self.stop.is_set() or not self.rate.take(self.stop):
                    break
                checked_exchange(pub, "churn via v1 agent (reconnecting)")
            if n % 4 == 0 and self.rate.take(self.stop):
                checked_bulk(pub, "bulk via v1 agent (reconnecting)", 1 << 20)
            code = c.stop()
            self.exit_codes.setdefault("churn v1 agent", collections.Counter())[code] += 1
            self.stop.wait(random.uniform(0.5, 2))

    def churn_v2_expose(self, deadline):
        n = 0
        while not self.stop.is_set() and time.monotonic() < deadline - 30:
            n += 1
            name = "churn-v2" if n % 2 else None
            try:
                c, pub = self.start_expose("churn-expose", TOKENS["churn"], 4, name)
            except RuntimeError as e:
                STATS.event("churn v2 expose: start failed")
                self.notes.append(f"churn v2 expose start failed: {e}")
                self.stop.wait(2)
                continue
            STATS.event("churn v2 expose: sessions")
            for i in range(random.randint(5, 20)):
                if self.stop.is_set() or not self.rate.take(self.stop):
                    break
                checked_exchange(pub, "churn via v2 expose (reconnecting)")
            if n % 4 == 0 and self.rate.take(self.stop):
                checked_bulk(pub, "bulk via v2 expose (reconnecting)", 1 << 20)
            code = c.stop()
            self.exit_codes.setdefault("churn v2 expose", collections.Counter())[code] += 1
            self.stop.wait(random.uniform(0.5, 2))

    def churn_python_sessions(self, deadline):
        n = 0
        while not self.stop.is_set() and time.monotonic() < deadline - 30:
            n += 1
            v2 = n % 2 == 0
            name = f"short-{n % 3}" if v2 and n % 4 == 0 else None
            s = PySession(self.env, v2, TOKENS["short"] if v2 else None, name,
                          warm=2 if v2 and n % 3 == 0 else 0, label="short session")
            try:
                s.open()
            except Exception as e:
                STATS.event("short python session: open failed")
                self.notes.append(f"short python session open failed: {e}")
                s.close()
                self.stop.wait(1)
                continue
            for i in range(random.randint(0, 3)):
                if self.stop.is_set() or not self.rate.take(self.stop):
                    break
                checked_exchange(s.public, f"churn via python {'v2' if v2 else 'v1'} short session")
            self.stop.wait(random.uniform(0.2, 2.0))
            reset = random.random() < 0.3
            STATS.event("short python sessions closed by " + ("reset" if reset else "close"))
            s.close(reset=reset)
            self.stop.wait(random.uniform(0.2, 1.0))

    def sampler_loop(self, deadline):
        next_t = time.monotonic()
        while not self.stop.is_set() and time.monotonic() < deadline:
            s = self.sampler.sample("load")
            if s is None:
                self.notes.append("relay gone during the load")
                self.stop.set()
                return
            log(f"sample: rss {s['rss_kib']} KiB, fds {s['fds']} (pipes {s['fd_pipes']}), "
                f"threads {s['threads']}, sessions {s['sessions']}, connections {s['connections']}")
            next_t += SAMPLE_EVERY
            self.stop.wait(max(0.0, min(next_t, deadline) - time.monotonic()))

    # ----- phases
    def warmup(self):
        """A short load (v1 agent + v2 expose, churn and one bulk each) so that the
        baseline includes the relay's first allocations and spare pipes."""
        agent, apub = self.start_agent("warmup-agent")
        exp, epub = self.start_expose("warmup-expose", TOKENS["stable"], 4)
        end = time.monotonic() + WARMUP_SECONDS
        checked_bulk(apub, "warm-up")
        checked_bulk(epub, "warm-up")
        while time.monotonic() < end:
            if self.rate.take(self.stop):
                checked_exchange(random.choice([apub, epub]), "warm-up")
        self.exit_codes.setdefault("warm-up servers", collections.Counter())[agent.stop()] += 1
        self.exit_codes["warm-up servers"][exp.stop()] += 1

    def settle(self, reference, phase):
        """Waits (bounded) until the relay holds no connection and no session and its
        socket descriptors are back to `reference`; returns the sample and seconds."""
        t0 = time.monotonic()
        s = None
        while time.monotonic() - t0 < SETTLE_LIMIT:
            self.rlog.update()
            sk = relay_sockets(self.relay.pid, self.port)
            if sk and sk[1]["connections"] == 0 and self.rlog.live_sessions() == 0 and \
                    (reference is None or sk[0]["socket"] <= reference["fd_sockets"]):
                break
            time.sleep(0.5)
        s = self.sampler.sample(phase)
        return s, time.monotonic() - t0

    def run(self):
        resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
        self.started_at = datetime.datetime.now(datetime.timezone.utc)
        self.start_relay()
        log(f"relay pid {self.relay.pid}, control port {self.port}, run dir {self.tmp}")
        self.s_start = self.sampler.sample("start")
        self.start_backend()
        self.warmup()
        self.s_base, secs = self.settle(None, "baseline")
        log(f"baseline after warm-up (settled in {secs:.1f} s): {self.s_base}")

        # Stable servers for the whole load.
        a, self.servers["v1 agent"] = self.start_agent("stable-agent")
        e, self.servers["v2 expose (warm 8)"] = self.start_expose("stable-expose", TOKENS["stable"], 8, "stable")
        ex = self.start_example()
        if ex:
            self.servers["v2 relayed_echo_server example"] = ex[1]
        self.lab = PySession(self.env, True, TOKENS["lab"], "lab", warm=2, replays=True, label="lab").open()
        self.lazy = PySession(self.env, True, TOKENS["lab"], None, lazy=True, label="lazy").open()
        self.servers["python v2 lab (warm 2)"] = self.lab.public
        stable_children = [a, e] + ([ex[0]] if ex else [])

        load_start = time.monotonic()
        deadline = load_start + self.args.seconds
        self.load_start, self.deadline = load_start, deadline
        bad = BadInputs(self.env, self.lab, self.lazy, self.servers["v2 expose (warm 8)"])
        workers = [threading.Thread(target=self.sampler_loop, args=(deadline,), daemon=True)]
        for _ in range(3):
            workers.append(threading.Thread(target=self.churn_clients, args=(deadline,), daemon=True))
        workers.append(threading.Thread(target=self.bulk_loop, args=(deadline,), daemon=True))
        workers.append(threading.Thread(target=self.churn_v1_agent, args=(deadline,), daemon=True))
        workers.append(threading.Thread(target=self.churn_v2_expose, args=(deadline,), daemon=True))
        workers.append(threading.Thread(target=self.churn_python_sessions, args=(deadline,), daemon=True))
        for w in workers:
            w.start()
        log(f"load for {self.args.seconds:.0f} s")
        bad_threads = bad.run(deadline, self.stop)
        self.stop.wait(max(0.0, deadline - time.monotonic()))
        # The load ends: no new work; what runs finishes within its own bound.
        self.stop.set()
        for w in workers + bad_threads:
            w.join(timeout=60)
        stuck = [w for w in workers + bad_threads if w.is_alive()]
        if stuck:
            self.notes.append(f"{len(stuck)} load threads still running 60 s after the end")
        self.s_end_load = self.sampler.samples[-1] if self.sampler.samples else None
        # Stop the servers (each by its PID) and the Python sessions.
        for c in stable_children:
            self.exit_codes.setdefault("stable servers", collections.Counter())[c.stop()] += 1
        self.lab.close()
        self.lazy.close()
        log("load stopped; waiting for the relay to settle")
        self.s_final, self.settle_s = self.settle(self.s_base, "after")
        log(f"after: {self.s_final} (settled in {self.settle_s:.1f} s)")
        self.echo.stop()
        self.rlog.update()
        self.relay_exit = self.relay.stop(timeout=10)
        self.rlog.update()
        log(f"relay exit code {self.relay_exit}")

    def cleanup(self):
        Child.stop_all()


# --------------------------------------------------------------------------- report

def machine():
    info = {"nproc": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "loadavg": os.getloadavg()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                        text=True, timeout=10).stdout.strip()
    except Exception:
        info["commit"] = "?"
    return info


def evaluate(soak):
    crit = []
    load = [s for s in soak.sampler.samples if s["phase"] == "load"]
    after_warm = [s for s in load if s["t"] - (soak.load_start - T0) >= RSS_WARMUP_FRACTION * soak.args.seconds]
    rss_w = after_warm[0]["rss_kib"] if after_warm else None
    rss_end = load[-1]["rss_kib"] if load else None
    if rss_w and rss_end:
        growth = 100.0 * (rss_end - rss_w) / rss_w
        crit.append(("RSS growth after warm-up < 5 %", growth < RSS_GROWTH_LIMIT_PCT,
                     f"{rss_w} KiB at t={after_warm[0]['t']} s (first sample after "
                     f"{int(RSS_WARMUP_FRACTION * 100)} % of the load) → {rss_end} KiB at the end of the load: "
                     f"{growth:+.2f} %"))
    else:
        crit.append(("RSS growth after warm-up < 5 %", False, "not enough samples"))
    b, f = soak.s_base, soak.s_final
    if b and f:
        ok_sock = f["fd_sockets"] == b["fd_sockets"] and f["fd_other"] == b["fd_other"]
        ok_pipe = f["fd_pipes"] <= SPARE_PIPE_FDS
        crit.append(("descriptors back to the baseline", ok_sock and ok_pipe,
                     f"baseline {b['fds']} ({b['fd_sockets']} sockets, {b['fd_pipes']} pipes, "
                     f"{b['fd_other']} other) → after {f['fds']} ({f['fd_sockets']} sockets, "
                     f"{f['fd_pipes']} pipes ≤ {SPARE_PIPE_FDS} spare allowed, {f['fd_other']} other); "
                     f"peak {max(s['fds'] for s in soak.sampler.samples)}"))
        crit.append(("sessions and connections back to the baseline",
                     f["sessions"] == b["sessions"] and f["connections"] == b["connections"],
                     f"baseline {b['sessions']} sessions, {b['connections']} connections → after "
                     f"{f['sessions']} sessions, {f['connections']} connections "
                     f"(settled in {soak.settle_s:.1f} s of at most {SETTLE_LIMIT:.0f})"))
    else:
        crit.append(("descriptors back to the baseline", False, "relay not sampled"))
        crit.append(("sessions and connections back to the baseline", False, "relay not sampled"))
    lost = {k: v for k, v in soak_checked_failures().items() if k not in DELIBERATE}
    total = sum(c["transfers"] for k, c in STATS.checked.items() if k != "warm-up")
    nbytes = sum(c["bytes"] for k, c in STATS.checked.items() if k != "warm-up")
    crit.append(("0 bytes lost or corrupted on checked transfers", not lost,
                 f"{total} checked transfers, {nbytes} bytes verified; failures: "
                 + (", ".join(f"{k} {v}" for k, v in sorted(lost.items())) or "none")))
    unexpected = sum(n for k, v in STATS.bad.items() for o, n in v["outcomes"].items() if o.startswith("NOT"))
    crit.append(("every bad input ended by the relay within its bound", unexpected == 0,
                 f"{sum(v['sent'] for v in STATS.bad.values())} bad inputs, {unexpected} not ended in time"))
    crit.append(("relay exits 0 on SIGTERM", soak.relay_exit == 0, f"exit code {soak.relay_exit}"))
    crit.append(("no error lines in the relay log", soak.rlog.counts["errors"] == 0,
                 f"{soak.rlog.counts['errors']} error lines"))
    return crit


def soak_checked_failures():
    out = collections.Counter()
    for k, c in STATS.checked.items():
        if k != "warm-up":
            out.update(c["failures"])
    return out


def write_report(soak, crit, path_md, path_png):
    m = machine()
    L = []
    L.append("# tlsrelay soak\n")
    ok = all(c[1] for c in crit)
    L.append(f"**Result: {'PASS' if ok else 'FAIL'}** — load {soak.args.seconds:.0f} s, "
             f"started {soak.started_at:%Y-%m-%d %H:%M:%S} UTC.\n")
    L.append("## Criteria\n")
    L.append("| criterion | result | figures |\n|---|---|---|")
    for name, good, text in crit:
        L.append(f"| {name} | {'PASS' if good else 'FAIL'} | {text} |")
    L.append("")
    L.append("## Settings\n")
    L.append(f"- Command: `python3 bench/soak.py --build BUILD --seconds {soak.args.seconds:.0f}` "
             f"(`make soak SOAK_SECONDS={soak.args.seconds:.0f}`)")
    argv = " ".join(Path(a).name if a.startswith("/") and ("/keys" in a or "/tokens" in a
                    or a.endswith("tlsrelay")) else a for a in soak.relay_argv)
    argv = re.sub(r"--port \d+", "--port P", argv)
    L.append(f"- Relay: `{argv}` (P chosen free at run time: {soak.port}; keys from "
             "`tlsrelay certs init` in a temp dir; tokens file with 5 tokens)")
    L.append(f"- Machine: {m.get('cpu', '?')}, {m['nproc']} CPUs, kernel {m['kernel']}, "
             f"Python {m['python']}, commit {m['commit']}, load average at the end "
             f"{m['loadavg'][0]:.2f} (shared machine: other work may have run)")
    L.append(f"- Checked clients from 127.0.0.1 at most {CHECKED_RATE:.0f}/s (under --client-rate), "
             f"bulk {BULK_BYTES >> 20} MiB each way (1 MiB through the reconnecting servers), "
             "bad inputs from 127.0.0.2–9, at most 24 at once.")
    L.append(f"- Samples every {SAMPLE_EVERY:.0f} s. Baseline: after a {WARMUP_SECONDS:.0f} s warm-up load "
             "(a v1 agent and a v2 expose, churn and a bulk transfer each, then stopped) and the relay "
             "settled — so it includes the first allocations and the spare pipes the relay keeps for "
             f"reuse (up to {IDLE_STAGES} idle pipes = {SPARE_PIPE_FDS} descriptors, "
             "protocol/defaults.hpp `idle_stages`). Right after start the relay held "
             f"{soak.s_start['fds']} descriptors ({soak.s_start['fd_sockets']} sockets, "
             f"{soak.s_start['fd_pipes']} pipes) and {soak.s_start['rss_kib']} KiB RSS; after the "
             f"warm-up {soak.s_base['fds']} ({soak.s_base['fd_sockets']} sockets, {soak.s_base['fd_pipes']} pipes) "
             f"and {soak.s_base['rss_kib']} KiB.")
    L.append("- Descriptor criterion: sockets and other descriptors exactly as in the baseline, pipes "
             f"at most {SPARE_PIPE_FDS} (spares by design).")
    L.append("- Sessions are counted from the relay's log (`session ... started` minus `session ... ended "
             "(...): public port`); connections from /proc/net/tcp for the relay's socket inodes, by "
             "local port (control, reverse, public). The relay exports no actor count: *actors (proxy)* "
             "= live sessions (one control_session each) + relay connections on public ports (an upper "
             "bound on the pair_brokers of waiting clients).")
    L.append("")
    L.append("## Samples\n")
    L.append("| t (s) | phase | RSS KiB | threads | fds | sockets | pipes | sessions | conn control | "
             "conn reverse | conn public | actors (proxy) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in soak.sampler.samples:
        L.append(f"| {s['t']} | {s['phase']} | {s['rss_kib']} | {s['threads']} | {s['fds']} | "
                 f"{s['fd_sockets']} | {s['fd_pipes']} | {s['sessions']} | {s['conn_control']} | "
                 f"{s['conn_reverse']} | {s['conn_public']} | {s['actors_proxy']} |")
    L.append("")
    L.append("## Checked traffic\n")
    L.append("Every transfer: random bytes (1 B–64 KiB for churn, 1–4 MiB for bulk) with their SHA-256, "
             "compared byte for byte on return; half of the churn and all bulk transfers end with a "
             "half-close. *bytes* counts both directions of successful transfers.\n")
    L.append("| kind | transfers | ok | bytes | failures |\n|---|---|---|---|---|")
    for k in sorted(STATS.checked):
        c = STATS.checked[k]
        fl = ", ".join(f"{x} {n}" for x, n in sorted(c["failures"].items())) or "0"
        L.append(f"| {k} | {c['transfers']} | {c['ok']} | {c['bytes']} | {fl} |")
    if STATS.failure_notes:
        L.append("\nFirst failures:\n")
        L += [f"- {n}" for n in STATS.failure_notes]
    L.append("")
    L.append("## Bad inputs\n")
    L.append("Outcomes starting with NOT are failures of the relay to end the input within its bound.\n")
    L.append("| kind | sent | outcomes |\n|---|---|---|")
    for k in sorted(STATS.bad):
        v = STATS.bad[k]
        L.append(f"| {k} | {v['sent']} | " + "; ".join(f"{o}: {n}" for o, n in sorted(v["outcomes"].items())) + " |")
    L.append("")
    L.append("## Control sessions and other events\n")
    L.append("| event | count |\n|---|---|")
    for k, v in sorted(STATS.events.items()):
        L.append(f"| {k} | {v} |")
    for k, v in sorted(soak.exit_codes.items()):
        L.append(f"| exit codes of {k} | " + ", ".join(f"{c}: {n}" for c, n in sorted(v.items(), key=str)) + " |")
    L.append("")
    L.append("## From the relay's log\n")
    L.append("| line | count |\n|---|---|")
    for k in RelayLog.PATTERNS:
        L.append(f"| {k} | {soak.rlog.counts[k]} |")
    for k, v in sorted(soak.rlog.refusals.items()):
        L.append(f"| connections refused by {k} | {v} |")
    if soak.rlog.error_lines:
        L.append("\nError lines:\n")
        L += [f"    {x}" for x in soak.rlog.error_lines]
    if soak.notes:
        L.append("\n## Notes\n")
        L += [f"- {n}" for n in soak.notes[:40]]
    L.append(f"\n![soak]({path_png.name})\n")
    path_md.write_text("\n".join(L) + "\n")


def plot(soak, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        soak.notes.append(f"no plot: {e}")
        return
    ss = soak.sampler.samples
    t = [s["t"] - (soak.load_start - T0) for s in ss]
    fig, ax = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    ax[0].plot(t, [s["rss_kib"] / 1024 for s in ss], marker=".")
    ax[0].set_ylabel("RSS (MiB)")
    ax[1].plot(t, [s["fds"] for s in ss], marker=".", label="all")
    ax[1].plot(t, [s["fd_sockets"] for s in ss], marker=".", label="sockets")
    ax[1].plot(t, [s["fd_pipes"] for s in ss], marker=".", label="pipes")
    ax[1].set_ylabel("descriptors")
    ax[1].legend()
    ax[2].plot(t, [s["sessions"] for s in ss], marker=".", label="live sessions (log)")
    ax[2].plot(t, [s["connections"] for s in ss], marker=".", label="relay TCP connections")
    ax[2].plot(t, [s["actors_proxy"] for s in ss], marker=".", label="actors (proxy)")
    ax[2].set_ylabel("count")
    ax[2].legend()
    ax[2].set_xlabel("seconds since the load started (negative: start and warm-up)")
    for a in ax:
        a.axvline(0, color="grey", lw=0.5)
        a.axvline(soak.args.seconds, color="grey", lw=0.5)
        a.grid(alpha=0.3)
    fig.suptitle(f"tlsrelay soak, {soak.args.seconds:.0f} s")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def reexec_for_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    system = "/usr/bin/python3"
    if os.path.realpath(sys.executable) != os.path.realpath(system) and os.path.exists(system):
        probe = subprocess.run([system, "-c", "import matplotlib"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            os.execv(system, [system] + sys.argv)


def main():
    reexec_for_matplotlib()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default="build")
    p.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--name", default="soak", help="stem of the result files")
    p.add_argument("--keep-tmp", action="store_true")
    args = p.parse_args()
    if args.seconds < 30:
        p.error("--seconds: at least 30")
    soak = Soak(args)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        soak.run()
    except BaseException as e:
        log(f"aborted: {e!r}")
        soak.stop.set()
        soak.cleanup()
        raise
    finally:
        soak.cleanup()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    crit = evaluate(soak)
    md, png = out / f"{args.name}.md", out / f"{args.name}.png"
    plot(soak, png)
    write_report(soak, crit, md, png)
    for name, good, text in crit:
        print(f"{'PASS' if good else 'FAIL'}  {name}: {text}")
    print(f"report: {md}")
    if args.keep_tmp:
        print(f"run directory kept: {soak.tmp}")
    else:
        shutil.rmtree(soak.tmp, ignore_errors=True)
    return 0 if all(c[1] for c in crit) else 1


if __name__ == "__main__":
    sys.exit(main())
