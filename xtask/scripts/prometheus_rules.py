"""Writes the Prometheus rule file inside a PrometheusRule, for promtool.

promtool checks and tests plain rule files (`groups:` at the top); the
PrometheusRule object that deploy/monitoring installs holds the same groups
under `spec`. This extracts them, so the file promtool tests is the one the
cluster gets, not a copy that could drift.

usage: python3 prometheus_rules.py PROMETHEUS_RULE.yaml OUT.rules.yaml
"""

import sys

import yaml


def main() -> int:
    source, out = sys.argv[1], sys.argv[2]
    with open(source) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    rules = [d for d in documents if d.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        print(f"{source}: expected one PrometheusRule, found {len(rules)}", file=sys.stderr)
        return 1
    groups = rules[0].get("spec", {}).get("groups")
    if not groups:
        print(f"{source}: the PrometheusRule has no spec.groups", file=sys.stderr)
        return 1
    with open(out, "w") as f:
        yaml.safe_dump({"groups": groups}, f, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
