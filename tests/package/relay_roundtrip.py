"""A relayed round trip through a real `tlsrelay serve`, for the package tests.

The relay is started on free ports of 127.0.0.1, `tlsrelay expose` (protocol
2, with the keys directory's client certificate) puts a local echo server
behind it, and bytes sent to the public port must come back unchanged. Every
wait has a deadline; a failure raises StepFailed naming what went wrong, with
the output of the processes involved.

(The C++ tests have the same helpers in tests/support/; these scripts drive an
installed package and a traced relay, which the Catch2 support code cannot.)
"""

import os
import random
import re
import select
import signal
import socket
import subprocess
import threading
import time


class StepFailed(Exception):
    """One step of a package test failed; the message says which and why."""


def ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def pick_free_port_range(count):
    """A base port P such that P .. P+count are all bindable on 127.0.0.1,
    outside the kernel's ephemeral range (as tests/support/relay_process.cpp)."""
    eph_low, eph_high = ephemeral_range()
    windows = []
    if eph_low > 10000 + count + 1:
        windows.append((10000, eph_low - count - 1))
    if eph_high + 1 + count < 65535:
        windows.append((eph_high + 1, 65535 - count))
    if not windows:
        windows.append((1024, 65535 - count))
    for _ in range(200):
        first, last = random.choice(windows)
        base = random.randint(first, last)
        held = []
        try:
            for port in range(base, base + count + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(s)
                s.bind(("127.0.0.1", port))
                s.listen(1)
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise StepFailed(f"no range of {count + 1} free ports on 127.0.0.1 after 200 attempts")


class EchoServer:
    """Echoes every connection's bytes back, on 127.0.0.1 and a free port."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        conn.settimeout(30)
        with conn:
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        conn.shutdown(socket.SHUT_WR)
                        return
                    conn.sendall(data)
            except OSError:
                return

    def close(self):
        self.stopping.set()
        self.sock.close()
        self.thread.join(timeout=5)


class Process:
    """A child process whose stdout lines can be awaited and whose stderr is
    kept for failure messages."""

    def __init__(self, label, argv, env=None, signal_child=False):
        self.label = label
        self.argv = argv
        # Under a launcher that forks (strace), signals go to its child.
        self.signal_child = signal_child
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, start_new_session=True)
        self.stdout_lines = []
        self.stderr_chunks = []
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()

    def _drain_stderr(self):
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):
            self.stderr_chunks.append(chunk)

    def stderr_text(self):
        return b"".join(self.stderr_chunks).decode(errors="replace")

    def describe(self):
        out = "\n".join(self.stdout_lines)
        return (f"{self.label}: {' '.join(self.argv)}\n  stdout:\n{out}\n"
                f"  stderr:\n{self.stderr_text()}")

    def wait_line(self, pattern, timeout):
        """The first stdout line matching `pattern` (a regex), read within
        `timeout` seconds."""
        deadline = time.monotonic() + timeout
        buffered = b""
        fd = self.proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepFailed(f"{self.label}: no line matching {pattern!r} within "
                                 f"{timeout} s\n{self.describe()}")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait(timeout=5)
                raise StepFailed(f"{self.label} ended (exit code {self.proc.returncode}) before "
                                 f"printing a line matching {pattern!r}\n{self.describe()}")
            buffered += chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                text = line.decode(errors="replace")
                self.stdout_lines.append(text)
                match = re.search(pattern, text)
                if match:
                    return match

    def _signal_target(self):
        if not self.signal_child:
            return self.proc.pid
        task_dir = f"/proc/{self.proc.pid}/task"
        for tid in os.listdir(task_dir):
            with open(f"{task_dir}/{tid}/children") as f:
                children = f.read().split()
            if children:
                return int(children[0])
        raise StepFailed(f"{self.label}: the launcher has no child process\n{self.describe()}")

    def stop(self, timeout):
        """SIGTERM, then the exit code within `timeout` seconds."""
        if self.proc.poll() is None:
            os.kill(self._signal_target(), signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise StepFailed(f"{self.label} did not exit within {timeout} s of SIGTERM\n"
                             f"{self.describe()}")
        self._stderr_thread.join(timeout=5)
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def echo_through(host, port, payload, timeout=30):
    """Sends `payload` to host:port, half-closes, and returns every byte read
    back until the peer closes."""
    received = bytearray()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)),
                                  daemon=True)
        sender.start()
        while True:
            data = s.recv(65536)
            if not data:
                break
            received += data
        sender.join(timeout=timeout)
    return bytes(received)


def start_relay(tlsrelay, relay_argv, launcher, launcher_forks, port_count, spare_ports):
    """`launcher... tlsrelay serve <relay_argv(spares)> --listen 127.0.0.1
    --port P --port-count N` on a free range of N + 1 + `spare_ports` ports,
    the last `spare_ports` of which are handed to `relay_argv`. Returns the
    process, once listening, and P. A range someone took between the probe
    and the relay's bind (exit code 2 naming one of its ports) is replaced
    by another, as tests/support/relay_process.cpp does, up to 8 times."""
    failures = []
    for _ in range(8):
        port = pick_free_port_range(port_count + spare_ports)
        spares = list(range(port + port_count + 1, port + port_count + 1 + spare_ports))
        relay = Process("relay", list(launcher) + [tlsrelay, "serve"] + relay_argv(spares) +
                        ["--listen", "127.0.0.1", "--port", str(port),
                         "--port-count", str(port_count)],
                        signal_child=launcher_forks)
        try:
            relay.wait_line(r"^tlsrelay: listening on", timeout=30)
            return relay, port
        except StepFailed:
            relay.kill()
            relay._stderr_thread.join(timeout=5)
            err = relay.stderr_text()
            named = {int(n) for n in re.findall(r"\b(\d{4,5})\b", err)}
            if relay.proc.returncode == 2 and \
                    any(port <= n <= port + port_count + spare_ports for n in named):
                failures.append(f"range {port}: {err.strip()}")
                continue
            raise
    raise StepFailed("the relay could not bind a free port range in 8 attempts:\n" +
                     "\n".join(failures))


def round_trip(tlsrelay, keys_dir, relay_argv, launcher=(), launcher_forks=False,
               payload_size=1 << 20, port_count=4, name="package-test", while_up=None,
               spare_ports=0):
    """Starts the relay (start_relay; `relay_argv` is a list, or a function
    of the spare ports returning one), exposes an echo server through it with
    `tlsrelay expose`, checks `payload_size` random bytes come back, calls
    `while_up(spare ports)` if given (the relay and the session still up),
    stops both (SIGTERM to the launcher's child if `launcher_forks`) and
    returns the relay's exit code, which must be 0."""
    argv_of = relay_argv if callable(relay_argv) else (lambda spares: list(relay_argv))
    echo = EchoServer()
    relay = expose = None
    try:
        relay, port = start_relay(tlsrelay, argv_of, launcher, launcher_forks, port_count,
                                  spare_ports)
        spares = list(range(port + port_count + 1, port + port_count + 1 + spare_ports))
        expose = Process("expose", [tlsrelay, "expose", f"127.0.0.1:{echo.port}",
                                    "--relay", f"127.0.0.1:{port}", "--keys", str(keys_dir),
                                    "--name", name])
        public = expose.wait_line(r"exposing \S+ on (\S+):(\d+)$", timeout=30)
        public_host, public_port = public.group(1), int(public.group(2))
        payload = os.urandom(payload_size)
        try:
            echoed = echo_through(public_host, public_port, payload)
        except OSError as e:
            raise StepFailed(f"round trip through {public_host}:{public_port}: {e}\n"
                             f"{relay.describe()}\n{expose.describe()}")
        if echoed != payload:
            raise StepFailed(f"round trip through {public_host}:{public_port}: sent "
                             f"{len(payload)} bytes, got {len(echoed)} back"
                             f"{' (different)' if len(echoed) == len(payload) else ''}")
        if while_up is not None:
            try:
                while_up(spares)
            except (OSError, StepFailed) as e:
                raise StepFailed(f"{e}\n{relay.describe()}")
        expose.stop(timeout=10)
        code = relay.stop(timeout=40)
        if code != 0:
            raise StepFailed(f"relay exited with {code} after SIGTERM, not 0\n{relay.describe()}")
        return code
    finally:
        for p in (expose, relay):
            if p is not None:
                p.kill()
        echo.close()
