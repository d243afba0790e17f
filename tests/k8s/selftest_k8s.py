#!/usr/bin/env python3
"""Proves that validate_k8s.py cannot pass vacuously: copies of deploy/k8s with
one deliberate mistake each must fail, naming the file and field at fault,
while an unchanged copy passes.

    selftest_k8s.py [--dir deploy/k8s] --npm-dir DIR [--tlsrelay build/tlsrelay]
"""

import argparse
import os
import shutil
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import validate_k8s  # noqa: E402


def edit_yaml(directory, file, change):
    path = os.path.join(directory, file)
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    change(doc)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)


def edit_text(directory, file, old, new):
    path = os.path.join(directory, file)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if old not in text:
        raise AssertionError(f"self-test is stale: {old!r} is not in {file}")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new))


def pod(doc):
    return doc["spec"]["template"]["spec"]


def relay(doc):
    return pod(doc)["containers"][0]


def replace_arg(old, new):
    def change(doc):
        args = relay(doc)["args"]
        if old not in args:
            raise AssertionError(f"self-test is stale: {old!r} is not an arg of the container")
        args[args.index(old)] = new
    return change


def set_in(path, value):
    """change(doc) setting doc[path...] = value (a tuple of keys and indexes)."""
    def change(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


def delete_in(path):
    def change(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return change


STS = "statefulset.yaml"
C = ("spec", "template", "spec", "containers", 0)
PEER_2 = "tlsrelay-2.tlsrelay-peers.tlsrelay.svc.cluster.local:12300"

# (what is broken, how, a text the failure must contain: file and field)
BROKEN = [
    ("replicas is the string three",
     lambda d: edit_yaml(d, STS, set_in(("spec", "replicas"), "three")),
     "statefulset.yaml: /spec/replicas"),
    ("the container has no image",
     lambda d: edit_yaml(d, STS, delete_in(C + ("image",))),
     "statefulset.yaml: containers[tlsrelay].image"),
    ("a container port is a string",
     lambda d: edit_yaml(d, STS, set_in(C + ("ports", 0, "containerPort"), "12000")),
     "statefulset.yaml: /spec/template/spec/containers/0/ports/0/containerPort"),
    ("an unknown kind",
     lambda d: edit_text(d, "poddisruptionbudget.yaml", "kind: PodDisruptionBudget",
                         "kind: PodDisruptionBudgett"),
     "poddisruptionbudget.yaml: (kind)"),
    ("the drain outlasts the grace period",
     lambda d: edit_text(d, "tlsrelay.toml", "drain-timeout = 30", "drain-timeout = 60"),
     "statefulset.yaml: spec.template.spec.terminationGracePeriodSeconds"),
    ("no grace period: the kubelet's default 30 s is not above the 30 s drain",
     lambda d: edit_yaml(d, STS, delete_in(("spec", "template", "spec",
                                            "terminationGracePeriodSeconds"))),
     "statefulset.yaml: spec.template.spec.terminationGracePeriodSeconds"),
    ("the readiness probe asks another port",
     lambda d: edit_yaml(d, STS, set_in(C + ("readinessProbe", "httpGet", "port"), 9100)),
     "statefulset.yaml: containers[tlsrelay].readinessProbe.httpGet.port"),
    ("the admin endpoint moved, the probes did not",
     lambda d: edit_text(d, "tlsrelay.toml", 'admin = "127.0.0.1:12380"',
                         'admin = "127.0.0.1:9100"'),
     "statefulset.yaml: containers[tlsrelay].livenessProbe.httpGet.port"),
    ("the liveness probe asks /readyz",
     lambda d: edit_yaml(d, STS, set_in(C + ("livenessProbe", "httpGet", "path"), "/readyz")),
     "statefulset.yaml: containers[tlsrelay].livenessProbe.httpGet.path"),
    ("a peer beyond the replicas",
     lambda d: edit_yaml(d, STS, replace_arg(PEER_2, PEER_2.replace("tlsrelay-2", "tlsrelay-3"))),
     "statefulset.yaml: containers[tlsrelay].args --peer tlsrelay-3"),
    ("a peer through a Service that is not the StatefulSet's",
     lambda d: edit_yaml(d, STS,
                         replace_arg(PEER_2, PEER_2.replace("tlsrelay-peers", "tlsrelay"))),
     "statefulset.yaml: containers[tlsrelay].args --peer tlsrelay-2.tlsrelay.tlsrelay"),
    ("a peer at another port than the cluster port",
     lambda d: edit_yaml(d, STS, replace_arg(PEER_2, PEER_2.replace(":12300", ":12000"))),
     "statefulset.yaml: containers[tlsrelay].args --peer"),
    ("replicas raised without a peer for the new pod",
     lambda d: edit_yaml(d, STS, set_in(("spec", "replicas"), 4)),
     "statefulset.yaml: containers[tlsrelay].args --peer: peers name pods [0, 1, 2]"),
    ("the node name is not the pod's",
     lambda d: edit_yaml(d, STS, replace_arg("$(POD_NAME)", "relay")),
     "statefulset.yaml: containers[tlsrelay].args --node-name"),
    ("servers told a fixed host instead of the node's address",
     lambda d: edit_yaml(d, STS, replace_arg("$(HOST_IP)", "127.0.0.1")),
     "statefulset.yaml: containers[tlsrelay].args --myhost"),
    ("the pods off the node's network with no Service per pod",
     lambda d: edit_yaml(d, STS, set_in(("spec", "template", "spec", "hostNetwork"), False)),
     "statefulset.yaml: spec.template.spec.hostNetwork"),
    ("an args variable that is not in env",
     lambda d: edit_yaml(d, STS, replace_arg("$(HOST_IP)", "$(NODE_IP)")),
     "statefulset.yaml: containers[tlsrelay].args $(NODE_IP)"),
    ("runs as root",
     lambda d: edit_yaml(d, STS, set_in(C + ("securityContext", "runAsNonRoot"), False)),
     "statefulset.yaml: containers[tlsrelay].securityContext.runAsNonRoot"),
    ("a writable root file system",
     lambda d: edit_yaml(d, STS, set_in(C + ("securityContext", "readOnlyRootFilesystem"), False)),
     "statefulset.yaml: containers[tlsrelay].securityContext.readOnlyRootFilesystem"),
    ("capabilities kept",
     lambda d: edit_yaml(d, STS, delete_in(C + ("securityContext", "capabilities"))),
     "statefulset.yaml: containers[tlsrelay].securityContext.capabilities"),
    ("the state file on the read-only root file system",
     lambda d: edit_text(d, "tlsrelay.toml", 'state = "/var/lib/tlsrelay/reservations"',
                         'state = "/etc/tlsrelay/reservations"'),
     "statefulset.yaml: containers[tlsrelay].volumeMounts"),
    ("hostNetwork without the cluster's DNS",
     lambda d: edit_yaml(d, STS, delete_in(("spec", "template", "spec", "dnsPolicy"))),
     "statefulset.yaml: spec.template.spec.dnsPolicy"),
    ("no requests or limits",
     lambda d: edit_yaml(d, STS, delete_in(C + ("resources",))),
     "statefulset.yaml: containers[tlsrelay].resources"),
    ("the PodDisruptionBudget selects other pods",
     lambda d: edit_yaml(d, "poddisruptionbudget.yaml",
                         set_in(("spec", "selector", "matchLabels", "app.kubernetes.io/component"),
                                "web")),
     "poddisruptionbudget.yaml: spec.selector.matchLabels"),
    ("the peers Service is not headless",
     lambda d: edit_yaml(d, "service-peers.yaml", delete_in(("spec", "clusterIP"))),
     "service-peers.yaml: spec.clusterIP"),
    ("a file nobody applies",
     lambda d: shutil.copy(os.path.join(d, "namespace.yaml"), os.path.join(d, "extra.yaml")),
     "extra.yaml: (not in kustomization.yaml)"),
    ("a listed resource is missing",
     lambda d: os.remove(os.path.join(d, "service-peers.yaml")),
     "kustomization.yaml: resources: service-peers.yaml"),
    ("labels that would change the selectors",
     lambda d: edit_text(d, "kustomization.yaml", "includeSelectors: false",
                         "includeSelectors: true"),
     "kustomization.yaml: labels[].includeSelectors"),
    ("the README no longer says how to make the tokens Secret",
     lambda d: edit_text(d, "README.md", "create secret generic tlsrelay-tokens",
                         "create secret generic relay-tokens"),
     "README.md: kubectl create secret generic tlsrelay-tokens"),
    ("a node key left out of the keys Secret",
     lambda d: edit_text(d, "README.md",
                         "  --from-file=tlsrelay-1.node.key.pem="
                         "relay-keys/tlsrelay-1.node.key.pem \\\n",
                         ""),
     "README.md: kubectl create secret generic tlsrelay-keys: lacks tlsrelay-1.node.key.pem"),
    ("key material in the directory",
     lambda d: edit_text(d, "tlsrelay.toml", "port-count = 200",
                         "port-count = 200\n# -----BEGIN PRIVATE KEY-----"),
     "tlsrelay.toml: (contents)"),
]

# Only with a tlsrelay binary: its `serve --help` decides.
BROKEN_WITH_BINARY = [
    ("a config key that is no serve flag",
     lambda d: edit_text(d, "tlsrelay.toml", "drain-timeout = 30",
                         "drain-timeout = 30\ndrain-timout = 30"),
     "tlsrelay.toml: drain-timout"),
    ("a flag that serve does not have",
     lambda d: edit_yaml(d, STS, replace_arg("--myhost", "--my-host")),
     "statefulset.yaml: containers[tlsrelay].args --my-host"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="deploy/k8s")
    parser.add_argument("--npm-dir", required=True)
    parser.add_argument("--tlsrelay")
    args = parser.parse_args()
    cases = [("nothing (the unchanged copy)", lambda d: None, None)] + BROKEN
    if args.tlsrelay:
        cases += BROKEN_WITH_BINARY
    passed, failed = 0, []
    with tempfile.TemporaryDirectory(prefix="k8s-selftest-") as tmp:
        copies = []
        for i, (what, breaks, expected) in enumerate(cases):
            copy = os.path.join(tmp, str(i))
            shutil.copytree(args.dir, copy)
            breaks(copy)
            copies.append(copy)
        error = validate_k8s.prefetch_schemas(
            [obj for copy in copies for obj in validate_k8s.rendered_objects(copy)], args.npm_dir)
        if error:
            print(f"k8s self-test: the schema check did not run: {error}", file=sys.stderr)
            return 1
        for copy, (what, _breaks, expected) in zip(copies, cases):
            report = validate_k8s.validate(copy, args.npm_dir, args.tlsrelay, quiet=True)
            prefix = copy + os.sep
            failures = [f.replace(prefix, "") for f in report.failures]
            if expected is None:
                good = not failures
                said = "passes" if good else f"fails: {failures}"
            else:
                hits = [f for f in failures if expected in f]
                good = bool(hits)
                said = f"fails: {hits[0]}" if hits else (
                    f"does not fail with {expected!r}; failures: {failures or 'none'}")
            print(f"  {'ok  ' if good else 'FAIL'}  broken: {what}: {said}")
            if good:
                passed += 1
            else:
                failed.append(what)
    print(f"k8s self-test: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
