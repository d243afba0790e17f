#!/usr/bin/env python3
"""Checks the Kubernetes manifests of deploy/k8s offline (no cluster needed).

    validate_k8s.py [--dir deploy/k8s] --npm-dir DIR [--tlsrelay build/tlsrelay]

1. kustomization.yaml: every listed file exists, every file of the directory
   is listed (a manifest nobody applies is a mistake either way), and it uses
   only what this script knows how to render (namespace, labels, resources,
   configMapGenerator, images): the objects are rendered as `kubectl apply -k`
   would send them (generated names without their hash suffix). Where kubectl
   is installed, `kubectl kustomize` must render the same objects.
2. Every object against the Kubernetes OpenAPI schemas, with kubernetes-models
   (validate_schemas.js; DIR holds the node_modules of `npm ci` from this
   directory's package-lock.json). An unknown kind fails.
3. What an operator of tlsrelay relies on: the grace period outlasts the drain,
   the probes reach the admin endpoint of the config, every --peer is a pod of
   the StatefulSet behind its headless Service, each node gets its own name
   and address, non-root with a read-only root file system, writable paths on
   writable volumes, the PodDisruptionBudget selects the pods, the Secrets the
   pods read are those the README's `kubectl create secret` commands make, and
   (with --tlsrelay) every config key and flag is one `tlsrelay serve` knows.

Prints each check; exits 1 naming the file and field of every failure, 2 on
bad usage. tests/k8s/selftest_k8s.py proves that broken copies fail.
"""

import argparse
import functools
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("validate_k8s.py: PyYAML is missing: install the Debian package python3-yaml "
             "(make deps) and run this with Debian's python3")

# The files of the directory that are not Kubernetes objects.
NOT_RESOURCES = {"kustomization.yaml", "README.md"}
# What this script renders of a kustomization; anything else must be taught
# to it first, or the objects checked would not be those applied.
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "labels", "resources",
                      "configMapGenerator", "images"}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                        "StorageClass", "PriorityClass", "CustomResourceDefinition",
                        "PodSecurityPolicy", "RuntimeClass", "IngressClass"}
WORKLOAD_KINDS = {"StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job"}
# `tlsrelay serve` defaults the checks need when the config leaves them unset.
DEFAULT_DRAIN_TIMEOUT_S = 30.0
# Pod Security Standard "restricted": the volume types it allows.
RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                           "persistentVolumeClaim", "projected", "secret"}
WRITABLE_VOLUME_TYPES = {"emptyDir", "persistentVolumeClaim", "ephemeral"}
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class Rendered:
    source: str  # file name in the directory, "#N" for the N-th document
    obj: dict

    @property
    def file(self):
        return self.source.split("#")[0]

    @property
    def title(self):
        meta = self.obj.get("metadata") or {}
        return f"{self.obj.get('kind')} {meta.get('name')}"


@dataclass
class Report:
    quiet: bool = False
    passed: int = 0
    failures: list = field(default_factory=list)

    def ok(self, what):
        self.passed += 1
        if not self.quiet:
            print(f"  ok    {what}")

    def fail(self, file, where, what):
        self.failures.append(f"{file}: {where}: {what}")
        if not self.quiet:
            print(f"  FAIL  {file}: {where}: {what}")

    def check(self, condition, file, where, good, bad):
        if condition:
            self.ok(good)
        else:
            self.fail(file, where, bad)
        return condition


class Stop(Exception):
    """A failure after which the remaining checks would only repeat it."""


# -- 1. the kustomization ---------------------------------------------------------

def load_yaml_documents(path, report, file):
    try:
        with open(path, encoding="utf-8") as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        report.fail(file, "(YAML)", f"does not parse: {e}")
        raise Stop from e


def generator_files(entry):
    """configMapGenerator `files`: "path" or "key=path" -> (key, path)."""
    for item in entry.get("files") or []:
        key, _, path = item.rpartition("=")
        yield (key or os.path.basename(path)), path


def check_kustomization(directory, report):
    docs = load_yaml_documents(os.path.join(directory, "kustomization.yaml"), report,
                               "kustomization.yaml")
    if len(docs) != 1 or not isinstance(docs[0], dict):
        report.fail("kustomization.yaml", "(document)", "must be one YAML mapping")
        raise Stop
    kust = docs[0]
    unknown = sorted(set(kust) - KUSTOMIZATION_KEYS)
    report.check(not unknown, "kustomization.yaml", ", ".join(unknown),
                 "kustomization.yaml uses only what this check renders "
                 f"({', '.join(sorted(KUSTOMIZATION_KEYS & set(kust)))})",
                 "not rendered by tests/k8s/validate_k8s.py: teach it there first, or the "
                 "objects checked are not those `kubectl apply -k` sends")
    for entry in kust.get("labels") or []:
        if entry.get("includeSelectors"):
            report.fail("kustomization.yaml", "labels[].includeSelectors",
                        "true changes selectors, which a StatefulSet cannot change after it "
                        "is created; write selector labels in the manifests")
    listed = []
    for res in kust.get("resources") or []:
        where = f"resources: {res}"
        if (not isinstance(res, str) or "/" in res
                or not os.path.isfile(os.path.join(directory, res))):
            report.fail("kustomization.yaml", where, "no such file in this directory")
        else:
            listed.append(res)
    for entry in kust.get("configMapGenerator") or []:
        for _key, path in generator_files(entry):
            if "/" in path or not os.path.isfile(os.path.join(directory, path)):
                report.fail("kustomization.yaml",
                            f"configMapGenerator {entry.get('name')}: {path}",
                            "no such file in this directory")
            else:
                listed.append(path)
    if len(listed) == len(set(listed)):
        report.ok(f"kustomization.yaml: every listed file exists ({', '.join(listed)})")
    else:
        report.fail("kustomization.yaml", "resources", "a file is listed twice")
    present = sorted(os.listdir(directory))
    unlisted = [f for f in present if f not in NOT_RESOURCES and f not in listed]
    report.check(not unlisted, ", ".join(unlisted), "(not in kustomization.yaml)",
                 "every file of the directory is listed in kustomization.yaml",
                 "a file of the directory that `kubectl apply -k` would not apply: list it "
                 "or remove it")
    return kust, [r for r in kust.get("resources") or [] if r in listed]


def render(directory, kust, resources, report):
    """The objects as `kubectl apply -k` sends them, minus name hashes."""
    objects = []
    for file in resources:
        docs = load_yaml_documents(os.path.join(directory, file), report, file)
        if not docs:
            report.fail(file, "(document)", "holds no object")
        for i, doc in enumerate(docs, 1):
            source = file if len(docs) == 1 else f"{file}#{i}"
            if not isinstance(doc, dict):
                report.fail(source, "(document)", "is not a mapping")
                continue
            objects.append(Rendered(source, doc))
    for entry in kust.get("configMapGenerator") or []:
        data = {}
        for key, path in generator_files(entry):
            if os.path.isfile(os.path.join(directory, path)):
                with open(os.path.join(directory, path), encoding="utf-8") as f:
                    data[key] = f.read()
        for literal in entry.get("literals") or []:
            key, _, value = literal.partition("=")
            data[key] = value
        first = next(iter(generator_files(entry)), (None, "kustomization.yaml"))[1]
        objects.append(Rendered(first, {"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": entry.get("name")}, "data": data}))
    namespace = kust.get("namespace")
    for r in objects:
        meta = r.obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            meta = {}  # the schema check reports it
        if namespace and r.obj.get("kind") not in CLUSTER_SCOPED_KINDS:
            meta["namespace"] = namespace
        for entry in kust.get("labels") or []:
            pairs = entry.get("pairs") or {}
            meta.setdefault("labels", {}).update(pairs)
            spec = r.obj.get("spec")
            template = spec.get("template") if isinstance(spec, dict) else None
            if (entry.get("includeTemplates") and r.obj.get("kind") in WORKLOAD_KINDS
                    and isinstance(template, dict)):
                template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        for container in containers_of(r.obj):
            container["image"] = apply_images(container.get("image"), kust.get("images") or [])
    return objects


def split_image(image):
    """registry/name:tag@digest -> (name, tag, digest); a port is not a tag."""
    rest, _, digest = image.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        return rest[:colon], rest[colon + 1:], digest
    return rest, "", digest


def apply_images(image, images):
    if not isinstance(image, str):
        return image
    name, tag, digest = split_image(image)
    for entry in images:
        if entry.get("name") == name:
            name = entry.get("newName", name)
            tag = str(entry.get("newTag", tag))
            digest = entry.get("digest", digest)
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def pod_spec_of(obj):
    spec = obj.get("spec") if isinstance(obj, dict) else None
    if obj.get("kind") in WORKLOAD_KINDS and isinstance(spec, dict):
        template = spec.get("template")
        if isinstance(template, dict) and isinstance(template.get("spec"), dict):
            return template["spec"]
    if obj.get("kind") == "Pod" and isinstance(spec, dict):
        return spec
    return None


def containers_of(obj):
    pod = pod_spec_of(obj)
    if not pod:
        return []
    return [c for key in ("initContainers", "containers") for c in pod.get(key) or []
            if isinstance(c, dict)]


def check_against_kubectl(directory, objects, kust, report):
    """Where kubectl is installed (not needed otherwise): its own kustomize must
    render the directory as this script does, up to the generated names' hash
    suffix, so the checks below look at what would be applied."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        if not report.quiet:
            print("  --    kubectl is not installed: rendering not compared with "
                  "`kubectl kustomize`")
        return
    proc = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        report.fail("kustomization.yaml", "(kubectl kustomize)", proc.stderr.strip()[-1000:])
        return
    generated = {e.get("name") for e in kust.get("configMapGenerator") or []}

    def normal(obj):
        # name-<10 character hash> back to name, where kustomize wrote it.
        text = json.dumps(obj, sort_keys=True)
        for name in generated:
            text = re.sub(rf'"{re.escape(name)}-[a-z0-9]{{10}}"', f'"{name}"', text)
        return text

    theirs = sorted(normal(o) for o in yaml.safe_load_all(proc.stdout) if o)
    ours = sorted(normal(r.obj) for r in objects)
    report.check(theirs == ours, "kustomization.yaml", "(kubectl kustomize)",
                 f"`kubectl kustomize` renders the same {len(ours)} objects as this check",
                 "renders other objects than tests/k8s/validate_k8s.py does: teach the script "
                 "what kustomize does here")


# -- 2. the Kubernetes schemas ------------------------------------------------------

# Schema results by object (canonical JSON): loading the models takes Node.js
# about a second, so the self-test validates the objects of all its broken
# copies in one run (prefetch_schemas) and each copy's check only reads here.
_schema_results = {}


def _object_key(obj):
    return json.dumps(obj, sort_keys=True)


def prefetch_schemas(objects, npm_dir):
    """Validates objects not seen yet in one Node.js run; returns an error text or None."""
    todo = {}
    for obj in objects:
        todo.setdefault(_object_key(obj), obj)
    for key in list(todo):
        if key in _schema_results:
            del todo[key]
    if not todo:
        return None
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "validate_schemas.js")
    payload = json.dumps([{"source": str(i), "object": obj}
                          for i, obj in enumerate(todo.values())])
    try:
        proc = subprocess.run(["node", script, npm_dir], input=payload, capture_output=True,
                              text=True, timeout=120)
    except FileNotFoundError:
        return "Node.js is not installed (make deps)"
    if proc.returncode != 0:
        return (f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]} (did `npm ci` run in "
                f"{npm_dir}?)")
    for key, result in zip(todo, json.loads(proc.stdout)):
        _schema_results[key] = result
    return None


def check_schemas(objects, npm_dir, report):
    error = prefetch_schemas([r.obj for r in objects], npm_dir)
    if error:
        report.fail("tests/k8s/validate_schemas.js", "(run)", error)
        return
    for r in objects:
        result = _schema_results[_object_key(r.obj)]
        if result["ok"]:
            report.ok(f"{r.source}: {r.title} ({r.obj.get('apiVersion')}) matches the Kubernetes "
                      "API schema")
        for error in result["errors"]:
            report.fail(r.source, error.split(" ")[0] if error.startswith("/") else "(kind)",
                        f"{r.title}: {error}")


# -- 3. what tlsrelay needs -----------------------------------------------------------

def parse_serve_args(args):
    """`tlsrelay serve` flags of a container's command and args -> {flag: [values]}."""
    flags = {}
    i = 0
    while i < len(args):
        token = str(args[i])
        i += 1
        if not token.startswith("-"):
            flags.setdefault("(positional)", []).append(token)
            continue
        name, eq, value = token.partition("=")
        name = {"-k": "--keys"}.get(name, name)
        if not eq:
            if i < len(args) and not str(args[i]).startswith("-"):
                value = str(args[i])
                i += 1
            else:
                value = True
        flags.setdefault(name, []).append(value)
    return flags


@functools.lru_cache(maxsize=None)
def serve_flags_from_help(tlsrelay):
    proc = subprocess.run([tlsrelay, "serve", "--help"], capture_output=True, text=True,
                          timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"{tlsrelay} serve --help: exit {proc.returncode}")
    flags = set()
    for line in proc.stdout.splitlines():
        m = re.match(r"^\s+(?:-\w,)?(--[a-z][a-z0-9-]*)", line)
        if m:
            flags.add(m.group(1))
    return flags


def host_port(text):
    """"ADDR:PORT", "[v6]:PORT" or "$(VAR):PORT" -> (host, port) or None."""
    m = re.fullmatch(r"\[?([^\[\]]*?)\]?:(\d{1,5})", str(text))
    return (m.group(1), int(m.group(2))) if m else None


def shown(value):
    """A value as a failure message shows it: unset, or its Python repr."""
    return "unset" if value is None else repr(value)


def is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def quantity(text):
    """A Kubernetes quantity (500m, 2, 256Mi, 1G) as a number, or None."""
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(text))
    if not m:
        return None
    scale = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[m.group(2)]
    return float(m.group(1)) * scale


def labels_match(selector, labels):
    return bool(selector) and all((labels or {}).get(k) == v for k, v in selector.items())


def readme_secret_commands(readme_path):
    """`kubectl ... create secret generic NAME --from-file=[KEY=]PATH ...` of the
    README -> {NAME: {KEY: PATH}} (backslash-continued lines joined)."""
    secrets = {}
    if not os.path.isfile(readme_path):
        return secrets
    with open(readme_path, encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    for line in text.splitlines():
        if "create secret generic" not in line:
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        try:
            name = words[words.index("generic") + 1]
        except (ValueError, IndexError):
            continue
        files = secrets.setdefault(name, {})
        for w in words:
            if w.startswith("--from-file="):
                spec = w[len("--from-file="):]
                key, eq, path = spec.partition("=")
                if not eq:
                    key, path = os.path.basename(spec), spec
                files[key] = path
    return secrets


@dataclass
class Relay:
    """The tlsrelay StatefulSet and what its pods are given."""
    sts: Rendered
    pod: dict
    container: dict
    flags: dict          # command line flags (they win over the config file)
    toml: dict
    toml_file: str
    replicas: int
    pod_names: list
    env: dict            # name -> env entry

    def setting(self, key):
        """(value, where it is set) of a serve setting; flags win over the file."""
        values = self.flags.get(f"--{key}")
        if values:
            return values[-1], f"{self.sts.file}: args --{key}"
        if key in self.toml:
            return self.toml[key], f"{self.toml_file}: {key}"
        return None, None

    def field_ref(self, value):
        """"$(VAR)" whose VAR comes from the downward API -> its fieldPath."""
        m = re.fullmatch(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(value))
        entry = self.env.get(m.group(1)) if m else None
        return (((entry or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")


def find_relay(objects, directory, report):
    stss = [r for r in objects if r.obj.get("kind") == "StatefulSet"]
    if len(stss) != 1:
        report.fail("kustomization.yaml", "resources",
                    f"{len(stss)} StatefulSets; the relay cluster is exactly one")
        raise Stop
    sts = stss[0]
    pod = pod_spec_of(sts.obj)
    containers = [c for c in (pod or {}).get("containers") or [] if isinstance(c, dict)]
    relay = [c for c in containers if c.get("name") == "tlsrelay"] or containers[:1]
    if not relay:
        report.fail(sts.file, "spec.template.spec.containers", "no container")
        raise Stop
    container = relay[0]
    command = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    if len(command) < 2 or os.path.basename(command[0]) != "tlsrelay" or command[1] != "serve":
        report.fail(sts.file, "spec.template.spec.containers[tlsrelay].command",
                    "must run `tlsrelay serve --config FILE ...` explicitly (the checks read "
                    "its flags and config)")
        raise Stop
    flags = parse_serve_args(command[2:])
    replicas = sts.obj["spec"].get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 1:
        report.fail(sts.file, "spec.replicas", f"{shown(replicas)} is not a positive whole number")
        raise Stop
    env = {e.get("name"): e for e in container.get("env") or [] if isinstance(e, dict)}
    name = (sts.obj.get("metadata") or {}).get("name")
    return Relay(sts, pod, container, flags, {}, "", replicas,
                 [f"{name}-{i}" for i in range(replicas)], env)


def mounts_of(relay):
    """[(mountPath, readOnly, volume)] of the relay container."""
    volumes = {v.get("name"): v for v in relay.pod.get("volumes") or [] if isinstance(v, dict)}
    claims = {(c.get("metadata") or {}).get("name")
              for c in relay.sts.obj["spec"].get("volumeClaimTemplates") or []}
    result = []
    for m in relay.container.get("volumeMounts") or []:
        volume = volumes.get(m.get("name"))
        if volume is None and m.get("name") in claims:
            volume = {"name": m.get("name"), "persistentVolumeClaim": {}}
        result.append((m.get("mountPath", ""), bool(m.get("readOnly")), volume or {}))
    return result


def mount_for(relay, path):
    """The mount whose directory holds path (the longest), or None."""
    best = None
    for mount in mounts_of(relay):
        if path == mount[0] or path.startswith(mount[0].rstrip("/") + "/"):
            if best is None or len(mount[0]) > len(best[0]):
                best = mount
    return best


def check_config(relay, objects, report):
    f = relay.sts.file
    config = relay.flags.get("--config")
    if not config or not isinstance(config[-1], str):
        report.fail(f, "containers[tlsrelay].command", "no --config FILE")
        raise Stop
    path = config[-1]
    mount = mount_for(relay, path)
    cm_name = ((mount or (None, None, {}))[2].get("configMap") or {}).get("name")
    key = os.path.relpath(path, mount[0]) if mount else None
    configmaps = {(r.obj.get("metadata") or {}).get("name"): r for r in objects
                  if r.obj.get("kind") == "ConfigMap"}
    cm = configmaps.get(cm_name)
    if not cm or key not in (cm.obj.get("data") or {}):
        report.fail(f, "containers[tlsrelay].command --config",
                    f"{path} is not a file of a ConfigMap of this kustomization mounted there")
        raise Stop
    report.ok(f"--config {path} is key {key} of ConfigMap {cm_name} ({cm.file})")
    try:
        relay.toml = tomllib.loads(cm.obj["data"][key])
    except tomllib.TOMLDecodeError as e:
        report.fail(cm.file, "(TOML)", f"does not parse: {e}")
        raise Stop from e
    relay.toml_file = cm.file
    report.ok(f"{cm.file} is TOML ({len(relay.toml)} keys)")


def check_known_flags(relay, known, report):
    # A relay built without clustering knows none of these: say so once, in
    # the words an operator with an old image needs.
    if "--cluster-listen" not in known:
        report.fail(relay.sts.file, "containers[tlsrelay].command",
                    "this tlsrelay's `serve --help` has no --cluster-listen: these manifests need "
                    "a relay with clustering (--cluster-listen, --peer, --node-name)")
    unknown_keys = sorted(k for k in relay.toml if f"--{k}" not in known)
    for key in unknown_keys:
        report.fail(relay.toml_file, key, "not a `tlsrelay serve` flag (the relay would refuse "
                    "to start)")
    if not unknown_keys:
        report.ok(f"every key of {relay.toml_file} is a `tlsrelay serve` flag")
    unknown_flags = sorted(k for k in relay.flags if k not in known)
    for flag in unknown_flags:
        report.fail(relay.sts.file, f"containers[tlsrelay].args {flag}",
                    "not a `tlsrelay serve` flag (the relay would refuse to start)")
    if not unknown_flags:
        report.ok("every flag in the container's command is a `tlsrelay serve` flag")


def check_variables(relay, report):
    f = relay.sts.file
    command = (relay.container.get("command") or []) + (relay.container.get("args") or [])
    used = sorted({v for arg in command for v in VAR_REF.findall(str(arg))})
    undefined = [v for v in used if v not in relay.env]
    report.check(not undefined, f, "containers[tlsrelay].args $(" + ", ".join(undefined) + ")",
                 f"every $(VAR) in the command is an env var of the container ({', '.join(used)})",
                 "not in env: Kubernetes would pass it on literally")
    name, where = relay.setting("node-name")
    report.check(relay.field_ref(name) == "metadata.name", f,
                 "containers[tlsrelay].args --node-name",
                 f"--node-name {name} is the pod's name (downward API metadata.name)",
                 f"{shown(name)}: each node must be named after its pod ($(VAR) from "
                 "metadata.name)")


def check_grace(relay, report):
    drain, where = relay.setting("drain-timeout")
    if drain is None:
        drain, where = DEFAULT_DRAIN_TIMEOUT_S, "the default of --drain-timeout"
    try:
        drain = float(drain)
    except ValueError:
        report.fail(*where.split(": ", 1), f"{shown(drain)} is not a number")
        return
    grace = relay.pod.get("terminationGracePeriodSeconds", 30)
    report.check(isinstance(grace, int) and grace > drain, relay.sts.file,
                 "spec.template.spec.terminationGracePeriodSeconds",
                 f"terminationGracePeriodSeconds {grace} > drain-timeout {drain:g} ({where})",
                 f"{grace} is not above drain-timeout {drain:g} ({where}): the kubelet would "
                 "kill relayed pairs that are still draining")


def container_port(relay, port):
    """A probe's or Service's port (number or name) as a number of the container."""
    if isinstance(port, int):
        return port
    for p in relay.container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def check_probes(relay, report):
    f = relay.sts.file
    admin, where = relay.setting("admin")
    admin_hp = host_port(admin) if admin else None
    if not admin_hp:
        report.fail(relay.toml_file, "admin",
                    f"{shown(admin)}: the probes need the admin endpoint (ADDRESS:PORT)")
        return
    host, port = admin_hp
    host_network = bool(relay.pod.get("hostNetwork"))
    for probe_name, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        field_name = f"containers[tlsrelay].{probe_name}"
        get = (relay.container.get(probe_name) or {}).get("httpGet")
        if not get:
            report.fail(f, field_name, f"missing (an httpGet of {path} on the admin endpoint)")
            continue
        report.check(get.get("path") == path, f, f"{field_name}.httpGet.path",
                     f"{probe_name} asks {path}", f"{shown(get.get('path'))}, not {path}")
        probe_port = container_port(relay, get.get("port"))
        report.check(probe_port == port, f, f"{field_name}.httpGet.port",
                     f"{probe_name} port {probe_port} is the admin port ({where}: {admin})",
                     f"{shown(get.get('port'))} is not the admin port {port} ({where}: {admin})")
        probe_host = get.get("host")
        if is_loopback(host):
            # The kubelet reaches a pod's loopback only when the pod shares its network.
            report.check(host_network and probe_host == host, f, f"{field_name}.httpGet.host",
                         f"{probe_name} goes to {host} on the node, where the admin endpoint "
                         "listens (hostNetwork)",
                         f"{shown(probe_host)}: the admin endpoint listens on {host} only, "
                         f"which the kubelet reaches with hostNetwork and httpGet.host {host}")
        else:
            report.check(probe_host in (None, host), f, f"{field_name}.httpGet.host",
                         f"{probe_name} goes to the pod's address",
                         f"{shown(probe_host)} is not where the admin endpoint listens ({host})")


def check_peers(relay, objects, report):
    f = relay.sts.file
    namespace = (relay.sts.obj.get("metadata") or {}).get("namespace")
    service_name = relay.sts.obj["spec"].get("serviceName")
    listen, listen_where = relay.setting("cluster-listen")
    listen_hp = host_port(listen) if listen else None
    if not listen_hp:
        report.fail(f, "containers[tlsrelay].args --cluster-listen",
                    f"{shown(listen)}: a cluster needs --cluster-listen ADDR:PORT")
        return
    cluster_port = listen_hp[1]
    from_file = relay.toml.get("peer", [])
    if not isinstance(from_file, list):
        from_file = [from_file]
    peers = relay.flags.get("--peer", []) + from_file
    stem = (relay.sts.obj.get("metadata") or {}).get("name")
    seen = []
    for peer in peers:
        hp = host_port(peer)
        # POD.SERVICE[.NAMESPACE[.svc[.CLUSTER-DOMAIN]]]
        m = re.fullmatch(rf"{re.escape(stem)}-(\d+)\.([a-z0-9-]+)"
                         r"(?:\.([a-z0-9-]+)(?:\.svc(?:\.(.+))?)?)?", hp[0] if hp else "")
        good = bool(m and hp) and m.group(2) == service_name and m.group(3) in (None, namespace) \
            and int(m.group(1)) < relay.replicas and hp[1] == cluster_port
        report.check(good, f, f"containers[tlsrelay].args --peer {peer}",
                     f"--peer {peer} is pod {stem}-{m.group(1) if m else '?'} via the headless "
                     f"Service {service_name} at the cluster port",
                     f"not a pod {stem}-N (N < {relay.replicas}) of this StatefulSet by "
                     f"N.{service_name}.{namespace}.svc.<cluster domain> at the cluster port "
                     f"{cluster_port} ({listen_where})")
        if m:
            seen.append(int(m.group(1)))
    report.check(sorted(seen) == list(range(relay.replicas)), f,
                 "containers[tlsrelay].args --peer",
                 f"one --peer for each of the {relay.replicas} replicas",
                 f"peers name pods {sorted(seen)}, replicas are 0..{relay.replicas - 1}")
    services = [r for r in objects if r.obj.get("kind") == "Service"
                and (r.obj.get("metadata") or {}).get("name") == service_name]
    if not services:
        report.fail(f, "spec.serviceName", f"no Service {service_name} in this kustomization")
        return
    svc = services[0]
    spec = svc.obj.get("spec") or {}
    pod_labels = (relay.sts.obj["spec"].get("template") or {}).get("metadata", {}).get("labels")
    report.check(spec.get("clusterIP") == "None", svc.file, "spec.clusterIP",
                 f"Service {service_name} is headless (stable per-pod DNS names)",
                 f"{shown(spec.get('clusterIP'))}: the StatefulSet's Service must be headless "
                 "(None)")
    report.check(labels_match(spec.get("selector"), pod_labels), svc.file, "spec.selector",
                 f"Service {service_name} selects the StatefulSet's pods",
                 f"{spec.get('selector')} does not select the pod labels {pod_labels}")
    report.check(spec.get("publishNotReadyAddresses") is True, svc.file,
                 "spec.publishNotReadyAddresses",
                 f"Service {service_name} names starting and draining nodes too",
                 "must be true: a peer must resolve a node before it is ready and while it drains")
    ports = [p for p in spec.get("ports") or [] if p.get("port") == cluster_port]
    target = container_port(relay, ports[0].get("targetPort", cluster_port)) if ports else None
    report.check(target == cluster_port, svc.file, "spec.ports",
                 f"Service {service_name} carries the cluster port {cluster_port}",
                 f"no port {cluster_port} leading to the container's cluster port "
                 f"({listen_where})")


def check_reachability(relay, objects, report):
    """Clients must reach each pod's own control port and pool: the node's network
    (one pod per node) or one Service per pod."""
    f = relay.sts.file
    myhost, where = relay.setting("myhost")
    pod_labels = (relay.sts.obj["spec"].get("template") or {}).get("metadata", {}).get("labels")
    if relay.pod.get("hostNetwork"):
        report.check(relay.field_ref(myhost) == "status.hostIP", f,
                     "containers[tlsrelay].args --myhost",
                     f"--myhost {myhost} is the node's address (downward API status.hostIP)",
                     f"{shown(myhost)} ({where}): with hostNetwork, listener lines must name "
                     "the node ($(VAR) from status.hostIP)")
        report.check(relay.pod.get("dnsPolicy") == "ClusterFirstWithHostNet", f,
                     "spec.template.spec.dnsPolicy",
                     "dnsPolicy ClusterFirstWithHostNet: the pods resolve their peers' names",
                     f"{shown(relay.pod.get('dnsPolicy'))}: with hostNetwork only "
                     "ClusterFirstWithHostNet gives the pod the cluster's DNS (the peers' names)")
        terms = (((relay.pod.get("affinity") or {}).get("podAntiAffinity") or {})
                 .get("requiredDuringSchedulingIgnoredDuringExecution") or [])
        one_per_node = any(
            t.get("topologyKey") == "kubernetes.io/hostname"
            and labels_match((t.get("labelSelector") or {}).get("matchLabels"), pod_labels)
            for t in terms)
        report.check(one_per_node, f, "spec.template.spec.affinity.podAntiAffinity",
                     "one pod per node (required podAntiAffinity on kubernetes.io/hostname)",
                     "two pods on one node would want the same ports: require podAntiAffinity on "
                     "kubernetes.io/hostname selecting the pod labels")
    else:
        for name in relay.pod_names:
            per_pod = [r for r in objects if r.obj.get("kind") == "Service" and
                       ((r.obj.get("spec") or {}).get("selector") or {})
                       .get("statefulset.kubernetes.io/pod-name") == name]
            report.check(bool(per_pod), f, "spec.template.spec.hostNetwork",
                         f"pod {name} has a Service of its own",
                         f"off, and pod {name} has no Service of its own (selector "
                         "statefulset.kubernetes.io/pod-name): clients could not reach its "
                         "port pool")


def check_security(relay, report):
    f = relay.sts.file
    pod_sc = relay.pod.get("securityContext") or {}
    sc = relay.container.get("securityContext") or {}
    where = "containers[tlsrelay].securityContext"

    def effective(key):
        return sc.get(key, pod_sc.get(key))

    report.check(effective("runAsNonRoot") is True, f, f"{where}.runAsNonRoot",
                 "runAsNonRoot", f"{shown(effective('runAsNonRoot'))}: must be true")
    uid = effective("runAsUser")
    report.check(isinstance(uid, int) and uid > 0, f, f"{where}.runAsUser",
                 f"runAsUser {uid} (not root)",
                 f"{shown(uid)}: a non-zero uid (the image's is 10001)")
    report.check(sc.get("readOnlyRootFilesystem") is True, f, f"{where}.readOnlyRootFilesystem",
                 "readOnlyRootFilesystem",
                 f"{shown(sc.get('readOnlyRootFilesystem'))}: must be true")
    report.check(sc.get("allowPrivilegeEscalation") is False, f,
                 f"{where}.allowPrivilegeEscalation",
                 "allowPrivilegeEscalation false",
                 f"{shown(sc.get('allowPrivilegeEscalation'))}: must be false")
    caps = sc.get("capabilities") or {}
    dropped_all = "ALL" in (caps.get("drop") or [])
    report.check(dropped_all and set(caps.get("add") or []) <= {"NET_BIND_SERVICE"},
                 f, f"{where}.capabilities", "capabilities: drop ALL, add none",
                 f"{caps}: drop ALL, add nothing but NET_BIND_SERVICE")
    report.check(not sc.get("privileged"), f, f"{where}.privileged", "not privileged",
                 "must not be true")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    report.check(seccomp in ("RuntimeDefault", "Localhost"), f,
                 "spec.template.spec.securityContext.seccompProfile",
                 f"seccompProfile {seccomp}", f"{shown(seccomp)}: RuntimeDefault (or Localhost)")
    shared = [k for k in ("hostPID", "hostIPC") if relay.pod.get(k)]
    report.check(not shared, f, "spec.template.spec." + ", ".join(shared),
                 "no hostPID, no hostIPC", "must not be set")
    volume_types = {k for v in relay.pod.get("volumes") or [] for k in v if k != "name"}
    report.check(volume_types <= RESTRICTED_VOLUME_TYPES, f, "spec.template.spec.volumes",
                 f"volumes of allowed types only ({', '.join(sorted(volume_types))})",
                 f"{sorted(volume_types - RESTRICTED_VOLUME_TYPES)} not allowed (restricted Pod "
                 "Security Standard)")


def check_files(relay, directory, report):
    """Paths the relay reads are mounted; the one it writes is writable."""
    f = relay.sts.file
    state, state_where = relay.setting("state")
    if state:
        mount = mount_for(relay, str(state))
        kinds = sorted(WRITABLE_VOLUME_TYPES & set(mount[2])) if mount else []
        writable = bool(mount) and not mount[1] and bool(kinds)
        report.check(writable, f, "containers[tlsrelay].volumeMounts",
                     f"state file {state} is on a writable volume "
                     f"({mount[0] if mount else '-'}, {'/'.join(kinds)})",
                     f"{state} ({state_where}) is on no writable volume: the root file system is "
                     "read-only (emptyDir or a volumeClaimTemplate)")
    keys, keys_where = relay.setting("keys")
    reads = []  # (path with $(POD_NAME), what)
    if keys:
        reads += [(f"{keys}/{n}", f"keys ({keys_where})")
                  for n in ("ca.crt.pem", "server.crt.pem", "server.key.pem")]
    for flag, default in (("node-cert", "node.crt.pem"), ("node-key", "node.key.pem"),
                          ("cluster-ca", "cluster-ca.crt.pem")):
        value, where = relay.setting(flag)
        if value is None and keys:
            value, where = f"{keys}/{default}", f"the default of --{flag}"
        if value:
            reads.append((str(value), where))
    tokens, tokens_where = relay.setting("tokens")
    if tokens:
        reads.append((str(tokens), tokens_where))
    documented = readme_secret_commands(os.path.join(directory, "README.md"))
    needed = {}  # secret -> keys the pods read
    for path_template, where in reads:
        for pod_name in relay.pod_names:
            path = path_template
            for var, entry in relay.env.items():
                ref = ((entry.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
                if ref == "metadata.name":
                    path = path.replace(f"$({var})", pod_name)
            mount = mount_for(relay, path)
            secret = ((mount or (None, None, {}))[2].get("secret") or {}).get("secretName")
            if not secret:
                report.fail(f, "containers[tlsrelay].volumeMounts",
                            f"{path} ({where}) is in no mounted Secret")
                break
            needed.setdefault(secret, set()).add(os.path.relpath(path, mount[0]))
    for secret, keys_needed in sorted(needed.items()):
        have = documented.get(secret)
        if have is None:
            report.fail("README.md", f"kubectl create secret generic {secret}",
                        f"the pods mount Secret {secret}; the README must say how to create it")
            continue
        missing = sorted(keys_needed - set(have))
        report.check(not missing, "README.md", f"kubectl create secret generic {secret}",
                     f"README's `kubectl create secret generic {secret}` gives every file the "
                     f"pods read ({len(keys_needed)})",
                     f"lacks {', '.join(missing)}, which the pods read from it")
        for signing_key in ("ca.key.pem", "cluster-ca.key.pem"):
            report.check(signing_key not in have, "README.md",
                         f"kubectl create secret generic {secret}",
                         f"Secret {secret} leaves the signing key {signing_key} out",
                         f"puts {signing_key} into the cluster: whoever reads it can mint "
                         "certificates")
    pem = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as file:
                if "-----BEGIN" in file.read():
                    pem.append(name)
    report.check(not pem, ", ".join(pem), "(contents)", "no key material in the directory",
                 "holds PEM data: keys and certificates belong in Secrets the operator creates")


def check_resources_and_image(relay, report):
    f = relay.sts.file
    res = relay.container.get("resources") or {}
    for kind in ("cpu", "memory"):
        req = quantity((res.get("requests") or {}).get(kind))
        lim = quantity((res.get("limits") or {}).get(kind))
        report.check(req is not None and lim is not None and req <= lim, f,
                     f"containers[tlsrelay].resources.{{requests,limits}}.{kind}",
                     f"{kind} requested {res['requests'][kind]} within limit {res['limits'][kind]}"
                     if req is not None and lim is not None else "",
                     f"requests {shown((res.get('requests') or {}).get(kind))} and limits "
                     f"{shown((res.get('limits') or {}).get(kind))}: both needed, "
                     "request ≤ limit")
    image = relay.container.get("image")
    _name, tag, digest = split_image(image) if isinstance(image, str) else ("", "", "")
    report.check(bool(image) and (digest or (tag and tag != "latest")), f,
                 "containers[tlsrelay].image",
                 f"image {image} (tag from kustomization.yaml images)",
                 f"{shown(image)}: the container needs an image with a version tag or digest "
                 "(kustomization.yaml images)")


def check_statefulset_and_pdb(relay, objects, report):
    f = relay.sts.file
    spec = relay.sts.obj["spec"]
    pod_labels = (spec.get("template") or {}).get("metadata", {}).get("labels")
    selector = (spec.get("selector") or {}).get("matchLabels")
    report.check(labels_match(selector, pod_labels), f, "spec.selector.matchLabels",
                 f"StatefulSet selector {selector} matches its pod labels",
                 f"{selector} does not match the pod labels {pod_labels}")
    pdbs = [r for r in objects if r.obj.get("kind") == "PodDisruptionBudget"]
    if not pdbs:
        report.fail("kustomization.yaml", "resources", "no PodDisruptionBudget for the relay pods")
        return
    for pdb in pdbs:
        pspec = pdb.obj.get("spec") or {}
        sel = pspec.get("selector") or {}
        selects = labels_match(sel.get("matchLabels"), pod_labels)
        report.check(selects and not sel.get("matchExpressions"),
                     pdb.file, "spec.selector.matchLabels",
                     f"PodDisruptionBudget selector {sel.get('matchLabels')} matches the relay "
                     "pods",
                     f"{sel} does not select the pod labels {pod_labels}")
        unavailable = pspec.get("maxUnavailable")
        report.check(isinstance(unavailable, int) and 1 <= unavailable < relay.replicas
                     and "minAvailable" not in pspec, pdb.file, "spec.maxUnavailable",
                     f"PodDisruptionBudget lets {unavailable} of {relay.replicas} nodes go at "
                     "once",
                     f"{shown(unavailable)}: a whole number from 1 to replicas-1 "
                     f"({relay.replicas - 1}), and no minAvailable")


def check_namespace(objects, kust, report):
    namespace = kust.get("namespace")
    names = [(r.obj.get("metadata") or {}).get("name") for r in objects
             if r.obj.get("kind") == "Namespace"]
    report.check(bool(namespace) and names == [namespace], "kustomization.yaml", "namespace",
                 f"namespace {namespace}, created by namespace.yaml",
                 f"{shown(namespace)} with Namespace objects {names}: set it and create "
                 "exactly it")


def rendered_objects(directory):
    """The rendered objects of a directory, quietly (for prefetch_schemas)."""
    report = Report(quiet=True)
    try:
        kust, resources = check_kustomization(directory, report)
        return [r.obj for r in render(directory, kust, resources, report)]
    except Stop:
        return []


def validate(directory, npm_dir, tlsrelay=None, quiet=False):
    report = Report(quiet=quiet)
    say = (lambda *_: None) if quiet else print
    try:
        say(f"{directory}: kustomization")
        kust, resources = check_kustomization(directory, report)
        objects = render(directory, kust, resources, report)
        check_against_kubectl(directory, objects, kust, report)
        say(f"{directory}: {len(objects)} objects against the Kubernetes API schemas")
        check_schemas(objects, npm_dir, report)
        say(f"{directory}: what tlsrelay needs")
        check_namespace(objects, kust, report)
        relay = find_relay(objects, directory, report)
        check_config(relay, objects, report)
        if tlsrelay:
            check_known_flags(relay, serve_flags_from_help(tlsrelay), report)
        check_variables(relay, report)
        check_grace(relay, report)
        check_probes(relay, report)
        check_peers(relay, objects, report)
        check_reachability(relay, objects, report)
        check_security(relay, report)
        check_files(relay, directory, report)
        check_resources_and_image(relay, report)
        check_statefulset_and_pdb(relay, objects, report)
    except Stop:
        pass
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        # A manifest of a shape no check expected: still a failure, never a pass.
        report.fail(directory, "(structure)", f"unexpected shape: {type(e).__name__}: {e}")
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="deploy/k8s", help="the kustomization directory")
    parser.add_argument("--npm-dir", required=True,
                        help="where `npm ci` installed tests/k8s/package-lock.json")
    parser.add_argument("--tlsrelay", help="a tlsrelay binary: check config keys and flags "
                        "against its `serve --help`")
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.dir, "kustomization.yaml")):
        parser.error(f"--dir {args.dir}: no kustomization.yaml there")
    if args.tlsrelay and not os.access(args.tlsrelay, os.X_OK):
        parser.error(f"--tlsrelay {args.tlsrelay}: not an executable")
    report = validate(args.dir, args.npm_dir, args.tlsrelay)
    print(f"k8s manifests: {report.passed} passed, {len(report.failures)} failed")
    if report.failures:
        print("\n".join(f"FAIL {f}" for f in report.failures), file=sys.stderr)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
