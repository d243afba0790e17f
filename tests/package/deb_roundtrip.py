#!/usr/bin/env python3
"""The .deb on this machine, as an operator would use it (`make test-package`,
as root; it installs the package and removes it again).

  1. the .deb: fields (Depends from dpkg-shlibdeps), files, conffiles, a man
     page naming every `serve` flag, the LICENSE as copyright;
  2. dpkg -i: files in place, the group tlsrelay-keys made, the postinst's
     note about missing keys; `tlsrelay --version`;
  3. systemd-analyze verify on the installed unit;
  4. the installed binary started with the installed config and a key
     directory made by `tlsrelay certs init`, readable as README.Debian says
     (root:tlsrelay-keys, key 0640), as an unprivileged user in that group
     with no capabilities (what the unit's DynamicUser gets); a relayed
     round trip through `tlsrelay expose`; SIGTERM, exit code 0;
  5. dpkg -i again over an edited conffile: the edit survives;
  6. dpkg -r (conffile kept), dpkg --purge: the machine as it was before.

A package left installed by an earlier, interrupted run is purged first. Every
command has a timeout; a failure prints the step and what went wrong and
exits 1.
"""

import argparse
import glob
import grp
import gzip
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relay_roundtrip  # noqa: E402
import deploy_checks  # noqa: E402
from relay_roundtrip import StepFailed  # noqa: E402

PACKAGE = "tlsrelay"
BINARY = "/usr/bin/tlsrelay"
UNIT = "/lib/systemd/system/tlsrelay.service"
CONFFILE = "/etc/tlsrelay/tlsrelay.toml"
KEYS_GROUP = "tlsrelay-keys"
# What the package puts on the machine; each must be gone after the purge
# unless it was there before.
FOOTPRINT = [BINARY, UNIT, "/etc/tlsrelay", "/usr/share/doc/tlsrelay",
             "/usr/share/man/man1/tlsrelay.1.gz"]
REQUIRED_FILES = ["./usr/bin/tlsrelay", "./lib/systemd/system/tlsrelay.service",
                  "./etc/tlsrelay/tlsrelay.toml", "./usr/share/man/man1/tlsrelay.1.gz",
                  "./usr/share/doc/tlsrelay/copyright"]

_started = time.monotonic()


def log(message):
    print(f"[package test {time.monotonic() - _started:6.1f} s] {message}", flush=True)


DPKG_LOCK_WAIT = 300  # seconds another dpkg or apt may hold the lock


def run(argv, timeout=120, check=True):
    """Runs argv; returns (exit code, stdout+stderr as text). No stdin: a
    dpkg question (say, about a conffile) fails the step instead of waiting.
    While another dpkg or apt holds dpkg's lock, dpkg is tried again (every
    2 s, for at most DPKG_LOCK_WAIT s)."""
    lock_deadline = time.monotonic() + DPKG_LOCK_WAIT
    while True:
        try:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"`{' '.join(argv)}` did not finish within {timeout} s")
        output = result.stdout.decode(errors="replace")
        locked = argv[0] == "dpkg" and result.returncode != 0 and \
            re.search(r"(locked|held) by another process", output)
        if not locked or time.monotonic() > lock_deadline:
            break
        log("dpkg is locked by another process: trying again in 2 s")
        time.sleep(2)
    if check and result.returncode != 0:
        raise StepFailed(f"`{' '.join(argv)}` exited with {result.returncode}:\n{output}")
    return result.returncode, output


def package_status():
    """dpkg's status of the package: 'install ok installed', 'deinstall ok
    config-files', ... or '' when dpkg does not know it."""
    code, out = run(["dpkg-query", "-W", "-f=${Status}", PACKAGE], check=False)
    return out.strip() if code == 0 else ""


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def project_version(build_dir):
    with open(os.path.join(build_dir, "CPackConfig.cmake")) as f:
        text = f.read()
    version = re.search(r'set\(CPACK_PACKAGE_VERSION "([^"]+)"\)', text)
    release = re.search(r'set\(CPACK_DEBIAN_PACKAGE_RELEASE "([^"]+)"\)', text)
    if not version:
        raise StepFailed(f"{build_dir}/CPackConfig.cmake names no CPACK_PACKAGE_VERSION")
    return version.group(1), (f"{version.group(1)}-{release.group(1)}" if release
                              else version.group(1))


def find_deb(build_dir, deb_version):
    arch = run(["dpkg", "--print-architecture"])[1].strip()
    path = os.path.join(build_dir, f"{PACKAGE}_{deb_version}_{arch}.deb")
    if not os.path.exists(path):
        found = sorted(glob.glob(os.path.join(build_dir, "*.deb")))
        raise StepFailed(f"no {path} (make package builds it); found: {found or 'none'}")
    return path


def serve_flags(build_dir):
    """Every long flag `tlsrelay serve --help` lists."""
    out = run([os.path.join(build_dir, "tlsrelay"), "serve", "--help"])[1]
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", out))
    if "--port" not in flags:
        raise StepFailed(f"`tlsrelay serve --help` lists no --port:\n{out}")
    return flags


def roff_text(roff):
    """The words of a man page's roff source, font changes and escapes removed."""
    text = re.sub(r"\\f[BIRP]|\\f\(..|\\[,/&]", "", roff)
    return text.replace("\\-", "-").replace("\\(co", "(c)")


def check_deb(deb, deb_version, build_dir, source_dir):
    fields = {}
    for name in ("Package", "Version", "Depends", "Maintainer", "Section", "Description"):
        fields[name] = run(["dpkg-deb", "-f", deb, name])[1].strip()
    if fields["Package"] != PACKAGE or fields["Version"] != deb_version:
        raise StepFailed(f"{deb}: Package {fields['Package']!r} Version {fields['Version']!r}, "
                         f"expected {PACKAGE!r} {deb_version!r} (from CMake's project())")
    for library in ("libc6", "libssl3", "libstdc++6"):
        if not re.search(rf"(^|, ){re.escape(library)}( |,|$)", fields["Depends"]):
            raise StepFailed(f"{deb}: Depends lacks {library} (dpkg-shlibdeps did not run?): "
                             f"{fields['Depends']!r}")
    for name in ("Maintainer", "Section", "Description"):
        if not fields[name]:
            raise StepFailed(f"{deb}: no {name} field")

    listing = run(["dpkg-deb", "-c", deb])[1]
    members = {line.split()[-1] for line in listing.splitlines() if line.strip()}
    missing = [f for f in REQUIRED_FILES if f not in members]
    if missing:
        raise StepFailed(f"{deb}: lacks {missing}; it holds:\n{listing}")
    conffiles = run(["dpkg-deb", "-I", deb, "conffiles"])[1].split()
    if CONFFILE not in conffiles:
        raise StepFailed(f"{deb}: {CONFFILE} is not a conffile (conffiles: {conffiles})")

    fsys = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE,
                          check=True, timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(fsys)) as tar:
        man = gzip.decompress(tar.extractfile("./usr/share/man/man1/tlsrelay.1.gz").read())
        copyright_text = tar.extractfile("./usr/share/doc/tlsrelay/copyright").read()
        unit_mode = tar.getmember("./lib/systemd/system/tlsrelay.service").mode
    words = roff_text(man.decode(errors="replace"))
    absent = sorted(f for f in serve_flags(build_dir)
                    if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", words))
    if absent:
        raise StepFailed(f"the man page does not mention these serve flags: {absent}")
    if "TLSRELAY SERVE" not in words:
        raise StepFailed("the man page has no section TLSRELAY SERVE")
    with open(os.path.join(source_dir, "LICENSE"), "rb") as f:
        if copyright_text != f.read():
            raise StepFailed("/usr/share/doc/tlsrelay/copyright is not the LICENSE")
    if unit_mode != 0o644:
        raise StepFailed(f"the unit has mode {unit_mode:o} in the package, not 644")


def purge_leftover():
    status = package_status()
    if status and "not-installed" not in status:
        log(f"an earlier run left {PACKAGE} on this machine ({status}): purging it first")
        run(["dpkg", "--purge", PACKAGE], timeout=300)


def install(deb):
    out = run(["dpkg", "-i", deb], timeout=300)[1]
    status = package_status()
    if status != "install ok installed":
        raise StepFailed(f"after dpkg -i the status is {status!r}:\n{out}")
    for path in (BINARY, UNIT, CONFFILE):
        if not os.path.exists(path):
            raise StepFailed(f"after dpkg -i there is no {path}")
    if not group_exists(KEYS_GROUP):
        raise StepFailed(f"the postinst made no group {KEYS_GROUP}")
    return out


def check_version(version):
    out = run([BINARY, "--version"])[1].strip()
    if not out.startswith(f"tlsrelay {version}"):
        raise StepFailed(f"`{BINARY} --version` says {out!r}, expected 'tlsrelay {version} ...'")
    log(f"{BINARY} --version: {out}")


def relay_as_the_unit_would(tmp):
    """Keys made by the installed `certs init` with README.Debian's modes, and
    the launcher that runs the relay as the unit's dynamic user would be:
    no uid of its own to speak of, group tlsrelay-keys, no capabilities."""
    os.chmod(tmp, 0o755)
    keys = os.path.join(tmp, "keys")
    run([BINARY, "certs", "init", keys], timeout=60)
    shutil.chown(keys, group=KEYS_GROUP)
    os.chmod(keys, 0o750)
    for name in ("ca.crt.pem", "server.crt.pem", "server.key.pem"):
        shutil.chown(os.path.join(keys, name), group=KEYS_GROUP)
    os.chmod(os.path.join(keys, "server.key.pem"), 0o640)
    state_dir = os.path.join(tmp, "state-dir")
    os.mkdir(state_dir, 0o700)
    shutil.chown(state_dir, user="nobody")
    launcher = ["setpriv", "--reuid=nobody", "--regid=nogroup", f"--groups={KEYS_GROUP}",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    return keys, os.path.join(state_dir, "state"), launcher


def check_round_trip(tmp):
    keys, state, launcher = relay_as_the_unit_would(tmp)
    relay_argv = ["--config", CONFFILE, "--keys", keys, "--state", state]
    log(f"starting {BINARY} serve --config {CONFFILE} (keys, state, ports overridden)")
    relay_roundtrip.round_trip(BINARY, keys, relay_argv, launcher=launcher)
    if not os.path.exists(state):
        raise StepFailed(f"the relay, running as nobody, wrote no state file {state}")


def check_conffile_kept(deb):
    marker = "# edited by the package test\n"
    with open(CONFFILE, "a") as f:
        f.write(marker)
    run(["dpkg", "-i", deb], timeout=300)
    with open(CONFFILE) as f:
        if marker not in f.read():
            raise StepFailed(f"dpkg -i over the installed package replaced the edited {CONFFILE}")


def remove_and_purge(before):
    run(["dpkg", "-r", PACKAGE], timeout=300)
    if os.path.exists(BINARY) and not before[BINARY]:
        raise StepFailed(f"after dpkg -r, {BINARY} is still there")
    if not os.path.exists(CONFFILE):
        raise StepFailed(f"dpkg -r removed the conffile {CONFFILE} (only a purge should)")
    run(["dpkg", "--purge", PACKAGE], timeout=300)
    status = package_status()
    if status and "not-installed" not in status:
        raise StepFailed(f"after dpkg --purge the status is {status!r}")
    left = [p for p in FOOTPRINT if os.path.exists(p) and not before[p]]
    if group_exists(KEYS_GROUP) and not before[KEYS_GROUP]:
        left.append(f"group {KEYS_GROUP}")
    if left:
        raise StepFailed(f"after dpkg --purge these are still there: {left}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build", help="the build directory with the .deb")
    args = parser.parse_args()
    build_dir = os.path.abspath(args.build)
    source_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.geteuid() != 0:
        print("deb_roundtrip.py: must run as root: it installs the package with dpkg -i",
              file=sys.stderr)
        return 1

    step = "find the .deb"
    installed = False
    try:
        version, deb_version = project_version(build_dir)
        deb = find_deb(build_dir, deb_version)
        step = f"inspect {os.path.basename(deb)}"
        log(step)
        check_deb(deb, deb_version, build_dir, source_dir)

        step = "clear a package left by an earlier run"
        purge_leftover()
        before = {p: os.path.exists(p) for p in FOOTPRINT}
        before[KEYS_GROUP] = group_exists(KEYS_GROUP)
        if before[BINARY]:
            raise StepFailed(f"{BINARY} exists and belongs to no package: dpkg -i would "
                             f"overwrite it and dpkg --purge delete it; move it away first")

        step = "dpkg -i"
        log(f"{step} {deb}")
        installed = True
        out = install(deb)
        if not os.path.exists("/etc/tlsrelay/keys/server.key.pem") and \
                "tlsrelay certs init /etc/tlsrelay/keys" not in out:
            raise StepFailed(f"the postinst did not say how to make the missing keys:\n{out}")

        step = "tlsrelay --version"
        check_version(version)

        step = f"systemd-analyze verify {UNIT}"
        log(step)
        findings = deploy_checks.systemd_analyze_verify(UNIT)
        if findings:
            raise StepFailed("\n".join(findings))

        step = "relayed round trip through the installed relay"
        log(step)
        with tempfile.TemporaryDirectory(prefix="tlsrelay-deb-") as tmp:
            check_round_trip(tmp)

        step = "dpkg -i over an edited conffile"
        log(step)
        check_conffile_kept(deb)

        step = "dpkg -r, dpkg --purge"
        log(step)
        remove_and_purge(before)
        installed = False
    except StepFailed as e:
        print(f"package test FAILED at step '{step}':\n{e}", file=sys.stderr, flush=True)
        return 1
    finally:
        # Whatever stopped the test (a failed step, an exception, a closed
        # stdout), the machine gets the package off again.
        if installed:
            subprocess.run(["dpkg", "--purge", PACKAGE], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
            log(f"purged {PACKAGE} after the failure")
    log("ok: built, installed, verified, relayed, removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
