#!/usr/bin/env python3
"""Reads a Prometheus text exposition file with prometheus_client's own parser
(Debian's python3-prometheus-client) and prints what it understood, one line
each, for the admin tests to compare:

    family <name> <type> <help>
    sample <name>{<label>="<value>",...} <value>     (labels sorted)

Exits 1 with the parser's error if the file does not parse.
"""
import sys

from prometheus_client.parser import text_string_to_metric_families


def main(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and others
        print(f"parse error: {e}", file=sys.stderr)
        return 1
    for family in families:
        print(f"family {family.name} {family.type} {family.documentation}")
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            print(f"sample {s.name}{{{labels}}} {float(s.value)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
