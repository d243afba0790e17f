#!/usr/bin/env python3
"""tlsrelay benchmark: the same load against direct, haproxy, ssh -R, tlsrelay v1 and v2.

usage (from the repository root, as root, after building):
    python3 bench/run_bench.py --build BUILD_DIR [--quick]

Everything runs on 127.0.0.1, on ports chosen at run time, in one temporary directory.
Every process started here is ended by its own PID when its measurement is done (and on
Ctrl-C, SIGTERM or any error); every wait has a timeout. Results go to bench/results/
(latest.json, latest.md and PNG plots; --quick writes quick.json, quick.md, quick-*.png).
See bench/README.md for the configurations and the method.

Only the python3 standard library and matplotlib (for the plots) are used.
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"

CONFIGS = ["direct", "haproxy", "ssh", "v1", "v2"]
LABELS = {
    "direct": "direct",
    "haproxy": "haproxy",
    "ssh": "ssh -R",
    "v1": "tlsrelay v1",
    "v2": "tlsrelay v2",
}
LOADS = ["bulk", "latency", "connect", "hold", "sessions", "handshake-flood", "cluster", "io-threads"]
PLACEMENTS = ["split", "shared"]
# direct has no system under test: load and backend are on cpu0 in both placements, so
# it is measured once per repeat and shown under this placement name.
DIRECT_PLACEMENT = "cpu0"

FULL = dict(bulk_streams=4, bulk_seconds=10, round_trips=20000, warmup=2000,
            connect_slots=32, connect_seconds=10, hold_count=5000,
            scale_sessions=[10, 100, 1000, 6000], scale_protocols=[1, 2], scale_connect_seconds=5,
            flood_concurrency=1000, flood_ramp_s=2,
            cluster_idle_sessions=10, cluster_v2_sessions=500, repeats=2)
QUICK = dict(bulk_streams=4, bulk_seconds=2, round_trips=5000, warmup=500,
             connect_slots=32, connect_seconds=2, hold_count=500,
             scale_sessions=[10, 100, 1000], scale_protocols=[1, 2], scale_connect_seconds=2,
             flood_concurrency=1000, flood_ramp_s=2,
             cluster_idle_sessions=10, cluster_v2_sessions=200, repeats=1)
# sessions load: conn/s with the most idle sessions must be at least this share of the
# rate with the fewest ("pairing cost flat")
SCALE_FLAT_FACTOR = 0.9
# sessions load: relay RSS per idle control session with the most sessions, at most
SCALE_RSS_TARGET = 16 * 1024
# handshake-flood load: bulk beside the flood must be at least this share of bulk alone
FLOOD_FACTOR = 0.8
# The relay's admission flags of the handshake-flood load's two relays: its defaults
# (what the load is about), and every per-address and handshake limit off (what the
# limits buy).
FLOOD_LIMITS = {
    "default": [],
    "off": ["--control-rate", "0", "--max-handshakes-per-source", "0", "--max-handshakes", "0"],
}
FLOOD_LIMITS_LABEL = {"default": "defaults", "off": "off"}
# the flood outlasts the bulk beside it by this much (the bulk's connect and drain)
FLOOD_TAIL_S = 3
# cluster load: the node under test and the two idle nodes of its cluster of three (name,
# address); only the first is on the system under test's CPU
CLUSTER_NODES = [("bench-a", "127.0.0.1"), ("bench-b", "127.0.0.3"), ("bench-c", "127.0.0.4")]
CLUSTER_MODES = ["alone", "clustered"]
CLUSTER_UP_TIMEOUT = 30.0  # until the node under test lists both peers "up" in /status
# io-threads load: the relay's --io-threads values compared, and the placement only this load
# uses: relay, agent and load tool each allowed on cpu0 and cpu1 (a second io thread can
# only help when the relay may run on a second CPU)
IO_THREADS = (1, 2)
BOTH_PLACEMENT = "both"
BOTH_CPUS = "0,1"
IO_MOVED_METRIC = "tlsrelay_pairs_moved_between_io_threads_total"

READY_TIMEOUT = 20.0      # a process must be ready (line printed / port accepting) by then
STOP_TIMEOUT = 5.0        # SIGTERM, then SIGKILL after this
HOLD_TIMEOUT = 240.0
SESSIONS_TIMEOUT = 200.0  # until "held N" (tlsrelay-bench sessions gives up opening at 180 s)
LATENCY_TIMEOUT = 240.0
LOAD_SLACK = 60.0         # bulk/connect: --seconds plus this

T0 = time.monotonic()


def log(message):
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    pass


def _on_sigterm(signum, frame):
    raise Interrupted(f"signal {signum}")


# --------------------------------------------------------------------------- processes

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _child_setup():
    # If this script dies without cleaning up (SIGKILL), the kernel sends SIGTERM to
    # its direct children. Normal cleanup never relies on this.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _proc_stat(pid):
    """(ppid, starttime) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def process_cpu_ticks(pid):
    """utime + stime of a live process, all its threads, in clock ticks; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid):
    """[(pid, starttime)] of every live descendant of pid."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st:
                children.setdefault(st[0], []).append((int(entry), st[1]))
    result, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            result.append(child)
            stack.append(child[0])
    return result


def _alive(pid, starttime):
    st = _proc_stat(pid)
    return st is not None and st[1] == starttime


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Child:
    """One long-lived process; stdout/stderr go to files in the run directory."""

    registry = []  # every Child not yet stopped, in start order

    def __init__(self, name, argv, cpu, run_dir):
        self.name = name
        stem = f"{name}-{len(Child.all_started)}"
        Child.all_started.append(stem)
        self.out_path = run_dir / f"{stem}.out"
        self.err_path = run_dir / f"{stem}.err"
        full = (["taskset", "-c", cpu] if cpu is not None and HAVE_TASKSET else []) + argv
        self.argv = full
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True, preexec_fn=_child_setup,
                                         close_fds=True)
        self.pid = self.proc.pid
        self.returncode = None
        Child.registry.append(self)

    all_started = []

    def output(self):
        text = ""
        for path in (self.out_path, self.err_path):
            try:
                text += path.read_text(errors="replace")
            except OSError:
                pass
        return text

    def tail(self, n=600):
        text = self.output().strip()
        return text[-n:] if text else "(no output)"

    def alive(self):
        return self.proc.poll() is None

    def wait_for_line(self, pattern, timeout=READY_TIMEOUT):
        """Wait until stdout or stderr matches pattern; returns the match."""
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.output())
            if m:
                return m
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode} "
                                   f"before printing /{pattern}/: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} printed no /{pattern}/ within {timeout:.0f} s: "
                                   f"{self.tail()}")
            time.sleep(0.02)

    def stop(self):
        """SIGTERM this process (by its PID), SIGKILL after STOP_TIMEOUT; then the same for
        any descendant it left behind (each by its PID)."""
        if self in Child.registry:
            Child.registry.remove(self)
        kids = descendants(self.pid) if self.alive() else []
        if self.alive():
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) ignored SIGTERM for {STOP_TIMEOUT:.0f} s: SIGKILL")
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        self.returncode = self.proc.returncode
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = [k for k in kids if _alive(*k)]
            if not left:
                break
            for pid, _ in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + STOP_TIMEOUT
            while time.monotonic() < deadline and any(_alive(*k) for k in left):
                time.sleep(0.02)

    @classmethod
    def stop_all(cls):
        for child in reversed(list(cls.registry)):
            try:
                child.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {child.name} (pid {child.pid}): {e}")


# --------------------------------------------------------------------------- ports

_used_ports = set()
# Below the ephemeral range (32768-60999 by default), and low enough that half the range
# holds the 12 005 consecutive ports of the sessions load's relay with 6000 sessions.
PORT_LO, PORT_HI = 7000, 32000
# The sessions load needs blocks of up to 12 005 consecutive ports; the single ports every
# other stack takes at random would leave no such gap, so those blocks come from a region
# at the top that free_ports() stays out of (reserve_block_region).
_random_hi = PORT_HI
_block_region = None              # [lo, hi) or None
_block_cursor = None


def _can_bind(port, host="127.0.0.1"):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_ports(count=1):
    """count consecutive free ports on 127.0.0.1, below the ephemeral range (so the load's
    outgoing connections cannot take them) and never used before in this run."""
    for _ in range(2000):
        base = random.randint(PORT_LO, _random_hi - count)
        span = range(base, base + count)
        if any(p in _used_ports for p in span):
            continue
        if all(_can_bind(p) for p in span):
            _used_ports.update(span)
            return base
    raise RuntimeError(f"no {count} consecutive free ports found on 127.0.0.1")


def free_ports_on(host, count=1):
    """count consecutive ports free on 127.0.0.1 (free_ports) and on host as well."""
    for _ in range(200):
        base = free_ports(count)
        if all(_can_bind(p, host) for p in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found on 127.0.0.1 and {host}")


def reserve_block_region(size):
    """Keeps the top `size` ports of the range for block_ports(); at most half the range."""
    global _random_hi, _block_region, _block_cursor
    size = min(size, (PORT_HI - PORT_LO) // 2)
    _random_hi = PORT_HI - size
    _block_region = (_random_hi, PORT_HI)
    _block_cursor = _random_hi


def block_ports(count):
    """count consecutive free ports from the reserved region, taken in order and never used
    before in this run; when the region is used up it starts again from its bottom (the
    relay binds with SO_REUSEADDR, so ports of an earlier, stopped relay are fine)."""
    global _block_cursor
    if _block_region is None:
        return free_ports(count)
    lo, hi = _block_region
    wrapped = False
    base = _block_cursor
    while True:
        if base + count > hi:
            if wrapped:
                raise RuntimeError(f"no {count} consecutive free ports in {lo}-{hi - 1}")
            wrapped, base = True, lo
        bad = next((p for p in range(base, base + count)
                    if (p in _used_ports and not wrapped) or not _can_bind(p)), None)
        if bad is None:
            _used_ports.update(range(base, base + count))
            _block_cursor = base + count
            return base
        base = bad + 1


def wait_port(port, children, timeout=READY_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            pass
        for c in children:
            if not c.alive():
                raise RuntimeError(f"{c.name} exited with code {c.proc.returncode} before "
                                   f"127.0.0.1:{port} accepted: {c.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"127.0.0.1:{port} did not accept within {timeout:.0f} s")
        time.sleep(0.02)


def listening_pid(port, candidates):
    """PID among candidates that owns the listening socket 127.0.0.1:port."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{fields[9]}]")
        except OSError:
            pass
    for pid in candidates:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return pid
                except OSError:
                    pass
        except OSError:
            pass
    return None


# the admin endpoint is on loopback: never through an http_proxy of the environment
_admin_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def cluster_peers_up(admin_port):
    """Names of the other nodes that a relay's admin /status lists as up."""
    with _admin_opener.open(f"http://127.0.0.1:{admin_port}/status", timeout=2) as reply:
        doc = json.load(reply)
    members = (doc.get("cluster") or {}).get("members") or []
    return {m.get("name") for m in members if not m.get("self") and m.get("state") == "up"}


def admin_port_of(relay):
    """The port of a relay started with --admin 127.0.0.1:0 (it prints the one it got)."""
    m = re.search(r"admin endpoint on http://127\.0\.0\.1:(\d+)", relay.output())
    if not m:
        raise RuntimeError(f"{relay.name} printed no admin endpoint: {relay.tail()}")
    return int(m.group(1))


def relay_counter(admin_port, name):
    """The value of one counter (without labels) in a relay's admin /metrics."""
    with _admin_opener.open(f"http://127.0.0.1:{admin_port}/metrics", timeout=2) as reply:
        text = reply.read().decode(errors="replace")
    m = re.search(rf"^{re.escape(name)}\s+(\d+(?:\.\d+)?)\s*$", text, re.M)
    if not m:
        raise RuntimeError(f"no {name} in /metrics")
    return int(float(m.group(1)))


def process_ctxt_switches(pid):
    """Voluntary + involuntary context switches of a live process, summed over its
    threads (/proc/PID/status counts only the main thread); None if gone."""
    total, seen = 0, False
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
                        seen = True
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total if seen else None


def wait_cluster_up(admin_port, peers, children, timeout=CLUSTER_UP_TIMEOUT):
    """Until the relay with that admin port lists every one of peers as up."""
    deadline = time.monotonic() + timeout
    seen, last_error = set(), None
    while True:
        try:
            seen = cluster_peers_up(admin_port)
            if set(peers) <= seen:
                return
        except (OSError, ValueError) as e:
            last_error = e
        for c in children:
            if not c.alive():
                raise RuntimeError(f"{c.name} exited with code {c.proc.returncode} before the "
                                   f"cluster was up: {c.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the node under test did not list {sorted(peers)} up within "
                               f"{timeout:.0f} s (up: {sorted(seen)}"
                               f"{f'; last /status error: {last_error}' if last_error else ''})")
        time.sleep(0.1)


# --------------------------------------------------------------------------- helpers

def cpu_times():
    """{cpu index: (busy jiffies, total jiffies)} from /proc/stat."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                m = re.match(r"cpu(\d+)\s+(.*)", line)
                if m:
                    v = [int(x) for x in m.group(2).split()]
                    idle = v[3] + (v[4] if len(v) > 4 else 0)
                    out[int(m.group(1))] = (sum(v[:8]) - idle, sum(v[:8]))
    except OSError:
        pass
    return out


def cpu_busy_pct(before, after):
    """Busy share of each CPU between two cpu_times() samples, in percent."""
    out = {}
    for cpu, (b1, t1) in after.items():
        if cpu in before and t1 > before[cpu][1]:
            out[f"cpu{cpu}"] = round(100.0 * (b1 - before[cpu][0]) / (t1 - before[cpu][1]), 1)
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_ticks():
    """{(pid, starttime): (name, utime + stime)} of every user-space process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.find("(") + 1:text.rfind(")")]
        fields = text.rsplit(")", 1)[1].split()
        try:
            if int(entry) == 2 or int(fields[1]) == 2:
                continue  # kernel threads (ksoftirqd, kworker): they carry our own traffic too
            out[(int(entry), int(fields[19]))] = (name, int(fields[11]) + int(fields[12]))
        except (IndexError, ValueError):
            pass
    return out


def foreign_load(before, after, seconds, threshold_pct=5.0):
    """Processes that are not ours and used more than threshold_pct of a CPU between two
    process_ticks() samples: [(name, percent)]."""
    ours = {os.getpid()} | {pid for pid, _ in descendants(os.getpid())}
    busy = {}
    for key, (name, ticks) in after.items():
        if key[0] in ours or key not in before:
            continue
        pct = 100.0 * (ticks - before[key][1]) / CLK_TCK / max(seconds, 0.01)
        if pct >= 0.5:
            busy[name] = busy.get(name, 0.0) + pct
    return sorted(((n, round(p)) for n, p in busy.items() if p >= threshold_pct),
                  key=lambda x: -x[1])


def machine_busy(seconds=1.0):
    before = cpu_times()
    time.sleep(seconds)
    return cpu_busy_pct(before, cpu_times())


def run_text(argv, timeout=10):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"({e})"


def parse_json_object(text):
    """The JSON object a bench mode prints at the end of stdout."""
    text = text.strip()
    try:
        value = json.loads(text)
        if isinstance(value, dict):
            return value
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    starts = [m.start() for m in re.finditer(r"(?m)^\s*\{", text)]
    for start in reversed(starts):
        try:
            value, end = decoder.raw_decode(text, text.index("{", start))
            if isinstance(value, dict) and not text[end:].strip():
                return value
        except ValueError:
            continue
    raise ValueError("no JSON object at the end of stdout")


def one_line(text):
    return " ".join(str(text).split())


def fill_template(path, values, dest):
    text = path.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise RuntimeError(f"{path}: unfilled {sorted(set(left))}")
    dest.write_text(text)
    return dest


def read_sysctl(name):
    try:
        return Path("/proc/sys/" + name.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def write_sysctl(name, value):
    """True when `name` now reads `value` (it must exist and be writable: root)."""
    try:
        Path("/proc/sys/" + name.replace(".", "/")).write_text(f"{value}\n")
    except OSError:
        return False
    return read_sysctl(name) == str(value)


# The connect loads open ~20 000 connections/s from one source address to one
# destination; each leaves a socket in TIME_WAIT, and a source port in TIME_WAIT may be
# taken again only after tcp_tw_reuse_delay (1000 ms by default). With the ephemeral
# range's ~28 000 ports that caps the load itself near 14 000/s, whatever the system
# under test does (seen as haproxy, v1 and the sessions load all stopping at
# 14 100-14 200/s). The run lowers the delay, and puts it back at the end.
TW_REUSE_DELAY = "net.ipv4.tcp_tw_reuse_delay"


def machine_info(build, usable_cpus):
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = run_text(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    dirty = run_text(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    build_type = None
    try:
        m = re.search(r"^CMAKE_BUILD_TYPE:\w+=(.*)$", (build / "CMakeCache.txt").read_text(), re.M)
        build_type = m.group(1) if m else None
    except OSError:
        pass
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "nproc": os.cpu_count(),
        "cpus_usable": sorted(usable_cpus),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "os": run_text(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "git_commit": commit,
        "git_dirty_files": len(dirty.splitlines()) if dirty and not dirty.startswith("(") else 0,
        "build_dir": str(build),
        "build_type": build_type,
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "cpu_busy_pct_idle_check": machine_busy(),
        "haproxy_version": run_text(["haproxy", "-v"]).splitlines()[0] if shutil.which("haproxy") else None,
        "ssh_version": run_text(["ssh", "-V"]) if shutil.which("ssh") else None,
        "python": platform.python_version(),
        "sysctl": {k: read_sysctl(k) for k in (
            "net.ipv4.tcp_tw_reuse", "net.ipv4.ip_local_port_range", "net.core.somaxconn",
            "net.ipv4.tcp_max_tw_buckets", "net.ipv4.tcp_congestion_control", TW_REUSE_DELAY)},
        "rlimit_nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


# --------------------------------------------------------------------------- stacks

def haproxy_maxconn():
    """haproxy refuses to start if maxconn needs more descriptors than it may open (2 per
    connection plus maxpipes = maxconn/4 pipes): stay inside our RLIMIT_NOFILE."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(1000, min(30000, int((nofile - 500) / 2.7)))


class Stack:
    """Backend + system under test for one configuration, placement and backend kind."""

    def __init__(self, bench, config, backend, placement, admission=None, relay_extra=None):
        self.bench = bench
        self.config = config
        self.backend = backend
        self.placement = placement
        self.admission = admission  # the relay's admission flags; None: the bench's
        self.relay_extra = relay_extra  # further relay flags of v1 (the io-threads load's)
        self.relay = None
        self.children = []
        self.target = None        # "127.0.0.1:PORT" the load connects to
        self.sut_pid = None       # process whose RSS the hold load measures
        self.sut_name = None
        self.also = {}            # name -> pid: further processes whose RSS we note
        self.notes = []

    @property
    def load_cpu(self):
        return BOTH_CPUS if self.placement == BOTH_PLACEMENT else "0"

    @property
    def sut_cpu(self):
        if self.placement == BOTH_PLACEMENT:
            return BOTH_CPUS
        return "1" if self.placement == "split" else "0"

    def spawn(self, name, argv, cpu):
        c = Child(name, argv, cpu, self.bench.run_dir)
        self.children.append(c)
        return c

    def start_backend(self):
        port = free_ports()
        c = self.spawn(f"{self.backend}-backend",
                       [str(self.bench.tool), self.backend, "--listen", f"127.0.0.1:{port}"],
                       self.load_cpu)
        wait_port(port, [c])
        return c, port

    def start_relay(self, port_count=4, admission=None, extra=None):
        # control port + port_count / 2 pairs (P+1..P+port_count); 2 pairs by default;
        # `extra`: further flags (the cluster load's)
        port = free_ports(1 + port_count) if port_count <= 4 else block_ports(1 + port_count)
        if admission is None:
            # The loads open many control connections from one address on purpose: no
            # per-address limits.
            admission = ["--control-rate", "0", "--max-handshakes-per-source", "0"]
        relay = self.spawn("relay", [str(self.bench.tlsrelay), "serve", "--listen", "127.0.0.1",
                                     "--port", str(port), "--port-count", str(port_count),
                                     "--keys", str(self.bench.keys), "--log-level", "warn",
                                     # stopped between loads, tools maybe still connected
                                     "--drain-timeout", "0"]
                           + admission + list(extra or []), self.sut_cpu)
        relay.wait_for_line(r"tlsrelay: listening")
        return relay, port

    def __enter__(self):
        try:
            getattr(self, "_start_" + self.config)()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_direct(self):
        backend, port = self.start_backend()
        self.target = f"127.0.0.1:{port}"
        self.sut_pid, self.sut_name = backend.pid, f"{self.backend} backend (no system under test)"

    def _start_haproxy(self):
        _, backend_port = self.start_backend()
        listen = free_ports()
        cfg = fill_template(BENCH_DIR / "haproxy.cfg.in", {
            "LISTEN_PORT": listen, "BACKEND_PORT": backend_port,
            "MAXCONN": haproxy_maxconn(), "MAXACCEPT": self.bench.args.haproxy_maxaccept,
        }, self.bench.run_dir / f"haproxy-{listen}.cfg")
        h = self.spawn("haproxy", ["haproxy", "-db", "-f", str(cfg)], self.sut_cpu)
        wait_port(listen, [h])
        self.target = f"127.0.0.1:{listen}"
        self.sut_pid, self.sut_name = h.pid, "haproxy"

    def _start_ssh(self):
        _, backend_port = self.start_backend()
        b = self.bench
        sshd_port = free_ports()
        sshd = self.spawn("sshd", [b.sshd, "-D", "-e", "-f", str(b.sshd_config),
                                   "-p", str(sshd_port)], self.sut_cpu)
        wait_port(sshd_port, [sshd])
        public = free_ports()
        ssh = self.spawn("ssh", [
            "ssh", "-N", "-F", "/dev/null",
            "-R", f"127.0.0.1:{public}:127.0.0.1:{backend_port}",
            "-p", str(sshd_port), "-i", str(b.ssh_dir / "user_key"),
            "-o", f"UserKnownHostsFile={b.ssh_dir / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=no", "-o", "ExitOnForwardFailure=yes",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10", "root@127.0.0.1"], self.sut_cpu)
        wait_port(public, [sshd, ssh])
        session = listening_pid(public, [pid for pid, _ in descendants(sshd.pid)])
        if session is None:
            raise RuntimeError(f"no sshd process owns the forwarded port {public}")
        self.target = f"127.0.0.1:{public}"
        self.sut_pid, self.sut_name = session, "sshd session process (owns the -R listener)"
        self.also = {"ssh client": ssh.pid}

    def _start_v1(self):
        relay, port = self.start_relay(admission=self.admission, extra=self.relay_extra)
        self.relay = relay
        self.start_agent(port)
        self.sut_pid, self.sut_name = relay.pid, "tlsrelay serve"
        self.control_port = port

    def start_agent(self, relay_port):
        agent = self.spawn(f"agent-{self.backend}",
                           [str(self.bench.tool), "agent", "--relay", f"127.0.0.1:{relay_port}",
                            "--keys", str(self.bench.keys), "--backend", self.backend],
                           self.load_cpu)
        m = agent.wait_for_line(r"^public (\S+):(\d+)\s*$")
        self.target = f"{m.group(1)}:{m.group(2)}"
        return agent

    def _start_v2(self):
        _, backend_port = self.start_backend()
        relay, port = self.start_relay(admission=self.admission)
        expose = self.spawn("expose", [str(self.bench.tlsrelay), "expose",
                                       f"127.0.0.1:{backend_port}", "--relay", f"127.0.0.1:{port}",
                                       "-k", str(self.bench.keys), "--log-level", "warn"],
                            self.sut_cpu)
        m = expose.wait_for_line(r"tlsrelay: exposing \S+ on (\S+):(\d+)")
        self.target = f"{m.group(1)}:{m.group(2)}"
        self.sut_pid, self.sut_name = relay.pid, "tlsrelay serve (relay only)"
        self.also = {"tlsrelay expose": expose.pid}

    def check_alive(self):
        """Notes for every process that died while the stack was in use."""
        dead = []
        for c in self.children:
            if not c.alive():
                dead.append(f"{c.name} (pid {c.pid}) exited with code {c.proc.returncode} "
                            f"during the load: {c.tail(300)}")
        return dead

    def stop(self):
        for c in reversed(self.children):
            c.stop()

    def __exit__(self, *exc):
        self.stop()
        return False


# --------------------------------------------------------------------------- loads

class RssSampler(threading.Thread):
    """Peak VmRSS of some processes while a load runs (every 50 ms)."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids = dict(pids)
        self.before = {name: rss_kib(pid) for name, pid in self.pids.items()}
        self.peak = dict(self.before)
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(0.05):
            for name, pid in self.pids.items():
                r = rss_kib(pid)
                if r is not None and (self.peak[name] is None or r > self.peak[name]):
                    self.peak[name] = r

    def finish(self):
        self._halt.set()
        self.join(timeout=5)


class Bench:
    def __init__(self, args):
        self.args = args
        self.settings = dict(QUICK if args.quick else FULL)
        if args.repeats:
            self.settings["repeats"] = args.repeats
        if args.scale_sessions:
            self.settings["scale_sessions"] = sorted(set(args.scale_sessions))
        if args.scale_protocols:
            self.settings["scale_protocols"] = sorted(set(args.scale_protocols))
        self.build = Path(args.build).resolve()
        self.tlsrelay = self.build / "tlsrelay"
        self.tool = self.build / "tlsrelay-bench"
        self.out_dir = Path(args.out).resolve()
        self.name = args.name or ("quick" if args.quick else "latest")
        self.runs = []
        self.unavailable = {}     # config -> reason (whole configuration not measured)
        self.config_notes = {c: [] for c in CONFIGS}
        self.run_dir = None
        self.started = time.monotonic()
        self.foreign = set()      # names of other busy processes seen during loads

    # ---- preparation

    def check_peers(self, configs):
        if "haproxy" in configs and not shutil.which("haproxy"):
            self.unavailable["haproxy"] = "haproxy is not installed (apt-get install haproxy)"
        if "ssh" in configs:
            self.sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None)
            missing = [n for n, p in (("sshd", self.sshd), ("ssh", shutil.which("ssh")),
                                      ("ssh-keygen", shutil.which("ssh-keygen"))) if not p]
            if missing:
                self.unavailable["ssh"] = (f"{', '.join(missing)} not installed "
                                           "(apt-get install openssh-server openssh-client)")
            else:
                try:
                    self.prepare_ssh()
                except Exception as e:
                    self.unavailable["ssh"] = one_line(f"cannot set up a private sshd: {e}")

    def prepare_ssh(self):
        d = self.run_dir / "ssh"
        d.mkdir()
        self.ssh_dir = d
        for key in ("ssh_host_ed25519_key", "user_key"):
            p = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tlsrelay-bench",
                                "-f", str(d / key)], capture_output=True, text=True, timeout=30)
            if p.returncode != 0:
                raise RuntimeError(f"ssh-keygen: {p.stderr.strip()}")
        shutil.copy(d / "user_key.pub", d / "authorized_keys")
        self.sshd_config = fill_template(BENCH_DIR / "sshd_config.in", {"DIR": d}, d / "sshd_config")
        # Debian's sshd refuses to start without its privilege separation directory, which
        # the package's service start normally creates. It is an empty, root-owned directory.
        if not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
            self.config_notes["ssh"].append("created /run/sshd (sshd's privilege separation "
                                            "directory; empty)")
        p = subprocess.run([self.sshd, "-t", "-f", str(self.sshd_config)],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError(f"sshd -t: {(p.stdout + p.stderr).strip()}")

    def prepare_keys(self):
        self.keys = self.run_dir / "keys"
        p = subprocess.run([str(self.tlsrelay), "certs", "init", str(self.keys)],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"tlsrelay certs init: {(p.stdout + p.stderr).strip()}")

    # ---- one load

    def record(self, config, placement, repeat, load, **fields):
        entry = {"config": config, "placement": placement, "repeat": repeat, "load": load}
        entry.update(fields)
        if entry.get("error"):
            entry["error"] = one_line(entry["error"])
        entry["notes"] = [one_line(n) for n in entry.get("notes") or []]
        self.runs.append(entry)
        shown = load + (f"{' v2' if entry.get('session_protocol') == 2 else ''} {entry['sessions']}"
                        if load == "sessions" else "")
        if load == "handshake-flood":
            shown = f"flood {entry.get('limits')} {entry.get('phase')}"
        if load == "cluster":
            shown = f"cluster {entry.get('part')} {entry.get('mode')}"
        if load == "io-threads":
            shown = f"io-threads {entry.get('threads')} {entry.get('phase')}"
        if entry.get("ok"):
            keys = {"bulk": ["gbit_s"], "latency": ["p50_us", "p99_us", "p999_us"],
                    "connect": ["connections_per_s", "p50_ms", "p99_ms", "failures"],
                    "hold": ["held", "failures", "rss_bytes_per_connection"],
                    "sessions": ["connections_per_s", "p99_ms", "failures"],
                    "handshake-flood": ["gbit_s"],
                    "cluster": ["connections_per_s", "p99_ms", "failures", "setup_per_s"],
                    "io-threads": ["gbit_s", "connections_per_s", "p50_ms", "p99_ms", "failures"]}[load]
            summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in entry["result"].items() if k in keys)
            log(f"  {LABELS[config]:<12} {placement:<6} r{repeat} {shown:<8} {summary}")
        else:
            log(f"  {LABELS[config]:<12} {placement:<6} r{repeat} {shown:<8} FAILED: {entry.get('error')}")
        return entry

    def load_argv(self, load, target, sut_pid, count=None, seconds=None):
        s = self.settings
        tool = str(self.tool)
        if load == "bulk":
            return [tool, "bulk", "--target", target, "--streams", str(s["bulk_streams"]),
                    "--seconds", str(s["bulk_seconds"])], s["bulk_seconds"] + LOAD_SLACK
        if load == "latency":
            return [tool, "latency", "--target", target, "--round-trips", str(s["round_trips"]),
                    "--warmup", str(s["warmup"])], LATENCY_TIMEOUT
        if load == "connect":
            seconds = seconds or s["connect_seconds"]
            return [tool, "connect", "--target", target, "--slots", str(s["connect_slots"]),
                    "--seconds", str(seconds)], seconds + LOAD_SLACK
        if load == "hold":
            return [tool, "hold", "--target", target, "--count", str(count),
                    "--pid", str(sut_pid)], HOLD_TIMEOUT
        raise ValueError(load)

    def run_load(self, stack, load, repeat, count=None, seconds=None, record_as=None, extra=None):
        """Runs one load against the stack and records it (under the load name record_as,
        with the extra fields, when given)."""
        argv, timeout = self.load_argv(load, stack.target, stack.sut_pid, count, seconds)
        load = record_as or load
        extra = dict(extra or {})
        full = (["taskset", "-c", stack.load_cpu] if HAVE_TASKSET else []) + argv
        placement = DIRECT_PLACEMENT if stack.config == "direct" else stack.placement
        sampler = None
        started = time.monotonic()
        cpu_before = cpu_times()
        ticks_before = process_ticks()
        sut_pids = {"sut": stack.sut_pid, **stack.also}
        sut_ticks_before = {n: process_cpu_ticks(p) for n, p in sut_pids.items() if p}
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                preexec_fn=_child_setup)
        try:
            if load == "hold":
                sampler = RssSampler({"sut": stack.sut_pid, **stack.also})
                sampler.start()
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate(timeout=STOP_TIMEOUT)
                raise RuntimeError(f"no answer within {timeout:.0f} s; stderr: {err.strip()[-400:]}")
        except BaseException as e:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
            if sampler:
                sampler.finish()
            if isinstance(e, (KeyboardInterrupt, Interrupted)):
                raise
            return self.record(stack.config, placement, repeat, load, ok=False, error=str(e),
                               argv=full, notes=stack.check_alive(), **extra)
        finally:
            if sampler and sampler.is_alive():
                sampler.finish()
        wall = round(time.monotonic() - started, 2)
        # CPU time the system under test spent on this load (all threads, user + kernel)
        sut_cpu_s = {}
        for name, before in sut_ticks_before.items():
            after = process_cpu_ticks(sut_pids[name])
            if before is not None and after is not None:
                sut_cpu_s[name] = round((after - before) / CLK_TCK, 2)
        # how busy each CPU was during the load (everything on the machine, not only us)
        fields = dict(extra, argv=full, wall_s=wall, sut_cpu_s=sut_cpu_s,
                      cpu_busy_pct=cpu_busy_pct(cpu_before, cpu_times()), notes=stack.check_alive())
        others = foreign_load(ticks_before, process_ticks(), wall)
        if others:
            fields["foreign_cpu_pct"] = dict(others)
            self.foreign.update(n for n, _ in others)
            fields["notes"].append("other processes on the machine were busy during this load: " +
                                   ", ".join(f"{n} {p} % of a CPU" for n, p in others))
        if load == "hold":
            fields["count"] = count
            fields["sut"] = stack.sut_name
            fields["sampled_rss_kib"] = {"before": sampler.before, "peak": sampler.peak}
        try:
            result = parse_json_object(out)
        except ValueError as e:
            return self.record(stack.config, placement, repeat, load, ok=False,
                               error=f"exit code {proc.returncode}, {e}; stderr: {err.strip()[-400:]}",
                               **fields)
        if proc.returncode != 0:
            fields["notes"].append(f"exit code {proc.returncode}; stderr: {err.strip()[-300:]}")
        if load == "hold":
            held = result.get("held")
            if not isinstance(held, int):
                held = count - int(result.get("failures") or 0)
            fields["held"] = held
            also = {}
            for name in stack.also:
                b, p = sampler.before.get(name), sampler.peak.get(name)
                if b is not None and p is not None and held > 0:
                    also[name] = {"rss_kib_before": b, "rss_kib_peak": p,
                                  "rss_bytes_per_connection": round((p - b) * 1024 / held)}
            fields["also"] = also
        if result.get("ok") is False:
            # the tool ran but says the measurement is not valid; a hold that kept some of
            # its connections still has valid figures (reported as "held X of K")
            if load == "hold" and held > 0 and isinstance(result.get("rss_bytes_per_connection"), (int, float)):
                fields["notes"].append(f"tlsrelay-bench: {result.get('error')}")
            else:
                return self.record(stack.config, placement, repeat, load, ok=False, result=result,
                                   error=f"tlsrelay-bench: {result.get('error', 'ok: false')}", **fields)
        return self.record(stack.config, placement, repeat, load, ok=True, result=result, **fields)

    def failed(self, config, placement, repeat, loads, error, **fields):
        placement = DIRECT_PLACEMENT if config == "direct" else placement
        for load in loads:
            self.record(config, placement, repeat, load, ok=False, error=error, **fields)

    def with_stack(self, config, backend, placement, repeat, loads, body, admission=None, fields=None,
                   relay_extra=None):
        """Start a stack (one retry), run body(stack) with it, stop it. `admission`: the
        relay's admission flags (None: the bench's); `fields`: added to failure records;
        `relay_extra`: further flags of the v1 relay."""
        last = None
        for attempt in (1, 2):
            try:
                with Stack(self, config, backend, placement, admission, relay_extra) as stack:
                    body(stack)
                return
            except (KeyboardInterrupt, Interrupted):
                raise
            except Exception as e:
                last = e
                log(f"  {LABELS[config]} {placement} ({backend}): start-up failed (attempt {attempt}): {e}")
        self.failed(config, placement, repeat, loads, f"start-up failed: {last}", **(fields or {}))
        self.unavailable.setdefault(config, one_line(f"start-up failed twice: {last}"))

    def measure(self, config, placement, repeat):
        loads = [l for l in self.args.loads if l in LOADS]
        s = self.settings
        if "bulk" in loads and config not in self.unavailable:
            self.with_stack(config, "sink", placement, repeat, ["bulk"],
                            lambda st: self.run_load(st, "bulk", repeat))
        echo_loads = [l for l in ("latency", "connect") if l in loads]
        if echo_loads and config not in self.unavailable:
            self.with_stack(config, "echo", placement, repeat, echo_loads,
                            lambda st: [self.run_load(st, l, repeat) for l in echo_loads])
        if "hold" in loads and config not in self.unavailable:
            # a fresh stack, so the allocator state left by the connect load does not hide
            # (or add to) the memory the held connections take
            def hold(st):
                entry = self.run_load(st, "hold", repeat, count=s["hold_count"])
                if config == "ssh" and not entry.get("ok"):
                    smaller = max(1, s["hold_count"] // 5)
                    log(f"  ssh -R could not hold {s['hold_count']}: retrying with {smaller}")
                    entry["notes"] = entry.get("notes", []) + [f"retried with --count {smaller}"]
                    self.runs.remove(entry)
                    self.config_notes["ssh"].append(
                        f"hold {s['hold_count']} failed ({entry.get('error')}); measured with {smaller}")
                    self.run_load(st, "hold", repeat, count=smaller)
            self.with_stack(config, "echo", placement, repeat, ["hold"], hold)
        if ("sessions" in loads and config == "v1" and placement == "split"
                and config not in self.unavailable):
            self.measure_scale(repeat)
        if ("handshake-flood" in loads and config == "v1" and placement == "split"
                and config not in self.unavailable):
            for limits in FLOOD_LIMITS:
                self.measure_flood(repeat, limits)
        if ("cluster" in loads and config == "v1" and placement == "split"
                and config not in self.unavailable):
            self.measure_cluster(repeat)

    # ---- the handshake-flood load

    def measure_flood(self, repeat, limits):
        """One v1 relay (on cpu1) with the admission flags FLOOD_LIMITS[limits] and its
        agent (sink): the bulk load alone, then the same bulk load while `tlsrelay-bench
        flood` keeps handshakes with the relay's control port under way."""
        s = self.settings

        def body(stack):
            extra = {"limits": limits, "relay_admission_flags": FLOOD_LIMITS[limits]}
            self.run_load(stack, "bulk", repeat, record_as="handshake-flood",
                          extra=dict(extra, phase="unloaded"))
            flood_s = s["flood_ramp_s"] + s["bulk_seconds"] + FLOOD_TAIL_S
            flood = stack.spawn(f"flood-{limits}", [
                str(self.tool), "flood", "--relay", f"127.0.0.1:{stack.control_port}",
                "--keys", str(self.keys), "--concurrency", str(s["flood_concurrency"]),
                "--seconds", str(flood_s)], stack.load_cpu)
            # the bulk starts once the flood is in full swing
            time.sleep(s["flood_ramp_s"])
            if not flood.alive():
                self.record("v1", "split", repeat, "handshake-flood", ok=False,
                            error=f"tlsrelay-bench flood exited early: {flood.tail()}",
                            **dict(extra, phase="flooded"))
                return
            ticks = process_cpu_ticks(flood.pid)
            entry = self.run_load(stack, "bulk", repeat, record_as="handshake-flood",
                                  extra=dict(extra, phase="flooded"))
            after = process_cpu_ticks(flood.pid)
            if ticks is not None and after is not None:
                entry["flood_client_cpu_s"] = round((after - ticks) / CLK_TCK, 2)
            try:
                flood.proc.wait(timeout=flood_s + LOAD_SLACK)
            except subprocess.TimeoutExpired:
                entry["notes"].append("tlsrelay-bench flood did not end by itself: stopped")
            flood.stop()
            try:
                entry["flood_result"] = parse_json_object(flood.out_path.read_text(errors="replace"))
            except (OSError, ValueError) as e:
                entry["flood_result"] = None
                entry["notes"].append(one_line(f"tlsrelay-bench flood (exit code {flood.returncode}): "
                                               f"{e}; {flood.tail(300)}"))
            f = entry.get("flood_result") or {}
            log(f"  {LABELS['v1']:<12} split  r{repeat} flood {limits}: handshakes completed "
                f"{f.get('completed_per_s')}/s, refused {f.get('refused_per_s')}/s, failed "
                f"{f.get('failed')}{'' if f.get('ok', True) else ' (' + str(f.get('error')) + ')'}")

        self.with_stack("v1", "sink", "split", repeat, ["handshake-flood"], body,
                        admission=FLOOD_LIMITS[limits], fields={"limits": limits})

    # ---- the sessions load (scale)

    def measure_scale(self, repeat):
        """For each protocol and S: a fresh relay with room for S sessions and the agent, S
        idle v1 or v2 control sessions (tlsrelay-bench sessions [--v2]; v2 with the relay's
        heartbeat, answered), then the agent and the connect load."""
        for protocol in self.settings["scale_protocols"]:
            for count in self.settings["scale_sessions"]:
                for attempt in (1, 2):
                    if self.scale_one(count, protocol, repeat, last_attempt=attempt == 2):
                        break

    def scale_one(self, count, protocol, repeat, last_attempt):
        """True when measured (or failed for good); False when the start-up failed and
        should be tried once more."""
        s = self.settings
        port_count = 2 * (count + 2)  # S sessions + the agent + one spare pair
        stack = Stack(self, "v1", "echo", "split")
        extra = {"sessions": count, "session_protocol": protocol, "port_count": port_count}
        label = f"sessions{' v2' if protocol == 2 else ''} {count}"
        entry, sessions, startup_error = None, None, None
        try:
            try:
                relay, port = stack.start_relay(port_count=port_count)
                stack.sut_pid, stack.sut_name = relay.pid, "tlsrelay serve"
                sessions = stack.spawn(f"sessions-v{protocol}-{count}", [
                    str(self.tool), "sessions", "--relay", f"127.0.0.1:{port}",
                    "--keys", str(self.keys), "--count", str(count), "--pid", str(relay.pid)]
                    + (["--v2"] if protocol == 2 else []), stack.load_cpu)
                m = sessions.wait_for_line(r"^held (\d+)", timeout=SESSIONS_TIMEOUT)
                extra["held_before_connect"] = int(m.group(1))
                stack.start_agent(port)
            except (KeyboardInterrupt, Interrupted):
                raise
            except Exception as e:
                startup_error = e
            if startup_error is None:
                entry = self.run_load(stack, "connect", repeat, seconds=s["scale_connect_seconds"],
                                      record_as="sessions", extra=extra)
        finally:
            # the agent first, then the sessions (they print their JSON at SIGTERM), the relay last
            stack.stop()
        if startup_error is not None:
            log(f"  {LABELS['v1']} split {label}: start-up failed"
                f"{'' if last_attempt else ' (will retry)'}: {startup_error}")
            if not last_attempt:
                return False
            entry = self.record("v1", "split", repeat, "sessions", ok=False,
                                error=f"start-up failed: {startup_error}", **extra)
        sres = None
        if sessions is not None:
            try:
                sres = parse_json_object(sessions.out_path.read_text(errors="replace"))
            except (OSError, ValueError) as e:
                entry["notes"].append(one_line(f"tlsrelay-bench sessions (exit code "
                                               f"{sessions.returncode}): {e}; {sessions.tail(300)}"))
        entry["sessions_result"] = sres
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile < 3 * count + 512:
            entry["notes"].append(f"open-file limit {nofile} may be too low for {count} sessions "
                                  f"(the relay needs 3 per session)")
        if sres:
            if sres.get("ok") is False:
                entry["notes"].append(one_line(f"tlsrelay-bench sessions: {sres.get('error')}"))
            kinds = ", ".join(f"{k} {v}" for k, v in (sres.get("failure_kinds") or {}).items())
            log(f"  {LABELS['v1']:<12} split  r{repeat} {label} held: established "
                f"{sres.get('established')}, open at the end {sres.get('open_at_end')}, failures "
                f"{sres.get('failures')}{f' ({kinds})' if kinds else ''}, relay RSS "
                f"{sres.get('rss_bytes_per_session')} B/session, set-up {sres.get('setup_s')} s")
        return True

    # ---- the cluster load

    def start_cluster_relay(self, stack, mode, port_count):
        """The relay under test (cpu1, with an admin endpoint), alone or as one node of a
        cluster of three: then the two other nodes (idle, cpu0, on their own loopback
        addresses) are started first, every node names both others with --peer, and the
        relay is ready once its /status lists both peers up. Returns (relay, control
        port, fields to record)."""
        admin = free_ports()
        extra = ["--admin", f"127.0.0.1:{admin}"]
        info = {}
        peers = []
        if mode == "clustered":
            addrs = [f"{host}:{free_ports_on(host)}" for _, host in CLUSTER_NODES]
            for i, (name, host) in enumerate(CLUSTER_NODES):
                flags = ["--cluster-listen", addrs[i], "--node-name", name]
                for j, addr in enumerate(addrs):
                    if j != i:
                        flags += ["--peer", addr]
                if i == 0:
                    extra += flags
                    continue
                control = free_ports_on(host, 3)  # the control port and one pair
                peers.append(stack.spawn(f"node-{name}", [
                    str(self.tlsrelay), "serve", "--listen", host, "--myhost", host,
                    "--port", str(control), "--port-count", "2", "--keys", str(self.keys),
                    "--log-level", "warn", "--drain-timeout", "0"] + flags, stack.load_cpu))
            for node in peers:
                node.wait_for_line(r"tlsrelay: listening")
            info["cluster_addresses"] = addrs
        relay, port = stack.start_relay(port_count=port_count, extra=extra)
        if mode == "clustered":
            started = time.monotonic()
            wait_cluster_up(admin, [name for name, _ in CLUSTER_NODES[1:]], [relay] + peers)
            info["peering_s"] = round(time.monotonic() - started, 2)
        stack.also = {f"node {c.name[len('node-'):]}": c.pid for c in peers}
        return relay, port, info

    def measure_cluster(self, repeat):
        """What being one node of a cluster of three costs the relay: v1 connect load and
        RSS, then (with v2 in the run) v2 session set-up with names; alone and clustered."""
        parts = ["v1"] + (["v2-setup"] if "v2" in self.args.configs else [])
        for part in parts:
            for mode in CLUSTER_MODES:
                for attempt in (1, 2):
                    if self.cluster_one(repeat, part, mode, last_attempt=attempt == 2):
                        break

    def cluster_one(self, repeat, part, mode, last_attempt):
        """One relay (alone or clustered) measured for one part. True when measured (or
        failed for good); False when the start-up failed and should be tried once more.
        v1: `cluster_idle_sessions` idle v1 sessions (the relay's RSS before and with
        them), then the agent (echo) and the connect load. v2-setup: `cluster_v2_sessions`
        v2 sessions, each hello with its own name, set up 32 at a time: sessions per
        second and the relay's CPU for them."""
        s = self.settings
        config = "v1" if part == "v1" else "v2"
        count = s["cluster_idle_sessions"] if part == "v1" else s["cluster_v2_sessions"]
        stack = Stack(self, config, "echo", "split")
        extra = {"part": part, "mode": mode, "sessions": count}
        entry, sessions, startup_error, phase = None, None, None, None
        try:
            try:
                relay, port, info = self.start_cluster_relay(stack, mode, port_count=2 * (count + 2))
                extra.update(info)
                stack.sut_pid = relay.pid
                stack.sut_name = "tlsrelay serve" + (" (node of a cluster of three)" if mode == "clustered" else "")
                argv = [str(self.tool), "sessions", "--relay", f"127.0.0.1:{port}", "--keys", str(self.keys),
                        "--count", str(count), "--pid", str(relay.pid)]
                if part != "v1":
                    argv += ["--v2", "--name-prefix", "bench"]
                phase = {"ticks": process_ticks(), "cpu": cpu_times(), "started": time.monotonic(),
                         "sut": {n: process_cpu_ticks(p) for n, p in {"sut": relay.pid, **stack.also}.items()}}
                sessions = stack.spawn(f"sessions-{part}-{mode}", argv, stack.load_cpu)
                m = sessions.wait_for_line(r"^held (\d+) rss_kib_before (\d+) rss_kib_after (\d+)",
                                           timeout=SESSIONS_TIMEOUT)
                phase["wall"] = time.monotonic() - phase["started"]
                phase["sut_after"] = {n: process_cpu_ticks(p) for n, p in {"sut": relay.pid, **stack.also}.items()}
                phase["cpu_after"] = cpu_times()
                # while every process of the stack is alive: they are ours, not foreign
                phase["foreign"] = foreign_load(phase["ticks"], process_ticks(), phase["wall"])
                phase["dead"] = stack.check_alive()
                extra.update(held=int(m.group(1)), rss_kib_start=int(m.group(2)), rss_kib_idle=int(m.group(3)))
                if part == "v1":
                    stack.start_agent(port)
            except (KeyboardInterrupt, Interrupted):
                raise
            except Exception as e:
                startup_error = e
            if startup_error is None and part == "v1":
                entry = self.run_load(stack, "connect", repeat, record_as="cluster", extra=extra)
                entry["rss_kib_after_connect"] = rss_kib(stack.sut_pid)
                conns = (entry.get("result") or {}).get("connections")
                cpu = (entry.get("sut_cpu_s") or {}).get("sut")
                if entry.get("ok") and conns and isinstance(cpu, (int, float)):
                    entry["relay_cpu_us_per_connection"] = round(cpu * 1e6 / conns, 1)
        finally:
            # the agent first, then the sessions (they print their JSON at SIGTERM), the relay
            # and the other nodes last
            stack.stop()
        if startup_error is not None:
            log(f"  cluster {part} {mode}: start-up failed{'' if last_attempt else ' (will retry)'}: "
                f"{startup_error}")
            if not last_attempt:
                return False
            self.record(config, "split", repeat, "cluster", ok=False,
                        error=f"start-up failed: {startup_error}", **extra)
            return True
        sres = None
        notes = []
        try:
            sres = parse_json_object(sessions.out_path.read_text(errors="replace"))
        except (OSError, ValueError) as e:
            notes.append(one_line(f"tlsrelay-bench sessions (exit code {sessions.returncode}): {e}; "
                                  f"{sessions.tail(300)}"))
        if part == "v1":
            entry["sessions_result"] = sres
            entry["notes"] += notes
            return True
        # v2-setup: the set-up phase is the measurement
        wall = phase["wall"]
        sut_cpu_s = {n: round((phase["sut_after"][n] - b) / CLK_TCK, 2) for n, b in phase["sut"].items()
                     if b is not None and phase["sut_after"].get(n) is not None}
        fields = dict(extra, wall_s=round(wall, 2), sut_cpu_s=sut_cpu_s,
                      cpu_busy_pct=cpu_busy_pct(phase["cpu"], phase["cpu_after"]),
                      notes=notes + phase["dead"])
        others = phase["foreign"]
        if others:
            fields["foreign_cpu_pct"] = dict(others)
            self.foreign.update(n for n, _ in others)
            fields["notes"].append("other processes on the machine were busy during this load: " +
                                   ", ".join(f"{n} {p} % of a CPU" for n, p in others))
        if not sres:
            self.record(config, "split", repeat, "cluster", ok=False,
                        error="no answer from tlsrelay-bench sessions", **fields)
            return True
        result = dict(sres)
        if sres.get("established") and "sut" in sut_cpu_s:
            result["relay_cpu_us_per_session"] = round(sut_cpu_s["sut"] * 1e6 / sres["established"], 1)
        ok = sres.get("ok") is not False and sres.get("established") == count
        self.record(config, "split", repeat, "cluster", ok=ok, result=result,
                    **(fields if ok else dict(fields, error=f"tlsrelay-bench sessions: {sres.get('error')}")))
        return True

    # ---- the io-threads load

    def measure_io_threads(self, repeat):
        """For each --io-threads value: a v1 relay with it (and an admin endpoint), its agent
        and the load tool all on cpu0 and cpu1; the bulk load (agent: sink), then on a fresh
        stack the connect load (agent: echo) with the relay's CPU, context switches and
        pairs handed between io threads over it."""
        for threads in IO_THREADS:
            flags = ["--io-threads", str(threads), "--admin", "127.0.0.1:0"]
            extra = {"threads": threads, "relay_flags": flags}

            def bulk(stack, extra=extra):
                fields = dict(extra, phase="bulk")
                moved, notes = self.io_moved(stack)
                entry = self.run_load(stack, "bulk", repeat, record_as="io-threads", extra=fields)
                after, more = self.io_moved(stack)
                if moved is not None and after is not None:
                    entry["pairs_moved"] = after - moved
                entry["notes"] += notes + more

            def connect(stack, extra=extra, threads=threads):
                fields = dict(extra, phase="connect")
                moved, notes = self.io_moved(stack)
                switches = process_ctxt_switches(stack.sut_pid)
                entry = self.run_load(stack, "connect", repeat, record_as="io-threads", extra=fields)
                switches_after = process_ctxt_switches(stack.sut_pid)
                after, more = self.io_moved(stack)
                entry["notes"] += notes + more
                conns = (entry.get("result") or {}).get("connections")
                cpu = (entry.get("sut_cpu_s") or {}).get("sut")
                if not (entry.get("ok") and conns):
                    return
                if isinstance(cpu, (int, float)):
                    entry["relay_cpu_us_per_connection"] = round(cpu * 1e6 / conns, 1)
                if moved is not None and after is not None:
                    entry["pairs_moved"] = after - moved
                    entry["pairs_moved_share"] = round((after - moved) / conns, 4)
                if switches is not None and switches_after is not None:
                    entry["relay_ctxt_switches"] = switches_after - switches
                    entry["relay_ctxt_switches_per_connection"] = round((switches_after - switches) / conns, 3)
                log(f"  {LABELS['v1']:<12} {BOTH_PLACEMENT:<6} r{repeat} io-threads {threads}: relay CPU "
                    f"{entry.get('relay_cpu_us_per_connection')} µs/connection, pairs moved "
                    f"{entry.get('pairs_moved')} of {conns} ({entry.get('pairs_moved_share')}), "
                    f"context switches {entry.get('relay_ctxt_switches_per_connection')}/connection")

            self.with_stack("v1", "sink", BOTH_PLACEMENT, repeat, ["io-threads"], bulk,
                            fields=dict(extra, phase="bulk"), relay_extra=flags)
            if "v1" in self.unavailable:
                return
            self.with_stack("v1", "echo", BOTH_PLACEMENT, repeat, ["io-threads"], connect,
                            fields=dict(extra, phase="connect"), relay_extra=flags)
            if "v1" in self.unavailable:
                return

    def io_moved(self, stack):
        """(the relay's pairs-moved counter or None, notes)."""
        try:
            return relay_counter(admin_port_of(stack.relay), IO_MOVED_METRIC), []
        except (OSError, ValueError, RuntimeError) as e:
            return None, [one_line(f"reading {IO_MOVED_METRIC} from /metrics: {e}")]

    def run(self):
        configs = [c for c in CONFIGS if c in self.args.configs]
        placements = [p for p in PLACEMENTS if p in self.args.placements]
        usable = self.usable_cpus
        if "split" in placements and not {0, 1} <= usable:
            placements.remove("split")
            self.config_notes.setdefault("_run", []).append(
                "the split placement needs cpu0 and cpu1; this machine/cgroup offers "
                f"{sorted(usable)}: only the shared placement was measured")
        if 0 not in usable:
            raise SystemExit("run_bench: cpu0 is not usable here (taskset -c 0 would fail)")
        self.placements = placements
        # the relays of the sessions and cluster loads take blocks of consecutive ports
        block_region = 0
        if "sessions" in self.args.loads:
            if "v1" in configs and "split" in placements:
                per_repeat = sum(1 + 2 * (n + 2) for n in self.settings["scale_sessions"]) * len(
                    self.settings["scale_protocols"])
                block_region += per_repeat * self.settings["repeats"] + 64
            else:
                self.config_notes.setdefault("_run", []).append(
                    "the sessions load runs only for tlsrelay v1 in the split placement: not "
                    "measured in this run")
        if "cluster" in self.args.loads and "v1" in configs and "split" in placements:
            relays = [self.settings["cluster_idle_sessions"]] * 2
            if "v2" in configs:
                relays += [self.settings["cluster_v2_sessions"]] * 2
            block_region += sum(1 + 2 * (n + 2) for n in relays) * self.settings["repeats"] + 64
        if block_region:
            reserve_block_region(block_region)
        if "cluster" in self.args.loads and not ("v1" in configs and "split" in placements):
            self.config_notes.setdefault("_run", []).append(
                "the cluster load runs with tlsrelay v1 in the split placement (its v2 part when v2 "
                "is in the run too): not measured in this run")
        io_threads = "io-threads" in self.args.loads and "v1" in configs and {0, 1} <= usable
        if "io-threads" in self.args.loads and not io_threads:
            self.config_notes.setdefault("_run", []).append(
                "the io-threads load runs with tlsrelay v1 on cpu0 and cpu1"
                + ("" if {0, 1} <= usable else f" (this machine/cgroup offers {sorted(usable)})")
                + ": not measured in this run")
        for config in configs:
            self.check_peers([config])
        for c, why in self.unavailable.items():
            log(f"{LABELS[c]}: NOT MEASURED: {why}")
        for repeat in range(1, self.settings["repeats"] + 1):
            for placement in placements:
                for config in configs:
                    if config == "direct" and placement != placements[0]:
                        continue
                    if config in self.unavailable:
                        continue
                    shown = DIRECT_PLACEMENT if config == "direct" else placement
                    log(f"repeat {repeat}, {shown}: {LABELS[config]}")
                    self.measure(config, placement, repeat)
            if io_threads and "v1" not in self.unavailable:
                log(f"repeat {repeat}, {BOTH_PLACEMENT}: {LABELS['v1']} io-threads {list(IO_THREADS)}")
                self.measure_io_threads(repeat)


# --------------------------------------------------------------------------- report

def results_of(runs, config, placement, load, key):
    """{repeat: value} of successful runs."""
    out = {}
    for r in runs:
        if (r["config"] == config and r["load"] == load and r.get("ok")
                and (r["placement"] == placement or config == "direct")):
            v = r["result"].get(key)
            if isinstance(v, (int, float)):
                out[r["repeat"]] = v
    return out


def mean(values):
    values = list(values)
    return statistics.fmean(values) if values else None


def fmt(v, digits=None):
    if v is None:
        return "—"
    if digits is None:
        a = abs(v)
        digits = 0 if a >= 1000 else 1 if a >= 10 else 2 if a >= 1 else 3
    return f"{v:,.{digits}f}"


TARGETS = [
    # id, text, load, metric, a, b (None: absolute), op, factor or value, placements
    ("v1_bulk_vs_haproxy", "v1 bulk ≥ 0.9× haproxy", "bulk", "gbit_s", "v1", "haproxy", ">=", 0.9, ["split"]),
    ("v2_bulk_vs_ssh", "v2 bulk ≥ 3× ssh -R", "bulk", "gbit_s", "v2", "ssh", ">=", 3.0, ["split", "shared"]),
    ("v1_p50_vs_haproxy", "v1 latency p50 ≤ 2× haproxy", "latency", "p50_us", "v1", "haproxy", "<=", 2.0, ["shared"]),
    ("v2_p50_vs_ssh", "v2 latency p50 ≤ 0.5× ssh -R", "latency", "p50_us", "v2", "ssh", "<=", 0.5, ["split", "shared"]),
    ("v1_conn_rate", "v1 ≥ 15000 connections/s", "connect", "connections_per_s", "v1", None, ">=", 15000, ["split", "shared"]),
    ("v1_conn_p99", "v1 connect p99 ≤ 5 ms", "connect", "p99_ms", "v1", None, "<=", 5.0, ["split", "shared"]),
    ("v2_conn_vs_haproxy", "v2 connections/s ≥ 0.8× haproxy", "connect", "connections_per_s", "v2", "haproxy", ">=", 0.8, ["split", "shared"]),
    ("v2_conn_vs_ssh", "v2 connections/s ≥ 15× ssh -R", "connect", "connections_per_s", "v2", "ssh", ">=", 15.0, ["split", "shared"]),
    ("v1_rss", "v1 relay RSS ≤ 2 KiB per idle paired connection at 5000 held", "hold", "rss_bytes_per_connection", "v1", None, "<=", 2048, ["split", "shared"]),
    ("v2_rss", "v2 relay RSS ≤ 2 KiB per idle paired connection at 5000 held", "hold", "rss_bytes_per_connection", "v2", None, "<=", 2048, ["split", "shared"]),
]

UNITS = {"gbit_s": "Gbit/s", "p50_us": "µs", "connections_per_s": "conn/s", "p99_ms": "ms",
         "rss_bytes_per_connection": "B/conn"}


def evaluate_targets(bench):
    out = []
    for tid, text, load, metric, a, b, op, goal, placements in TARGETS:
        for placement in placements:
            if placement not in bench.placements:
                continue
            row = {"id": tid, "target": text, "placement": placement, "op": op, "goal": goal}
            if load not in bench.args.loads:
                row.update(verdict="NOT MEASURED", detail="not in this run (--loads)")
                out.append(row)
                continue
            va = results_of(bench.runs, a, placement, load, metric)
            vb = results_of(bench.runs, b, placement, load, metric) if b else None
            missing = [c for c, v in ((a, va), (b, vb)) if c and not v]
            if missing:
                why = "; ".join(f"{LABELS[c]}: " + (
                    "not in this run (--configs)" if c not in bench.args.configs
                    else bench.unavailable.get(c, "no successful run")) for c in missing)
                row.update(verdict="NOT MEASURED", detail=why)
                out.append(row)
                continue
            if b:
                per = {r: va[r] / vb[r] for r in va if r in vb and vb[r]}
                measured = mean(va.values()) / mean(vb.values()) if mean(vb.values()) else None
                shown = f"{fmt(measured, 2)}×"
                detail = (f"{LABELS[a]} {fmt(mean(va.values()))} vs {LABELS[b]} "
                          f"{fmt(mean(vb.values()))} {UNITS[metric]}")
                if len(per) > 1:
                    detail += " (per repeat: " + ", ".join(f"{fmt(v, 2)}×" for _, v in sorted(per.items())) + ")"
            else:
                measured = mean(va.values())
                shown = f"{fmt(measured)} {UNITS[metric]}"
                detail = ""
                if len(va) > 1:
                    detail = "per repeat: " + ", ".join(fmt(v) for _, v in sorted(va.items()))
                if load == "connect":
                    # what load and backend manage with nothing in between: the ceiling here
                    d = mean(results_of(bench.runs, "direct", DIRECT_PLACEMENT, load, metric).values())
                    if d is not None:
                        detail = (detail + "; " if detail else "") + \
                            f"direct (load + backend alone on cpu0): {fmt(d)} {UNITS[metric]}"
            if measured is None:
                row.update(verdict="NOT MEASURED", detail="division by zero")
                out.append(row)
                continue
            q = measured / goal
            if op == ">=":
                met = q >= 1
                margin = f"+{(q - 1) * 100:.0f} % headroom" if met else f"{(1 - q) * 100:.0f} % short"
            else:
                met = q <= 1
                margin = f"{(1 - q) * 100:.0f} % headroom" if met else f"{(q - 1) * 100:.0f} % over"
            if tid.endswith("_rss"):
                held = [r.get("held") for r in bench.runs if r["config"] == a and r["load"] == "hold"
                        and r.get("ok") and r["placement"] == placement]
                if any(h != 5000 for h in held):
                    detail = (detail + "; " if detail else "") + f"held {held}, target is at 5000"
            row.update(measured=measured, shown=shown, verdict="MET" if met else "MISSED",
                       margin=margin, detail=detail)
            out.append(row)
    return out + evaluate_scale_targets(bench) + evaluate_flood_targets(bench)


# ---- the sessions load

def scale_runs(bench, count, protocol=1):
    """Entries of the sessions load with `count` idle sessions of `protocol`, by repeat."""
    return sorted((r for r in bench.runs if r["load"] == "sessions" and r.get("sessions") == count
                   and r.get("session_protocol", 1) == protocol), key=lambda r: r["repeat"])


def scale_connect(bench, count, key, protocol=1):
    """{repeat: value} of the connect load beside `count` idle sessions (measured runs)."""
    return {r["repeat"]: r["result"][key] for r in scale_runs(bench, count, protocol)
            if r.get("ok") and isinstance(r.get("result", {}).get(key), (int, float))}


def scale_sessions_value(bench, count, key, protocol=1):
    """{repeat: value} from the sessions tool's own answer."""
    return {r["repeat"]: r["sessions_result"][key] for r in scale_runs(bench, count, protocol)
            if isinstance((r.get("sessions_result") or {}).get(key), (int, float))}


def evaluate_scale_targets(bench):
    rows = []
    for protocol in bench.settings["scale_protocols"]:
        rows += evaluate_scale_targets_of(bench, protocol)
    return rows


def evaluate_scale_targets_of(bench, protocol):
    counts = bench.settings["scale_sessions"]
    lo, hi = min(counts), max(counts)
    v = f"v{protocol}"
    held_row = {"id": f"{v}_sessions_held", "target": f"{hi} {v} control sessions held with 0 failures",
                "placement": "split", "op": "==", "goal": 0}
    flat_row = {"id": f"{v}_pairing_flat",
                "target": f"pairing cost flat from {lo} to {hi} idle {v} sessions "
                          f"(conn/s at {hi} ≥ {SCALE_FLAT_FACTOR}× conn/s at {lo})",
                "placement": "split", "op": ">=", "goal": SCALE_FLAT_FACTOR}
    rss_row = {"id": f"{v}_session_rss",
               "target": f"relay RSS per idle {v} session at {hi} ≤ {SCALE_RSS_TARGET // 1024} KiB",
               "placement": "split", "op": "<=", "goal": SCALE_RSS_TARGET}
    if "sessions" not in bench.args.loads:
        why = "not in this run (--loads)"
    elif "v1" not in bench.args.configs or "split" not in bench.placements:
        why = "needs tlsrelay v1 in the split placement"
    else:
        why = None
    if why:
        for row in (held_row, flat_row, rss_row):
            row.update(verdict="NOT MEASURED", detail=why)
        return [held_row, flat_row, rss_row]

    answers = [r["sessions_result"] for r in scale_runs(bench, hi, protocol) if r.get("sessions_result")]
    rss_values = [a.get("rss_bytes_per_session") for a in answers
                  if isinstance(a.get("rss_bytes_per_session"), (int, float))]
    if not rss_values:
        rss_row.update(verdict="NOT MEASURED", detail="no RSS figure")
    else:
        worst = max(rss_values)
        met = worst <= SCALE_RSS_TARGET
        rss_row.update(measured=worst, shown=f"{fmt(worst, 0)} B",
                       verdict="MET" if met else "MISSED",
                       margin=(f"{(1 - worst / SCALE_RSS_TARGET) * 100:.0f} % below" if met
                               else f"{(worst / SCALE_RSS_TARGET - 1) * 100:.0f} % over"),
                       detail=f"per repeat {' / '.join(fmt(x, 0) for x in rss_values)} B/session")
    if not answers:
        errors = "; ".join(r.get("error") or "no answer" for r in scale_runs(bench, hi, protocol))
        held_row.update(verdict="NOT MEASURED", detail=errors or "no successful run")
    else:
        failures = [int(a.get("failures", hi)) for a in answers]
        met = all(f == 0 for f in failures) and all(a.get("open_at_end") == hi for a in answers)
        kinds = {}
        for a in answers:
            for k, v in (a.get("failure_kinds") or {}).items():
                kinds[k] = kinds.get(k, 0) + v
        rss = [a.get("rss_bytes_per_session") for a in answers]
        held_row.update(
            measured=max(failures), verdict="MET" if met else "MISSED",
            shown=" / ".join(f"{a.get('open_at_end')} of {hi}" for a in answers),
            margin="0 failures" if met else (f"{' / '.join(str(f) for f in failures)} failures"
                                             + (f": {', '.join(f'{k} {v}' for k, v in kinds.items())}"
                                                if kinds else "")),
            detail=f"set-up {' / '.join(fmt(a.get('setup_s'), 1) for a in answers)} s; relay RSS "
                   f"{' / '.join(fmt(v, 0) if isinstance(v, (int, float)) else '—' for v in rss)} "
                   f"B/session")

    va = scale_connect(bench, hi, "connections_per_s", protocol)
    vb = scale_connect(bench, lo, "connections_per_s", protocol)
    if not va or not vb or not mean(vb.values()):
        missing = [str(n) for n, v in ((lo, vb), (hi, va)) if not v]
        flat_row.update(verdict="NOT MEASURED",
                        detail=f"no connect measurement beside {' and '.join(missing)} sessions")
    else:
        measured = mean(va.values()) / mean(vb.values())
        q = measured / SCALE_FLAT_FACTOR
        met = q >= 1
        pa, pb = scale_connect(bench, hi, "p99_ms", protocol), scale_connect(bench, lo, "p99_ms", protocol)
        detail = (f"{fmt(mean(va.values()))} conn/s beside {hi} vs {fmt(mean(vb.values()))} beside "
                  f"{lo}; p99 {fmt(mean(pa.values()), 2)} vs {fmt(mean(pb.values()), 2)} ms")
        per = {r: va[r] / vb[r] for r in va if r in vb and vb[r]}
        if len(per) > 1:
            detail += " (per repeat: " + ", ".join(f"{fmt(v, 2)}×" for _, v in sorted(per.items())) + ")"
        flat_row.update(measured=measured, shown=f"{fmt(measured, 2)}×",
                        verdict="MET" if met else "MISSED",
                        margin=f"+{(q - 1) * 100:.0f} % headroom" if met else f"{(1 - q) * 100:.0f} % short",
                        detail=detail)
    return [held_row, flat_row, rss_row]


# ---- the handshake-flood load

def flood_runs(bench, limits, phase):
    """Successful entries of the handshake-flood load, by repeat."""
    return {r["repeat"]: r for r in bench.runs if r["load"] == "handshake-flood" and r.get("ok")
            and r.get("limits") == limits and r.get("phase") == phase}


def flood_gbit(bench, limits, phase):
    return {k: r["result"]["gbit_s"] for k, r in flood_runs(bench, limits, phase).items()}


def flood_ratio(bench, limits):
    """(mean flooded / mean unloaded, {repeat: ratio}) or (None, {})."""
    un, fl = flood_gbit(bench, limits, "unloaded"), flood_gbit(bench, limits, "flooded")
    if not un or not fl or not mean(un.values()):
        return None, {}
    return mean(fl.values()) / mean(un.values()), {r: fl[r] / un[r] for r in fl if un.get(r)}


def flood_rates(bench, limits, key):
    """{repeat: value} of the flood tool's own answer beside the flooded bulk."""
    return {k: (r.get("flood_result") or {}).get(key) for k, r in flood_runs(bench, limits, "flooded").items()
            if isinstance((r.get("flood_result") or {}).get(key), (int, float))}


def relay_cpu_pct(entry):
    """The relay's CPU use during one bulk, in % of a CPU."""
    cpu, wall = (entry.get("sut_cpu_s") or {}).get("sut"), entry.get("wall_s")
    return 100.0 * cpu / wall if isinstance(cpu, (int, float)) and wall else None


def evaluate_flood_targets(bench):
    row = {"id": "v1_flood_bulk", "placement": "split", "op": ">=", "goal": FLOOD_FACTOR,
           "target": f"bulk beside a flood of {bench.settings['flood_concurrency']} TLS handshakes "
                     f"(relay's default limits) ≥ {FLOOD_FACTOR}× unloaded"}
    measured, per = flood_ratio(bench, "default")
    if measured is None:
        if "handshake-flood" not in bench.args.loads:
            why = "not in this run (--loads)"
        elif "v1" not in bench.args.configs or "split" not in bench.placements:
            why = "needs tlsrelay v1 in the split placement"
        else:
            why = "no unloaded and flooded bulk with the default limits"
        row.update(verdict="NOT MEASURED", detail=why)
        return [row]
    q = measured / FLOOD_FACTOR
    met = q >= 1
    un, fl = flood_gbit(bench, "default", "unloaded"), flood_gbit(bench, "default", "flooded")
    detail = (f"{fmt(mean(fl.values()), 2)} vs {fmt(mean(un.values()), 2)} Gbit/s; handshakes "
              f"{fmt(mean(flood_rates(bench, 'default', 'completed_per_s').values()))}/s completed, "
              f"{fmt(mean(flood_rates(bench, 'default', 'refused_per_s').values()))}/s refused")
    if len(per) > 1:
        detail += " (per repeat: " + ", ".join(f"{fmt(v, 2)}×" for _, v in sorted(per.items())) + ")"
    off, _ = flood_ratio(bench, "off")
    if off is not None:
        detail += f"; with the limits off {fmt(off, 2)}×"
    row.update(measured=measured, shown=f"{fmt(measured, 2)}×", verdict="MET" if met else "MISSED",
               margin=f"+{(q - 1) * 100:.0f} % headroom" if met else f"{(1 - q) * 100:.0f} % short",
               detail=detail)
    return [row]


def flood_summary(bench):
    """The handshake-flood load's figures per relay configuration, for the JSON (each list:
    one value per repeat)."""
    out = {}
    for limits in FLOOD_LIMITS:
        un, fl = flood_runs(bench, limits, "unloaded"), flood_runs(bench, limits, "flooded")
        if not un and not fl:
            continue
        reps = sorted(set(un) | set(fl))
        ratio, per = flood_ratio(bench, limits)

        def each(runs, get):
            return [get(runs[r]) if r in runs else None for r in reps]
        out[limits] = {
            "relay_admission_flags": FLOOD_LIMITS[limits],
            "repeats": reps,
            "unloaded_gbit_s": each(un, lambda r: r["result"]["gbit_s"]),
            "flooded_gbit_s": each(fl, lambda r: r["result"]["gbit_s"]),
            "ratio_of_means": ratio,
            "ratio": [per.get(r) for r in reps],
            "handshakes_completed_per_s": each(fl, lambda r: (r.get("flood_result") or {}).get("completed_per_s")),
            "handshakes_refused_per_s": each(fl, lambda r: (r.get("flood_result") or {}).get("refused_per_s")),
            "handshakes_failed": each(fl, lambda r: (r.get("flood_result") or {}).get("failed")),
            "relay_cpu_pct_unloaded": each(un, relay_cpu_pct),
            "relay_cpu_pct_flooded": each(fl, relay_cpu_pct),
            "flood_client_cpu_pct": each(fl, lambda r: 100.0 * r["flood_client_cpu_s"] / r["wall_s"]
                                         if r.get("flood_client_cpu_s") is not None and r.get("wall_s") else None),
            "cpu_busy_pct_flooded": each(fl, lambda r: r.get("cpu_busy_pct")),
        }
    return out


# ---- the cluster load

# part -> (figure key, label, digits); a figure is read from the entry, else its result
CLUSTER_FIGURES = {
    "v1": [("connections_per_s", "connections/s", 0), ("p50_ms", "connect p50 ms", 3),
           ("p99_ms", "connect p99 ms", 3), ("failures", "connect failures", 0),
           ("relay_cpu_us_per_connection", "relay CPU µs per relayed connection", 1),
           ("other_nodes_cpu_ms", "other two nodes' CPU ms during the connect load", 0),
           ("rss_kib_start", "relay RSS KiB after start", 0),
           ("rss_kib_idle", "relay RSS KiB with the idle sessions", 0),
           ("rss_kib_after_connect", "relay RSS KiB after the connect load", 0)],
    "v2-setup": [("setup_per_s", "v2 sessions set up per s (hello with a name → welcome)", 0),
                 ("relay_cpu_us_per_session", "relay CPU µs per session set-up", 0),
                 ("other_nodes_cpu_ms", "other two nodes' CPU ms during the set-up", 0),
                 ("failures", "failures", 0),
                 ("rss_kib_start", "relay RSS KiB after start", 0),
                 ("rss_kib_idle", "relay RSS KiB with every session held", 0),
                 ("rss_bytes_per_session", "relay RSS B per session", 0)],
}
CLUSTER_PART_TITLE = {"v1": "tlsrelay v1: connect load beside idle sessions",
                      "v2-setup": "tlsrelay v2: session set-up with names"}


def cluster_entries(bench, part, mode, ok=True):
    """{repeat: entry} of the cluster load (measured ones, or with ok=False the failed ones)."""
    return {r["repeat"]: r for r in bench.runs if r["load"] == "cluster" and r.get("part") == part
            and r.get("mode") == mode and bool(r.get("ok")) == ok}


def cluster_value(entry, key):
    if entry is None:
        return None
    if key == "other_nodes_cpu_ms":
        others = [v for n, v in (entry.get("sut_cpu_s") or {}).items() if n != "sut"]
        return round(sum(others) * 1000) if others else None
    v = entry.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        v = (entry.get("result") or {}).get(key)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def cluster_summary(bench):
    """The cluster load's figures per part, for the JSON: per figure one value per repeat
    alone and clustered, clustered/alone per repeat and of the means, clustered − alone."""
    out = {}
    for part, figures in CLUSTER_FIGURES.items():
        runs = {m: cluster_entries(bench, part, m) for m in CLUSTER_MODES}
        failed = [r for m in CLUSTER_MODES for r in cluster_entries(bench, part, m, ok=False).values()]
        reps = sorted(set(runs["alone"]) | set(runs["clustered"]))
        if not reps and not failed:
            continue
        part_out = {"repeats": reps,
                    "sessions": next((r.get("sessions") for m in CLUSTER_MODES for r in runs[m].values()), None),
                    "figures": {},
                    "peering_s": [(runs["clustered"].get(r) or {}).get("peering_s") for r in reps],
                    "errors": [f"{r.get('mode')} r{r['repeat']}: {r.get('error')}" for r in failed]}
        for key, _, _ in figures:
            a = [cluster_value(runs["alone"].get(r), key) for r in reps]
            c = [cluster_value(runs["clustered"].get(r), key) for r in reps]
            ma, mc = mean(v for v in a if v is not None), mean(v for v in c if v is not None)
            part_out["figures"][key] = {
                "alone": a, "clustered": c,
                "ratio": [y / x if x and y is not None else None for x, y in zip(a, c)],
                "ratio_of_means": mc / ma if ma and mc is not None else None,
                "delta": [y - x if x is not None and y is not None else None for x, y in zip(a, c)],
            }
        out[part] = part_out
    return out


def cluster_markdown(bench, rep):
    s = bench.settings
    summary = cluster_summary(bench)
    if not summary:
        return []
    out = [f"## Cluster: one node of a cluster of three against a single relay ({rep})\n",
           f"Split placement: the relay under test on cpu1, the load, the agent and the two other "
           f"nodes on cpu0. *alone*: `tlsrelay serve` as in the v1 configuration plus `--admin`; "
           f"*clustered*: the same relay with `--cluster-listen 127.0.0.1:PORT --node-name "
           f"{CLUSTER_NODES[0][0]}` and a `--peer` for each of two idle nodes "
           f"({', '.join(f'{n} on {h}' for n, h in CLUSTER_NODES[1:])}, each with its own ports and "
           f"one pair), every node naming both others; measured once its admin /status lists both "
           f"peers up (*peering*: seconds from its ready line until then). A fresh relay (and cluster) for "
           f"each row group and repeat. **v1**: {s['cluster_idle_sessions']} idle v1 control sessions "
           f"(`tlsrelay-bench sessions`; the RSS *after start* is read before the first of them), then "
           f"the agent (echo) and the connect load ({s['connect_slots']} slots × {s['connect_seconds']} s); "
           f"pairing never asks the cluster. **v2**: `tlsrelay-bench sessions --v2 --name-prefix bench "
           f"--count {s['cluster_v2_sessions']}`: v2 sessions set up 32 at a time, each `hello 2 "
           f"name=bench-I` (a name the node does not hold, so each asks the cluster_member once, and "
           f"every new reservation is sent to both peers), established at `welcome` and both listener "
           f"lines; the set-up rate includes the TLS handshakes. CPU from /proc/PID/stat (10 ms ticks). "
           f"Ratio = clustered / alone; Δ = clustered − alone (per repeat).\n"]
    for part, d in summary.items():
        out.append(f"### {CLUSTER_PART_TITLE[part]}\n")
        rows = []
        for key, label, digits in CLUSTER_FIGURES[part]:
            f = d["figures"][key]
            if all(v is None for v in f["alone"] + f["clustered"]):
                continue

            def each(values, dg=digits):
                return " / ".join(fmt(v, dg) if v is not None else "—" for v in values) or "—"
            rows.append([label, each(f["alone"]), each(f["clustered"]),
                         " / ".join(f"{v:.2f}×" if v is not None else "—" for v in f["ratio"]) or "—",
                         f"{f['ratio_of_means']:.2f}×" if f["ratio_of_means"] is not None else "—",
                         each(f["delta"])])
        if any(v is not None for v in d["peering_s"]):
            rows.append(["peering s (relay listening → both peers up)", "—",
                         " / ".join(fmt(v, 2) if v is not None else "—" for v in d["peering_s"]),
                         "", "", ""])
        out.append(table(["figure", "alone", "clustered", "ratio per repeat", "ratio of means",
                          "Δ clustered − alone"], rows) + "\n")
        if d["errors"]:
            out.append("Failed: " + "; ".join(d["errors"]) + "\n")
    return out


# ---- the io-threads load

def io_threads_entries(bench, threads, phase, ok=True):
    """{repeat: entry} of the io-threads load (measured ones, or with ok=False the failed ones)."""
    return {r["repeat"]: r for r in bench.runs if r["load"] == "io-threads" and r.get("threads") == threads
            and r.get("phase") == phase and bool(r.get("ok")) == ok}


def number(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def io_threads_summary(bench):
    """The io-threads load's figures per --io-threads value, for the JSON (each list: one
    value per repeat), the means, and 2 threads against 1."""
    reps = sorted({r["repeat"] for r in bench.runs if r["load"] == "io-threads"})
    if not reps:
        return {}
    out = {"repeats": reps, "threads": {}}
    for threads in IO_THREADS:
        bulk = io_threads_entries(bench, threads, "bulk")
        conn = io_threads_entries(bench, threads, "connect")

        def each(runs, get):
            return [get(runs[r]) if r in runs else None for r in reps]

        def res(key):
            return lambda e: number((e.get("result") or {}).get(key))

        def own(key):
            return lambda e: number(e.get(key))
        figures = {
            "bulk_gbit_s": each(bulk, res("gbit_s")),
            "relay_cpu_pct_bulk": each(bulk, relay_cpu_pct),
            "bulk_pairs_moved": each(bulk, own("pairs_moved")),
            "connections_per_s": each(conn, res("connections_per_s")),
            "connect_p50_ms": each(conn, res("p50_ms")),
            "connect_p99_ms": each(conn, res("p99_ms")),
            "connect_failures": each(conn, res("failures")),
            "connections": each(conn, res("connections")),
            "relay_cpu_us_per_connection": each(conn, own("relay_cpu_us_per_connection")),
            "pairs_moved": each(conn, own("pairs_moved")),
            "pairs_moved_share": each(conn, own("pairs_moved_share")),
            "relay_ctxt_switches_per_connection": each(conn, own("relay_ctxt_switches_per_connection")),
        }
        failed = [r for ph in ("bulk", "connect") for r in io_threads_entries(bench, threads, ph, ok=False).values()]
        out["threads"][str(threads)] = {
            "relay_flags": ["--io-threads", str(threads), "--admin", "127.0.0.1:0"],
            "figures": figures,
            "means": {k: mean(v for v in vals if v is not None) for k, vals in figures.items()},
            "cpu_busy_pct_bulk": each(bulk, lambda e: e.get("cpu_busy_pct")),
            "cpu_busy_pct_connect": each(conn, lambda e: e.get("cpu_busy_pct")),
            "errors": [f"{r.get('phase')} r{r['repeat']}: {r.get('error')}" for r in failed],
        }
    one, two = (out["threads"][str(t)] for t in IO_THREADS)

    def ratio(key):
        a, b = one["figures"][key], two["figures"][key]
        ma, mb = one["means"][key], two["means"][key]
        return {"per_repeat": [y / x if x and y is not None else None for x, y in zip(a, b)],
                "of_means": mb / ma if ma and mb is not None else None}

    def delta(key):
        a, b = one["figures"][key], two["figures"][key]
        ma, mb = one["means"][key], two["means"][key]
        return {"per_repeat": [y - x if x is not None and y is not None else None for x, y in zip(a, b)],
                "of_means": mb - ma if ma is not None and mb is not None else None}
    cost = delta("relay_cpu_us_per_connection")
    share = two["means"]["pairs_moved_share"]
    out["two_vs_one"] = {
        "bulk_gbit_s": ratio("bulk_gbit_s"),
        "connections_per_s": ratio("connections_per_s"),
        # what a second io thread costs the relay per connection, the hand-offs included
        "handoff_relay_cpu_us_per_connection": cost,
        "pairs_moved_share": share,
        "relay_cpu_us_per_moved_pair": (cost["of_means"] / share
                                        if cost["of_means"] is not None and share else None),
        "relay_ctxt_switches_per_connection": delta("relay_ctxt_switches_per_connection"),
    }
    return out


def io_threads_markdown(bench, rep):
    s = bench.settings
    summary = io_threads_summary(bench)
    if not summary:
        return []
    ncpu = len(bench.machine.get("cpus_usable") or []) or bench.machine.get("nproc")
    out = [f"## io threads: `--io-threads 2` against `--io-threads 1` ({rep})\n",
           f"tlsrelay v1, placement `{BOTH_PLACEMENT}`: the relay, the agent and the load tool each "
           f"allowed on cpu0 and cpu1 (`taskset -c {BOTH_CPUS}`). Per repeat and threads value T "
           f"({', '.join(str(t) for t in IO_THREADS)}, in that order) a fresh relay with `--io-threads T "
           f"--admin 127.0.0.1:0` and agent (sink) for the bulk load ({s['bulk_streams']} streams × "
           f"{s['bulk_seconds']} s), then a fresh relay and agent (echo) for the connect load "
           f"({s['connect_slots']} slots × {s['connect_seconds']} s). *Moved*: the relay's "
           f"`{IO_MOVED_METRIC}` (/metrics) over the load: joined pairs handed to another io thread "
           f"than the one that accepted them; share = moved / connections made. Relay CPU from "
           f"/proc/PID/stat (10 ms ticks); context switches (voluntary + involuntary) summed over "
           f"the relay's threads from /proc/PID/task/*/status. On this {ncpu}-CPU machine the load "
           f"generator and the agent share the CPUs with the relay, so these are figures of the "
           f"whole loopback system, not the relay's ceiling: a second io thread gains only what "
           f"the load leaves free.\n"]

    def each(values, digits=None):
        return " / ".join(fmt(v, digits) if v is not None else "—" for v in values) or "—"
    rows = []
    for threads in IO_THREADS:
        d = summary["threads"][str(threads)]
        f, m = d["figures"], d["means"]
        moved = " / ".join(f"{int(n)} ({v * 100:.1f} %)" if n is not None and v is not None else "—"
                           for n, v in zip(f["pairs_moved"], f["pairs_moved_share"]))
        busy = " / ".join(f"{fmt(b.get('cpu0'), 0)} · {fmt(b.get('cpu1'), 0)}" if b else "—"
                          for b in d["cpu_busy_pct_connect"])
        rows.append([threads, each(f["bulk_gbit_s"], 2), fmt(m["bulk_gbit_s"], 2),
                     each(f["relay_cpu_pct_bulk"], 0), each(f["bulk_pairs_moved"], 0),
                     each(f["connections_per_s"], 0), fmt(m["connections_per_s"], 0),
                     each(f["connect_p50_ms"], 3), each(f["connect_p99_ms"], 3),
                     each(f["connect_failures"], 0), each(f["relay_cpu_us_per_connection"], 1),
                     fmt(m["relay_cpu_us_per_connection"], 1), moved,
                     each(f["relay_ctxt_switches_per_connection"], 2), busy, "; ".join(d["errors"])])
    out.append(table(["io threads", "bulk Gbit/s", "mean", "relay CPU % in bulk", "bulk pairs moved",
                      "conn/s", "mean", "connect p50 ms", "connect p99 ms", "failures",
                      "relay CPU µs/conn", "mean", "pairs moved (share)", "relay ctx switches/conn",
                      "cpu0 · cpu1 busy % in connect", "errors"], rows) + "\n")
    t = summary["two_vs_one"]

    def times(r):
        text = f"{r['of_means']:.2f}× of the means" if r["of_means"] is not None else "—"
        if len([v for v in r["per_repeat"] if v is not None]) > 1:
            text += " (per repeat " + " / ".join(f"{v:.2f}×" if v is not None else "—"
                                                 for v in r["per_repeat"]) + ")"
        return text
    cost, share = t["handoff_relay_cpu_us_per_connection"], t["pairs_moved_share"]
    cost_text = "—"
    if cost["of_means"] is not None:
        cost_text = f"{cost['of_means']:+.1f} µs"
        if len([v for v in cost["per_repeat"] if v is not None]) > 1:
            cost_text += " (per repeat " + " / ".join(f"{v:+.1f}" if v is not None else "—"
                                                      for v in cost["per_repeat"]) + ")"
    out.append(f"- 2 threads against 1: bulk {times(t['bulk_gbit_s'])}; conn/s "
               f"{times(t['connections_per_s'])}.")
    per_moved = t["relay_cpu_us_per_moved_pair"]
    switches = t["relay_ctxt_switches_per_connection"]["of_means"]
    if per_moved is None:
        per_moved_text = ""
    elif per_moved > 0:
        per_moved_text = f" (≈ {per_moved:.1f} µs per moved pair)"
    else:
        # a saving cannot be divided among the hand-offs
        per_moved_text = " (no added relay CPU per connection to put on the hand-offs in this run)"
    out.append(f"- Hand-off cost: relay CPU per connection at 2 threads − at 1 thread = {cost_text}, with "
               f"{fmt(share * 100 if share is not None else None, 1)} % of the pairs handed to the other "
               f"io thread{per_moved_text}"
               + (f"; relay context switches per connection {switches:+.2f}" if switches is not None else "")
               + ". The difference holds everything else a second io thread changes too (two threads "
                 "waking each other, the CPUs shared with the load), so it is an estimate of the "
                 "hand-offs, not a measurement of them alone.\n")
    return out


def scale_summary(bench):
    """The sessions load's figures per S, for latest.json (each list: one value per repeat)."""
    out = {}
    for protocol, count in ((p, n) for p in bench.settings["scale_protocols"]
                            for n in bench.settings["scale_sessions"]):
        runs = scale_runs(bench, count, protocol)
        if not runs:
            continue
        answers = [r.get("sessions_result") or {} for r in runs]
        # v1 under S as before; v2 under "S v2"
        out[str(count) + (" v2" if protocol == 2 else "")] = {
            "protocol": protocol,
            "repeats": [r["repeat"] for r in runs],
            "port_count": 2 * (count + 2),
            "established": [a.get("established") for a in answers],
            "open_at_end": [a.get("open_at_end") for a in answers],
            "failures": [a.get("failures") for a in answers],
            "failure_kinds": [a.get("failure_kinds") for a in answers],
            "setup_s": [a.get("setup_s") for a in answers],
            "rss_kib_before": [a.get("rss_kib_before") for a in answers],
            "rss_kib_after": [a.get("rss_kib_after") for a in answers],
            "rss_bytes_per_session": [a.get("rss_bytes_per_session") for a in answers],
            "connections_per_s": [(r.get("result") or {}).get("connections_per_s") if r.get("ok") else None
                                  for r in runs],
            "p99_ms": [(r.get("result") or {}).get("p99_ms") if r.get("ok") else None for r in runs],
            "errors": [r.get("error") for r in runs],
        }
    return out


def scale_table(out, bench, protocol):
    """The sessions load's table for idle sessions of `protocol` (a row per S)."""
    rows = []
    for count in bench.settings["scale_sessions"]:
        runs = scale_runs(bench, count, protocol)
        if not runs:
            continue
        answers = [r.get("sessions_result") or {} for r in runs]

        def each(values, digits=0):
            return " / ".join(fmt(v, digits) if isinstance(v, (int, float)) else "—" for v in values)
        held = " / ".join(f"{a['open_at_end']} of {count}" if isinstance(a.get("open_at_end"), int)
                          else "—" for a in answers)
        kib = " / ".join(f"{a.get('rss_kib_before')} → {a.get('rss_kib_after')}" if a else "—"
                         for a in answers)
        conn = [(r.get("result") or {}).get("connections_per_s") if r.get("ok") else None for r in runs]
        p99 = [(r.get("result") or {}).get("p99_ms") if r.get("ok") else None for r in runs]
        errors = "; ".join(e for e in ([r.get("error") for r in runs] +
                                       [a.get("error") for a in answers]) if e)
        rows.append([count, held, each([a.get("failures") for a in answers]),
                     each([a.get("rss_bytes_per_session") for a in answers]), kib,
                     each([a.get("setup_s") for a in answers], 2), each(conn), each(p99, 3), errors])
    if not rows:
        return
    out.append(f"Idle protocol v{protocol} sessions:\n")
    out.append(table(["sessions", "held", "failures", "relay RSS B/session", "relay RSS KiB before → after",
                      "set-up s", "conn/s beside them", "connect p99 ms", "errors"], rows) + "\n")


def table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def row_keys(bench):
    """(config, placement) in table order."""
    keys = []
    for config in CONFIGS:
        if config not in bench.args.configs:
            continue
        if config == "direct":
            keys.append((config, DIRECT_PLACEMENT))
        else:
            keys += [(config, p) for p in bench.placements]
    return keys


def per_repeat(bench, config, placement, load, key, digits=None):
    vals = results_of(bench.runs, config, placement, load, key)
    if not vals:
        return "—"
    return " / ".join(fmt(vals.get(r), digits) for r in range(1, bench.settings["repeats"] + 1))


def failure_text(bench, config, placement, load):
    errs = [r.get("error") for r in bench.runs if r["config"] == config and r["load"] == load
            and r["placement"] == placement and not r.get("ok")]
    if config in bench.unavailable and not any(r["config"] == config and r["load"] == load
                                               for r in bench.runs):
        return "not measured: " + bench.unavailable[config]
    return "; ".join(e for e in errs if e)


def write_markdown(bench, targets, path, plots, complete):
    s = bench.settings
    m = bench.machine
    R = s["repeats"]
    rep = " / ".join(f"r{r}" for r in range(1, R + 1))
    out = []
    title = "tlsrelay benchmark" + (" (QUICK smoke run: short loads, not for comparison)" if bench.args.quick else "")
    out.append(f"# {title}\n")
    if not complete:
        out.append("**The run was interrupted: the figures below are incomplete.**\n")
    out.append(f"{m['date_utc']} · commit `{m['git_commit'][:12]}`"
               f"{' (+%d modified files)' % m['git_dirty_files'] if m['git_dirty_files'] else ''} · "
               f"{m['cpu_model']} · nproc {m['nproc']} · kernel {m['kernel']} · build {m['build_type']} · "
               f"load average at start {' '.join(m['loadavg_start'])}, at end {' '.join(m.get('loadavg_end', []))}\n")
    out.append(f"Placements: **split** = load and backend on cpu0, system under test on cpu1; "
               f"**shared** = everything on cpu0. *direct* has no system under test, so it is measured "
               f"once per repeat (placement `{DIRECT_PLACEMENT}`). Each cell gives every repeat ({rep}). "
               f"Loads: bulk {s['bulk_streams']} streams × {s['bulk_seconds']} s into a sink; latency "
               f"{s['round_trips']} round trips (+{s['warmup']} warm-up) to an echo; connect "
               f"{s['connect_slots']} slots × {s['connect_seconds']} s to an echo; hold {s['hold_count']} "
               f"idle connections; sessions {', '.join(str(n) for n in s['scale_sessions'])} idle "
               f"{' and '.join(f'v{p}' for p in s['scale_protocols'])} control sessions beside a {s['scale_connect_seconds']} s connect load (v1, split); "
               f"handshake-flood: bulk alone and beside {s['flood_concurrency']} TLS handshakes "
               f"under way (v1, split); cluster: a relay alone and as one node of a cluster of three "
               f"(v1 connect load and RSS beside {s['cluster_idle_sessions']} idle sessions, "
               f"{s['cluster_v2_sessions']} v2 session set-ups with names; split); io-threads: bulk "
               f"and connect through a relay with `--io-threads 1` and `2`, everything on cpu0 and "
               f"cpu1 (v1, placement `{BOTH_PLACEMENT}`). "
               f"Method: bench/README.md.\n")
    disturbed = [r for r in bench.runs if r.get("foreign_cpu_pct")]
    if disturbed:
        out.append(f"**Other processes used CPU during {len(disturbed)} of {len(bench.runs)} loads** "
                   f"({', '.join(sorted(bench.foreign))}): those figures may be disturbed; see "
                   "*Process notes* at the end and compare the repeats.\n")
    unavailable = dict(bench.unavailable)
    if unavailable:
        out.append("## Not measured\n")
        for c, why in unavailable.items():
            out.append(f"- **{LABELS[c]}**: {why}")
        out.append("")
    notes = [(c, n) for c, ns in bench.config_notes.items() for n in ns]
    if notes:
        out.append("## Notes\n")
        for c, n in notes:
            out.append(f"- {LABELS.get(c, 'run')}: {n}")
        out.append("")

    out.append("## Targets\n")
    rows = []
    for t in targets:
        if t["verdict"] == "NOT MEASURED":
            rows.append([t["target"], t["placement"], "—", "**NOT MEASURED**", t["detail"]])
        else:
            rows.append([t["target"], t["placement"], t["shown"],
                         f"**{t['verdict']}** ({t['margin']})", t["detail"]])
    out.append(table(["target", "placement", "measured", "verdict", "figures"], rows) + "\n")
    if any(t["verdict"] == "MISSED" for t in targets):
        out.append("What limits a missed target: the *CPU cost of the system under test* table below "
                   "(measured in this run) and the profiles in bench/README.md, section *Limits*.\n")

    keys = row_keys(bench)
    loads = set(bench.args.loads)  # a partial run (--loads) shows only the tables of its loads
    direct_bulk = mean(results_of(bench.runs, "direct", DIRECT_PLACEMENT, "bulk", "gbit_s").values())

    def fail_or(cells, config, placement, load):
        f = failure_text(bench, config, placement, load)
        return cells + [f if f else ""]

    if "bulk" in loads:
        out.append(f"## Bulk throughput (Gbit/s, {rep})\n")
        rows = []
        for c, p in keys:
            g = mean(results_of(bench.runs, c, p, "bulk", "gbit_s").values())
            share = f"{g / direct_bulk * 100:.0f} %" if g is not None and direct_bulk else "—"
            rows.append(fail_or([LABELS[c], p, per_repeat(bench, c, p, "bulk", "gbit_s", 2),
                                 fmt(g, 2), share], c, p, "bulk"))
        out.append(table(["configuration", "placement", "Gbit/s", "mean", "of direct", "errors"], rows) + "\n")

    if "latency" in loads:
        out.append(f"## Latency (µs per round trip, {rep})\n")
        rows = []
        for c, p in keys:
            rows.append(fail_or([LABELS[c], p] + [per_repeat(bench, c, p, "latency", k, 1)
                                                  for k in ("p50_us", "p90_us", "p99_us", "p999_us", "mean_us")],
                                c, p, "latency"))
        out.append(table(["configuration", "placement", "p50", "p90", "p99", "p99.9", "mean", "errors"], rows) + "\n")

    if "connect" in loads:
        out.append(f"## Connections ({s['connect_slots']} slots, {rep})\n")
        rows = []
        for c, p in keys:
            rows.append(fail_or([LABELS[c], p] + [per_repeat(bench, c, p, "connect", k, d) for k, d in
                                                  (("connections_per_s", 0), ("p50_ms", 3), ("p99_ms", 3), ("failures", 0))],
                                c, p, "connect"))
        out.append(table(["configuration", "placement", "conn/s", "p50 ms", "p99 ms", "failures", "errors"], rows) + "\n")

    if loads & {"bulk", "latency", "connect"}:
        out.append(f"## CPU cost of the system under test ({rep})\n")
        out.append("User + kernel CPU time of the system under test's processes during each load "
                   "(from /proc/PID/stat, all threads; 10 ms ticks), per unit of work: per GB "
                   "acknowledged in bulk, per round trip in latency, per connection in connect. "
                   "With tlsrelay v2 the relay and `tlsrelay expose` are both counted (split in "
                   "brackets). In the *split* placement the system under test has cpu1 to itself, so "
                   "a connect rate whose CPU cost × rate is near 1 s/s is bound by that CPU.\n")
        rows = []

        def cpu_per(c, p, load, unit_of):
            cells = []
            for r in sorted((r for r in bench.runs if r["config"] == c and r["load"] == load and r.get("ok")
                             and r["placement"] == p and r.get("sut_cpu_s")), key=lambda r: r["repeat"]):
                units = unit_of(r["result"])
                if not units:
                    continue
                parts = r["sut_cpu_s"]
                total = sum(parts.values())
                text = fmt(total / units, 1)
                if len(parts) > 1:
                    text += " (" + " + ".join(fmt(v / units, 1) for v in parts.values()) + ")"
                cells.append(text)
            return " / ".join(cells) or "—"

        for c, p in keys:
            if c == "direct":
                continue
            rows.append([LABELS[c], p,
                         cpu_per(c, p, "bulk", lambda x: (x.get("bytes_acked") or 0) / 1e9),
                         cpu_per(c, p, "latency",
                                 lambda x: ((x.get("round_trips") or 0) + (x.get("warmup") or 0)) / 1e6),
                         cpu_per(c, p, "connect", lambda x: (x.get("connections") or 0) / 1e6)])
        out.append(table(["configuration", "placement", "CPU s per GB", "CPU µs per round trip",
                          "CPU µs per connection"], rows) + "\n")

    if "hold" in loads:
        out.append(f"## Memory per held idle connection ({rep})\n")
        out.append("RSS of the system under test (tlsrelay: the relay process; haproxy; ssh -R: the sshd "
                   "process that owns the forwarded listener; direct: the echo backend, for reference), "
                   "as measured by `tlsrelay-bench hold`. *also*: peak RSS growth of the other processes "
                   "of that configuration, sampled every 50 ms by this script.\n")
        rows = []
        for c, p in keys:
            hold_runs = sorted((r for r in bench.runs if r["config"] == c and r["load"] == "hold"
                                and r.get("ok") and (r["placement"] == p)), key=lambda r: r["repeat"])
            held = " / ".join(f"{r['held']} of {r['count']}" for r in hold_runs) or "—"
            kib = " / ".join(f"{r['result'].get('rss_kib_before')} → {r['result'].get('rss_kib_after')}"
                             for r in hold_runs) or "—"
            also = "; ".join(f"{name}: " + " / ".join(
                fmt(r['also'][name]['rss_bytes_per_connection'], 0) for r in hold_runs if name in r.get("also", {}))
                + " B/conn" for name in sorted({n for r in hold_runs for n in r.get("also", {})}))
            rows.append(fail_or([LABELS[c], p, held, per_repeat(bench, c, p, "hold", "rss_bytes_per_connection", 0),
                                 kib, also or ""], c, p, "hold"))
        out.append(table(["configuration", "placement", "held", "bytes/conn", "RSS KiB before → after",
                          "also", "errors"], rows) + "\n")

    if any(r["load"] == "sessions" for r in bench.runs):
        out.append(f"## Scale: idle control sessions ({rep})\n")
        lo, hi = min(s["scale_sessions"]), max(s["scale_sessions"])
        out.append(f"tlsrelay v1, split placement. For each S a fresh relay with `--port-count` "
                   f"2×(S+2) (room for S sessions, the agent and a spare pair); `tlsrelay-bench "
                   f"sessions --count S` opens S idle protocol v1 control sessions (TLS with the "
                   f"client certificate, 32 set up at a time; established = both listener lines "
                   f"received) and holds them; then the agent (echo) joins and the connect load "
                   f"({s['connect_slots']} slots × {s['scale_connect_seconds']} s) runs beside the "
                   f"idle sessions. The second table: the same with `--v2` (ALPN tlsrelay/2, `hello "
                   f"2`; the relay's heartbeat pings every session and the load answers), the agent "
                   f"still v1. *failures*: sessions not established or closed by the relay "
                   f"before the end. *RSS/session*: (relay RSS with all S established − RSS of the "
                   f"fresh relay) / S; at small S the relay's own first allocations dominate it. "
                   f"Target *pairing cost flat*: conn/s beside {hi} sessions ≥ {SCALE_FLAT_FACTOR}× "
                   f"conn/s beside {lo}; *RSS*: ≤ {SCALE_RSS_TARGET // 1024} KiB per session at {hi}.\n")
        for protocol in s["scale_protocols"]:
            scale_table(out, bench, protocol)

    if any(r["load"] == "handshake-flood" for r in bench.runs):
        out.append(f"## Handshake flood ({rep})\n")
        out.append(f"tlsrelay v1, split placement (relay on cpu1; bulk load, agent and flood client on "
                   f"cpu0). For each relay a fresh relay and agent (sink): the bulk load "
                   f"({s['bulk_streams']} streams × {s['bulk_seconds']} s) alone, then the same bulk load "
                   f"while `tlsrelay-bench flood --concurrency {s['flood_concurrency']}` keeps that many "
                   f"full TLS 1.3 handshakes (ALPN tlsrelay/2, client certificate) with the relay's control "
                   f"port under way from 127.0.0.1, started {s['flood_ramp_s']} s before the bulk. "
                   f"*defaults*: the relay's default admission limits; *off*: `{' '.join(FLOOD_LIMITS['off'])}`. "
                   f"Ratio = flooded / unloaded Gbit/s (target with the defaults: ≥ {FLOOD_FACTOR}×). "
                   f"Handshakes per second over the whole flood; *refused*: closed by the relay before "
                   f"the handshake ended. CPU in % of one CPU during the flooded bulk; the flood client "
                   f"shares cpu0 with the bulk load and the agent.\n")
        rows = []
        for limits in FLOOD_LIMITS:
            summ = flood_summary(bench).get(limits)
            if not summ:
                continue

            def each(values, digits=None):
                return " / ".join(fmt(v, digits) if isinstance(v, (int, float)) else "—" for v in values)
            busy = " / ".join(f"{fmt(b.get('cpu0'), 0)} · {fmt(b.get('cpu1'), 0)}" if b else "—"
                              for b in summ["cpu_busy_pct_flooded"])
            errors = "; ".join(r.get("error") or "" for r in bench.runs if r["load"] == "handshake-flood"
                               and r.get("limits") == limits and not r.get("ok"))
            rows.append([FLOOD_LIMITS_LABEL[limits], each(summ["unloaded_gbit_s"], 2),
                         each(summ["flooded_gbit_s"], 2), each(summ["ratio"], 2),
                         fmt(summ["ratio_of_means"], 2), each(summ["handshakes_completed_per_s"], 0),
                         each(summ["handshakes_refused_per_s"], 0), each(summ["handshakes_failed"], 0),
                         each(summ["relay_cpu_pct_unloaded"], 0), each(summ["relay_cpu_pct_flooded"], 0),
                         each(summ["flood_client_cpu_pct"], 0), busy, errors])
        out.append(table(["relay limits", "unloaded Gbit/s", "flooded Gbit/s", "ratio", "ratio of means",
                          "handshakes completed/s", "refused/s", "failed", "relay CPU % unloaded",
                          "relay CPU % flooded", "flood client CPU %", "cpu0 · cpu1 busy % flooded",
                          "errors"], rows) + "\n")

    out += cluster_markdown(bench, rep)
    out += io_threads_markdown(bench, rep)

    problems = [r for r in bench.runs if r.get("notes")]
    if problems:
        out.append("## Process notes\n")
        for r in problems:
            for n in r["notes"]:
                load = r["load"] + (f"{' v2' if r.get('session_protocol') == 2 else ''} {r['sessions']}"
                                    if r["load"] == "sessions" else "")
                if r["load"] == "handshake-flood":
                    load += f" {r.get('limits')} {r.get('phase')}"
                if r["load"] == "cluster":
                    load += f" {r.get('part')} {r.get('mode')}"
                if r["load"] == "io-threads":
                    load += f" {r.get('threads')} {r.get('phase')}"
                out.append(f"- {LABELS[r['config']]} {r['placement']} r{r['repeat']} {load}: {n}")
        out.append("")
    if plots:
        out.append("## Plots\n")
        for p in plots:
            out.append(f"![{p.stem}]({p.name})")
        out.append("")
    path.write_text("\n".join(out))


def make_plots(bench, prefix):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        bench.config_notes.setdefault("_run", []).append(f"no plots: matplotlib missing ({e})")
        return []
    written = []
    keys = row_keys(bench)
    configs = [c for c in CONFIGS if c in bench.args.configs]

    def grouped(ax, categories, series, getter, ylabel, log=False):
        """bars = mean over repeats, whiskers = min..max of the repeats."""
        width = 0.8 / max(1, len(series))
        drawn = False
        for i, name in enumerate(series):
            means, lo, hi, xs = [], [], [], []
            for j, cat in enumerate(categories):
                vals = list(getter(cat, name))
                if not vals:
                    continue
                m = statistics.fmean(vals)
                xs.append(j - 0.4 + width * (i + 0.5))
                means.append(m)
                lo.append(m - min(vals))
                hi.append(max(vals) - m)
            if xs:
                ax.bar(xs, means, width, label=name, yerr=[lo, hi], capsize=2)
                drawn = True
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels([c if isinstance(c, str) else c[1] for c in categories], rotation=0)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        if drawn:
            if log:
                ax.set_yscale("log")
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no successful measurement", transform=ax.transAxes, ha="center")

    def placement_getter(load, key):
        def get(config, placement):
            p = DIRECT_PLACEMENT if config == "direct" else placement
            return results_of(bench.runs, config, p, load, key).values()
        return get

    cat_labels = [LABELS[c] + ("*" if c == "direct" else "") for c in configs]
    foot = "* direct: one measurement (load and backend on cpu0), drawn for both placements"

    def save(fig, name):
        path = bench.out_dir / f"{prefix}{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    # a partial run (--loads) draws only the plots of its loads
    loads = bench.args.loads

    # throughput
    if "bulk" in loads:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        grouped(ax, configs, bench.placements, placement_getter("bulk", "gbit_s"), "Gbit/s")
        ax.set_xticklabels(cat_labels)
        ax.set_title(f"Bulk throughput, {bench.settings['bulk_streams']} streams into a sink")
        ax.set_xlabel(foot, fontsize=7)
        save(fig, "throughput")

    # latency percentiles per placement
    pct = [("p50_us", "p50"), ("p90_us", "p90"), ("p99_us", "p99"), ("p999_us", "p99.9")]
    if "latency" in loads:
        fig, axes = plt.subplots(1, len(bench.placements), figsize=(6 * len(bench.placements), 4.5),
                                 squeeze=False)
        for ax, placement in zip(axes[0], bench.placements):
            def get(config, label, placement=placement):
                key = dict((l, k) for k, l in pct)[label]
                p = DIRECT_PLACEMENT if config == "direct" else placement
                return results_of(bench.runs, config, p, "latency", key).values()
            grouped(ax, configs, [l for _, l in pct], get, "µs per round trip (log)", log=True)
            ax.set_xticklabels(cat_labels, fontsize=8)
            ax.set_title(f"Round-trip latency percentiles, {placement}")
            ax.set_xlabel(foot, fontsize=7)
        save(fig, "latency")

    # connections per second
    if "connect" in loads:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        grouped(ax, configs, bench.placements, placement_getter("connect", "connections_per_s"), "connections/s")
        ax.axhline(15000, color="gray", ls="--", lw=1)
        ax.text(len(configs) - 0.5, 15000, " v1 target 15000/s", fontsize=7, va="bottom", ha="right")
        ax.set_xticklabels(cat_labels)
        ax.set_title(f"New connections per second ({bench.settings['connect_slots']} slots, echo round trip)")
        ax.set_xlabel(foot, fontsize=7)
        save(fig, "connections")

    # RSS per held connection: the system under test and the noted extras
    cats = [("haproxy", "sut", "haproxy"), ("ssh", "sut", "ssh -R: sshd"), ("ssh", "ssh client", "ssh -R: ssh"),
            ("v1", "sut", "v1 relay"), ("v2", "sut", "v2 relay"), ("v2", "tlsrelay expose", "v2 expose")]
    cats = [c for c in cats if c[0] in configs] if "hold" in loads else []

    def rss_get(cat, placement):
        config, who, _ = cat
        vals = []
        for r in bench.runs:
            if r["config"] == config and r["load"] == "hold" and r.get("ok") and r["placement"] == placement:
                if who == "sut":
                    v = r["result"].get("rss_bytes_per_connection")
                else:
                    v = r.get("also", {}).get(who, {}).get("rss_bytes_per_connection")
                if isinstance(v, (int, float)):
                    vals.append(v)
        return vals
    if cats:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        values = [v for c in cats for p in bench.placements for v in rss_get(c, p) if v > 0]
        spread = values and max(values) / min(values) > 20
        grouped(ax, cats, bench.placements, rss_get,
                "bytes of RSS per held connection" + (" (log)" if spread else ""), log=bool(spread))
        ax.set_xticklabels([c[2] for c in cats], fontsize=8)
        ax.axhline(2048, color="gray", ls="--", lw=1)
        ax.text(len(cats) - 0.5, 2048, " relay target 2 KiB", fontsize=7, va="bottom", ha="right")
        ax.set_title(f"Memory per idle held connection ({bench.settings['hold_count']} held)")
        save(fig, "rss")

    # connection rate beside idle control sessions (the sessions load)
    lines = []
    for protocol in bench.settings["scale_protocols"]:
        counts = [n for n in bench.settings["scale_sessions"]
                  if scale_connect(bench, n, "connections_per_s", protocol)]
        if counts:
            lines.append((protocol, counts))
    if lines:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for protocol, counts in lines:
            vals = [list(scale_connect(bench, n, "connections_per_s", protocol).values()) for n in counts]
            means = [statistics.fmean(v) for v in vals]
            line = ax.errorbar(counts, means, yerr=[[m - min(v) for m, v in zip(means, vals)],
                                                    [max(v) - m for m, v in zip(means, vals)]],
                               marker="o", capsize=3,
                               label=f"tlsrelay v1 agent, split, beside idle v{protocol} sessions")
            ax.axhline(SCALE_FLAT_FACTOR * means[0], color=line[0].get_color(), ls="--", lw=1)
            ax.text(counts[-1], SCALE_FLAT_FACTOR * means[0],
                    f" {SCALE_FLAT_FACTOR}× the rate at {counts[0]} (v{protocol})",
                    fontsize=7, va="bottom" if protocol == 1 else "top", ha="right")
        ax.legend(fontsize=7, loc="lower left")
        counts = sorted({n for _, c in lines for n in c})
        ax.set_xscale("log")
        ax.set_xticks(counts)
        ax.set_xticklabels([str(n) for n in counts])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("idle control sessions held by the relay")
        ax.set_ylabel("connections/s")
        ax.grid(alpha=0.3)
        ax.set_title(f"New connections per second beside idle sessions "
                     f"({bench.settings['connect_slots']} slots × {bench.settings['scale_connect_seconds']} s)")
        save(fig, "scale")
    return written


def write_results(bench, complete):
    bench.out_dir.mkdir(parents=True, exist_ok=True)
    bench.machine["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    bench.machine["foreign_processes_seen"] = sorted(bench.foreign)
    prefix = "" if bench.name == "latest" else f"{bench.name}-"
    plots = []
    try:
        plots = make_plots(bench, prefix)
    except Exception as e:
        bench.config_notes.setdefault("_run", []).append(f"plotting failed: {e!r}")
    targets = evaluate_targets(bench)
    data = {
        "complete": complete,
        "quick": bench.args.quick,
        "machine": bench.machine,
        "settings": dict(bench.settings, placements=bench.placements,
                         haproxy_maxaccept=bench.args.haproxy_maxaccept,
                         haproxy_maxconn=haproxy_maxconn(),
                         cpu_split={"load_and_backend": "0", "system_under_test": "1"},
                         cpu_shared={"everything": "0"},
                         cpu_both={"everything, io-threads load only": BOTH_CPUS}),
        "elapsed_s": round(time.monotonic() - bench.started, 1),
        "unavailable": bench.unavailable,
        "notes": {k: v for k, v in bench.config_notes.items() if v},
        "targets": targets,
        "scale": scale_summary(bench),
        "handshake_flood": flood_summary(bench),
        "cluster": cluster_summary(bench),
        "io_threads": io_threads_summary(bench),
        "runs": bench.runs,
    }
    json_path = bench.out_dir / f"{bench.name}.json"
    # Paths inside the checkout are written relative to it: results are
    # committed, and the checkout's place on the machine that ran them is noise.
    text = json.dumps(data, indent=1, ensure_ascii=False).replace(str(REPO) + "/", "")
    json_path.write_text(text + "\n")
    md_path = bench.out_dir / f"{bench.name}.md"
    write_markdown(bench, targets, md_path, plots, complete)
    log(f"wrote {json_path}, {md_path}" + "".join(f", {p.name}" for p in plots))
    return targets


# --------------------------------------------------------------------------- main

HAVE_TASKSET = shutil.which("taskset") is not None


def reexec_for_matplotlib():
    """`python3` may be another interpreter (pyenv, a venv) than the Debian one that
    python3-matplotlib installs into: then run this script with /usr/bin/python3."""
    try:
        import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    system = "/usr/bin/python3"
    if (os.environ.get("TLSRELAY_BENCH_REEXEC") or not os.access(system, os.X_OK)
            or os.path.realpath(sys.executable) == os.path.realpath(system)):
        return
    probe = subprocess.run([system, "-c", "import matplotlib"], capture_output=True, timeout=60)
    if probe.returncode == 0:
        print(f"run_bench: matplotlib is not importable by {sys.executable}; re-running with {system}",
              file=sys.stderr, flush=True)
        os.environ["TLSRELAY_BENCH_REEXEC"] = "1"
        os.execv(system, [system, os.path.abspath(__file__)] + sys.argv[1:])


def main():
    reexec_for_matplotlib()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="CMake build directory with tlsrelay and tlsrelay-bench")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 s loads, K=500, one repeat")
    ap.add_argument("--out", default=str(BENCH_DIR / "results"), help="results directory")
    ap.add_argument("--name", help="results file stem (default: latest, or quick with --quick)")
    ap.add_argument("--repeats", type=int, help="override the number of repeats")
    ap.add_argument("--configs", nargs="+", default=CONFIGS, choices=CONFIGS)
    ap.add_argument("--placements", nargs="+", default=PLACEMENTS, choices=PLACEMENTS)
    ap.add_argument("--loads", nargs="+", default=LOADS, choices=LOADS)
    ap.add_argument("--haproxy-maxaccept", type=int, default=64,
                    help="haproxy tune.maxaccept (default 64, the single-process value)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the run directory (logs, configs)")
    ap.add_argument("--tw-reuse-delay-ms", type=int, default=100, metavar="MS",
                    help=f"{TW_REUSE_DELAY} for the run (default 100; restored at the end; "
                         "-1 leaves it): above ~14 000 connections/s the load's source ports "
                         "run out at the kernel's 1000 ms")
    ap.add_argument("--scale-sessions", nargs="+", type=int, metavar="S",
                    help="the sessions load's session counts (default 10 100 1000 6000; --quick: up to 1000)")
    ap.add_argument("--scale-protocols", nargs="+", type=int, choices=[1, 2], metavar="P",
                    help="the sessions load's idle session protocols (default 1 2)")
    args = ap.parse_args()

    bench = Bench(args)
    for path in (bench.tlsrelay, bench.tool):
        if not os.access(path, os.X_OK):
            print(f"run_bench: {path} is missing; build first (cmake --build {bench.build})",
                  file=sys.stderr)
            return 2
    if not HAVE_TASKSET:
        print("run_bench: taskset (util-linux) is missing: cannot place processes on CPUs", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _on_sigterm)
    # also when started in the background by a shell that ignores SIGINT for its children
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # held connections need descriptors: load, backend and relay each hold thousands
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bench.usable_cpus = set(os.sched_getaffinity(0))
    # this script is part of the load side: keep it off cpu1 in the split placement
    try:
        os.sched_setaffinity(0, {0})
    except OSError:
        pass

    tw_delay_before = read_sysctl(TW_REUSE_DELAY)
    tw_delay_changed = False
    if args.tw_reuse_delay_ms >= 0 and tw_delay_before not in (None, str(args.tw_reuse_delay_ms)):
        tw_delay_changed = write_sysctl(TW_REUSE_DELAY, args.tw_reuse_delay_ms)
        if tw_delay_changed:
            log(f"{TW_REUSE_DELAY} = {args.tw_reuse_delay_ms} for this run (was {tw_delay_before})")
        else:
            log(f"warning: cannot set {TW_REUSE_DELAY} (not root?): connect loads may be capped "
                f"near 14 000/s by the load's own source ports")
    bench.machine = machine_info(bench.build, bench.usable_cpus)
    if bench.machine["build_type"] not in ("Release", "RelWithDebInfo"):
        log(f"warning: {bench.build} is a {bench.machine['build_type']} build")
    bench.run_dir = Path(tempfile.mkdtemp(prefix="tlsrelay-bench-"))
    complete = False
    code = 1
    try:
        log(f"run directory {bench.run_dir}; settings {bench.settings}")
        bench.prepare_keys()
        bench.run()
        complete = True
        code = 0
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}): stopping every process, writing what was measured")
        code = 130
    except Exception as e:
        log(f"error: {e!r}: stopping every process, writing what was measured")
        import traceback
        traceback.print_exc()
    finally:
        # every child, each by its own PID; ignore further Ctrl-C while doing so
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        Child.stop_all()
        if tw_delay_changed and write_sysctl(TW_REUSE_DELAY, tw_delay_before):
            log(f"{TW_REUSE_DELAY} back to {tw_delay_before}")
        try:
            targets = write_results(bench, complete)
            for t in targets:
                log(f"target {t['target']} [{t['placement']}]: {t['verdict']} "
                    f"{t.get('shown', '')} {t.get('margin', t.get('detail', ''))}")
        except Exception as e:
            log(f"writing results failed: {e!r}")
            import traceback
            traceback.print_exc()
            code = code or 1
        if args.keep_tmp:
            log(f"kept {bench.run_dir}")
        else:
            shutil.rmtree(bench.run_dir, ignore_errors=True)
        log(f"done in {time.monotonic() - T0:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
