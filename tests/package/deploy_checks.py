#!/usr/bin/env python3
"""Checks of deploy/ that need no installed package.

  deploy_checks.py verify  UNIT BINARY
      `systemd-analyze verify` on the unit, with ExecStart pointing at BINARY
      (the build's tlsrelay; the .deb test verifies the installed unit as it
      is). Any finding fails: an error, or a warning such as an unknown key.
      A copy with a misspelt key must fail the same check, or the check
      proves nothing. TimeoutStopSec must exceed serve's --drain-timeout
      default by 10 s, where the binary has that flag.

  deploy_checks.py sandbox UNIT BINARY
      The relay, traced with strace through a relayed round trip (control
      connection, expose, a client, splice, the --state file written, SIGTERM;
      with the packaged config and the admin endpoint scraped once the build
      has serve --config and --admin),
      must stay inside what the unit's sandbox allows: every system call in its
      SystemCallFilter, every socket family in RestrictAddressFamilies, no
      writable and executable memory (MemoryDenyWriteExecute), no namespaces
      (RestrictNamespaces), no personality change (LockPersonality), writes
      only to the state file (ProtectSystem=strict + StateDirectory), nothing
      opened in /home, /root or /run/user (ProtectHome), /dev limited to the
      pseudo devices (PrivateDevices), no kernel log (ProtectKernelLogs), of
      /proc only its own entries (ProtectProc=invisible, ProcSubset=pid).

  deploy_checks.py config CONFIG BINARY
      The packaged config (deploy/deb/tlsrelay.toml) is TOML (Python's tomllib
      parser) and sets only keys that are `BINARY serve --help` flags.

Exit code 0 when every check passes, 1 with one line per finding otherwise.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relay_roundtrip  # noqa: E402

INSTALLED_BINARY = "/usr/bin/tlsrelay"


def systemd_analyze_verify(unit_path):
    """The findings of `systemd-analyze verify` (rc != 0 or any output)."""
    if not shutil.which("systemd-analyze"):
        return ["systemd-analyze is not installed (make deps installs the systemd package)"]
    env = dict(os.environ, SYSTEMD_LOG_TARGET="console", SYSTEMD_LOG_COLOR="0")
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", unit_path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            timeout=120)
    findings = [line for line in result.stdout.decode(errors="replace").splitlines()
                if line.strip()]
    if result.returncode != 0 and not findings:
        findings.append(f"systemd-analyze verify exited with {result.returncode}")
    return findings


def unit_with_binary(unit_path, binary, directory, extra_line=None):
    """A copy of the unit named tlsrelay.service in `directory`, ExecStart
    running `binary`, with `extra_line` added to [Service]."""
    with open(unit_path) as f:
        text = f.read()
    if INSTALLED_BINARY not in text:
        raise SystemExit(f"{unit_path}: no {INSTALLED_BINARY} in it")
    text = text.replace(INSTALLED_BINARY, binary)
    if extra_line:
        text = text.replace("[Service]\n", f"[Service]\n{extra_line}\n", 1)
    path = os.path.join(directory, "tlsrelay.service")
    with open(path, "w") as f:
        f.write(text)
    return path


def stop_timeout_findings(unit_path, binary):
    """TimeoutStopSec= must leave the relay its whole drain (serve
    --drain-timeout's default, where the binary has the flag) plus time to
    close: otherwise systemd kills transfers the drain was meant to finish."""
    out = subprocess.run([binary, "serve", "--help"], stdout=subprocess.PIPE, check=True,
                         timeout=60).stdout.decode()
    drain = re.search(r"--drain-timeout [A-Z]+=([0-9.]+)", out)
    if not drain:
        return []
    stop = dict(unit_settings(unit_path)).get("TimeoutStopSec")
    if stop is None or not re.fullmatch(r"[0-9]+s?", stop):
        return [f"TimeoutStopSec={stop}: not a number of seconds; the drain needs "
                f"more than {drain.group(1)} s"]
    if int(stop.rstrip("s")) < float(drain.group(1)) + 10:
        return [f"TimeoutStopSec={stop} leaves less than 10 s beyond the relay's drain "
                f"timeout of {drain.group(1)} s"]
    return []


def check_verify(unit_path, binary):
    findings = stop_timeout_findings(unit_path, binary)
    with tempfile.TemporaryDirectory(prefix="tlsrelay-unit-") as tmp:
        findings += systemd_analyze_verify(unit_with_binary(unit_path, binary, tmp))
        broken_dir = os.path.join(tmp, "broken")
        os.mkdir(broken_dir)
        broken = unit_with_binary(unit_path, binary, broken_dir, "ProtectSytem=strict")
        if not systemd_analyze_verify(broken):
            findings.append("self-check: a unit with the misspelt key ProtectSytem= passed "
                            "systemd-analyze verify, so this check cannot see errors")
    return findings


# ---- sandbox ---------------------------------------------------------------

def unit_settings(unit_path):
    """Every Key=value of the unit, in order, as (key, value) pairs."""
    settings = []
    with open(unit_path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";", "[")):
                continue
            key, _, value = line.partition("=")
            settings.append((key.strip(), value.strip()))
    return settings


_group_cache = {}


def expand_syscall_group(name):
    """The system calls of `name` (a group such as @system-service, nested
    groups expanded, or a single call), as systemd-analyze lists them."""
    if not name.startswith("@"):
        return {name}
    if name not in _group_cache:
        out = subprocess.run(["systemd-analyze", "syscall-filter", name], check=True,
                             stdout=subprocess.PIPE, timeout=60).stdout.decode()
        calls = set()
        for line in out.splitlines()[1:]:  # the first line is the group's name
            item = line.strip()
            if not item or item.startswith("#"):
                continue
            calls |= expand_syscall_group(item)
        _group_cache[name] = calls
    return _group_cache[name]


def allowed_syscalls(settings):
    """The calls SystemCallFilter= lets through when its first assignment is
    an allow-list: systemd then reads the assignments in order, an allow-list
    adding its calls to the set and a ~deny-list taking its calls out
    (seccomp_filter_set_add), so a later allow-list can bring back one call of
    a group denied before it."""
    allowed, seen_allow = set(), False
    for key, value in settings:
        if key != "SystemCallFilter":
            continue
        deny = value.startswith("~")
        names = value.lstrip("~").split()
        calls = set().union(*(expand_syscall_group(n) for n in names)) if names else set()
        if not seen_allow and deny:
            raise SystemExit("the unit's first SystemCallFilter is a deny-list; the check "
                             "reads allow-list units only")
        if deny:
            allowed -= calls
        else:
            seen_allow = True
            allowed |= calls
    if not seen_allow:
        raise SystemExit("the unit has no SystemCallFilter allow-list")
    return allowed


# strace lines: "PID name(args) = ret", "PID name(args <unfinished ...>",
# "PID <... name resumed>...) = ret".
_CALL = re.compile(r"^(\d+)\s+(?:<\.\.\. )?([a-z_0-9]+)(\(| resumed>)")
_PSEUDO_DEVICES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                   "/dev/tty", "/dev/ptmx", "/dev/stdin", "/dev/stdout", "/dev/stderr"}


def sandbox_findings(trace_text, settings, state_file):
    findings = []
    allowed = allowed_syscalls(settings)
    families = set()
    for key, value in settings:
        if key == "RestrictAddressFamilies":
            families |= set(value.split())
    pids = set()
    used = {}
    for line in trace_text.splitlines():
        m = _CALL.match(line)
        if not m:
            continue
        pids.add(m.group(1))
        used.setdefault(m.group(2), line)
    for call in sorted(set(used) - allowed):
        findings.append(f"SystemCallFilter: the relay calls {call}, which the filter refuses "
                        f"(e.g. {used[call]!r})")

    state_paths = {state_file, state_file + ".tmp"}
    for line in trace_text.splitlines():
        if not _CALL.match(line):
            continue
        for family in re.findall(r"\bsocket(?:pair)?\((AF_\w+)", line):
            if family not in families:
                findings.append(f"RestrictAddressFamilies: socket of family {family}: {line!r}")
        if re.search(r"\b(mmap|mprotect|pkey_mprotect)\(", line) and \
                "PROT_WRITE" in line and "PROT_EXEC" in line:
            findings.append(f"MemoryDenyWriteExecute: writable and executable memory: {line!r}")
        if re.search(r"\b(unshare|setns)\(", line) or \
                (re.search(r"\bclone3?\(", line) and "CLONE_NEW" in line):
            findings.append(f"RestrictNamespaces: {line!r}")
        m = re.search(r"\bpersonality\((\w+)\)", line)
        if m and m.group(1) != "0xffffffff":
            findings.append(f"LockPersonality: personality changed: {line!r}")
        m = re.search(r'\bopen(?:at2?)?\((?:AT_FDCWD|\d+), "([^"]*)", ([A-Z_|]+)', line)
        if m:
            path, flags = m.group(1), m.group(2)
            writes = any(f in flags for f in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"))
            if writes and path not in state_paths and path not in _PSEUDO_DEVICES:
                findings.append(f"ProtectSystem=strict: opened for writing outside the "
                                f"StateDirectory: {line!r}")
            if path.startswith(("/home/", "/root/", "/run/user/")) or path in ("/home", "/root"):
                findings.append(f"ProtectHome: {line!r}")
            if path.startswith("/dev/") and path not in _PSEUDO_DEVICES:
                findings.append(f"PrivateDevices: {line!r}")
            if path in ("/proc/kmsg", "/dev/kmsg"):
                findings.append(f"ProtectKernelLogs: {line!r}")
            pm = re.match(r"/proc/(\d+)/", path)
            if pm and pm.group(1) not in pids:
                findings.append(f"ProtectProc=invisible: another process's /proc entry: {line!r}")
            if path.startswith("/proc/") and not re.match(r"/proc/(self|thread-self|\d+)/", path):
                findings.append(f"ProcSubset=pid: /proc beyond the processes: {line!r}")
        m = re.search(r'\b(?:rename|renameat2?|unlink|unlinkat|mkdir|mkdirat)\(.*?"([^"]*)"', line)
        if m and m.group(1) not in state_paths:
            findings.append(f"ProtectSystem=strict: changes {m.group(1)}: {line!r}")
    if not used:
        findings.append("the trace holds no system calls: strace did not trace the relay")
    return findings


def scrape_admin(port):
    """GETs what an operator and Prometheus would from the admin endpoint."""
    for path in ("/healthz", "/readyz", "/metrics", "/status"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            if answer.status != 200:
                raise relay_roundtrip.StepFailed(f"GET {path}: HTTP {answer.status}")
            answer.read()


def check_sandbox(unit_path, binary):
    settings = unit_settings(unit_path)
    strace = shutil.which("strace")
    if not strace:
        return ["strace is not installed (make deps installs it)"]
    serve_help = subprocess.run([binary, "serve", "--help"], stdout=subprocess.PIPE, check=True,
                                timeout=60).stdout.decode()
    with tempfile.TemporaryDirectory(prefix="tlsrelay-sandbox-") as tmp:
        keys = os.path.join(tmp, "keys")
        subprocess.run([binary, "certs", "init", keys], check=True, stdout=subprocess.DEVNULL,
                       timeout=60)
        state = os.path.join(tmp, "state")
        trace = os.path.join(tmp, "trace")
        # What the unit runs: the packaged config (deploy/deb/, beside the
        # unit), and the admin endpoint scraped, where this build has them.
        with_config = "--config" in serve_help
        with_admin = "--admin" in serve_help
        config = os.path.join(os.path.dirname(os.path.abspath(unit_path)), "deb",
                              "tlsrelay.toml")

        def relay_argv(spares):
            argv = ["--keys", keys, "--state", state]
            if with_config:
                argv = ["--config", config] + argv
            if with_admin:
                argv += ["--admin", f"127.0.0.1:{spares[0]}"]
            return argv

        relay_roundtrip.round_trip(
            binary, keys, relay_argv,
            launcher=[strace, "-f", "-qq", "-e", "signal=none", "-o", trace],
            launcher_forks=True, spare_ports=1 if with_admin else 0,
            while_up=(lambda spares: scrape_admin(spares[0])) if with_admin else None)
        if not os.path.exists(state):
            return [f"the relay wrote no state file {state}: the traced run did not reach "
                    f"the StateDirectory write it is meant to check"]
        with open(trace) as f:
            return sandbox_findings(f.read(), settings, state)


# ---- packaged config -------------------------------------------------------

def check_config(config_path, binary):
    try:
        import tomllib
    except ImportError:
        return ["this Python has no tomllib (3.11 or later needed)"]
    try:
        with open(config_path, "rb") as f:
            config = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        return [f"not valid TOML: {e}"]
    out = subprocess.run([binary, "serve", "--help"], stdout=subprocess.PIPE, check=True,
                         timeout=60).stdout.decode()
    flags = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", out))
    findings = [f"key {key!r} is not a `tlsrelay serve` flag" for key in config
                if key not in flags]
    if not config:
        findings.append("sets no key at all")
    return findings


CHECKS = {"verify": check_verify, "sandbox": check_sandbox, "config": check_config}


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in CHECKS:
        print(__doc__, file=sys.stderr)
        return 2
    check, path, binary = sys.argv[1:]
    try:
        findings = CHECKS[check](path, os.path.abspath(binary))
    except relay_roundtrip.StepFailed as e:
        findings = [str(e)]
    for finding in findings:
        print(f"{path}: {finding}")
    if not findings:
        print(f"{path}: {check}: ok")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
