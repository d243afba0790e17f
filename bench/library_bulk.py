#!/usr/bin/env python3
"""Bulk through a server built on the client library: the relayed echo example
in its forward mode (examples/relayed_echo_server.cpp --forward), between a
relay and a `tlsrelay-bench sink`, once per pump of the example.

  load (tlsrelay-bench bulk) -> relay public port <=> reverse connection
      <- relayed_echo_server --forward (the library) -> sink

Placement as run_bench.py's "split": the relay and the example (the systems
under test) on cpu1, the sink and the load on cpu0 (without taskset: anywhere).
Prints one line per run (Gbit/s acknowledged by the sink; CPU of the example and
the relay in % of one CPU while the load ran) and writes nothing.

usage: bench/library_bulk.py [--build build] [--pumps copy splice] [--repeats 2]
                             [--streams 4] [--seconds 10]
"""
import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PORT_LO, PORT_HI = 20000, 32000  # below the ephemeral range


def can_bind(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(count):
    for _ in range(2000):
        base = random.randint(PORT_LO, PORT_HI - count)
        if all(can_bind(p) for p in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1")


def pinned(cpu, argv):
    return (["taskset", "-c", cpu] if shutil.which("taskset") else []) + argv


def wait_line(proc, pattern, timeout=20):
    """The first stdout line of `proc` matching `pattern`, within the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        m = re.search(pattern, line)
        if m:
            return m
    raise RuntimeError(f"{proc.args[0]}: no line matching {pattern!r} within {timeout} s")


def wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def cpu_seconds(pid):
    """utime + stime of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(procs):
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def one_run(build, keys, pump, streams, seconds):
    procs = []
    try:
        sink_port = free_ports(1)
        procs.append(subprocess.Popen(
            pinned("0", [str(build / "tlsrelay-bench"), "sink", "--listen", f"127.0.0.1:{sink_port}"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(sink_port)
        port = free_ports(5)
        relay = subprocess.Popen(
            pinned("1", [str(build / "tlsrelay"), "serve", "--listen", "127.0.0.1", "--port", str(port),
                         "--port-count", "4", "--keys", str(keys), "--log-level", "warn",
                         "--drain-timeout", "0"]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(relay)
        wait_line(relay, r"tlsrelay: listening")
        example = subprocess.Popen(
            pinned("1", [str(build / "examples" / "relayed_echo_server"), f"127.0.0.1:{port}",
                         "--protocol", "1", "--ca", str(keys / "ca.crt.pem"),
                         "--cert", str(keys / "client.crt.pem"), "--key", str(keys / "client.key.pem"),
                         "--forward", f"127.0.0.1:{sink_port}", "--pump", pump]),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(example)
        m = wait_line(example, r"^public address (\S+):(\d+)")
        target = f"{m.group(1)}:{m.group(2)}"
        load = pinned("0", [str(build / "tlsrelay-bench"), "bulk", "--target", target,
                            "--streams", str(streams), "--seconds", str(seconds)])
        before = {name: cpu_seconds(p.pid) for name, p in (("relay", relay), ("example", example))}
        started = time.monotonic()
        out = subprocess.run(load, capture_output=True, text=True, timeout=seconds + 60)
        elapsed = time.monotonic() - started
        if out.returncode != 0:
            raise RuntimeError(f"bulk exited {out.returncode}: {out.stderr.strip()[-300:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        # % of one CPU while the load ran (its connect and drain included)
        result["cpu"] = {name: (cpu_seconds(p.pid) - before[name]) / elapsed * 100
                         for name, p in (("relay", relay), ("example", example))}
        return result, " ".join(load)
    finally:
        stop(procs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", type=Path)
    ap.add_argument("--pumps", nargs="+", default=["copy", "splice"], choices=["copy", "splice"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="library-bulk-") as tmp:
        keys = Path(tmp) / "keys"
        subprocess.run([str(args.build / "tlsrelay"), "certs", "init", str(keys)], check=True,
                       stdout=subprocess.DEVNULL)
        for repeat in range(1, args.repeats + 1):
            for pump in args.pumps:
                result, command = one_run(args.build, keys, pump, args.streams, args.seconds)
                cpu = result["cpu"]
                gbit = result.get("gbit_s", 0)
                # CPU seconds per GB acknowledged (the load's seconds: 8 Gbit = 1 GB)
                per_gb = cpu["example"] / 100 / (gbit / 8) if gbit else float("nan")
                print(f"--pump {pump:6} run {repeat}: {gbit:6.2f} Gbit/s "
                      f"(all bytes acked: {result.get('all_bytes_acked')}), CPU example "
                      f"{cpu['example']:3.0f} % ({per_gb * 1000:4.0f} ms/GB), relay "
                      f"{cpu['relay']:3.0f} %; load: {command}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
