"""Validates Keeper custom resources (deploy/samples) against the committed CRDs.

kubernetes-validate knows the built-in kinds only; this checks our own kinds
against the openAPIV3Schema the API server would use, offline. CEL rules are
exercised by the crds crate's tests, not here.

usage: python3 validate_custom_resources.py CRDS.yaml RESOURCES.yaml
"""

import sys

import jsonschema
import yaml


def main() -> int:
    crd_path, resources_path = sys.argv[1], sys.argv[2]
    schemas = {}
    with open(crd_path) as f:
        for crd in yaml.safe_load_all(f):
            if not crd:
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                api_version = f"{group}/{version['name']}"
                schemas[(api_version, kind)] = version["schema"]["openAPIV3Schema"]
    failures = 0
    checked = 0
    with open(resources_path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            name = doc.get("metadata", {}).get("name", "?")
            schema = schemas.get(key)
            if schema is None:
                print(f"FAIL {key[1]}/{name}: no CRD for {key[0]} {key[1]}")
                failures += 1
                continue
            errors = sorted(
                jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path)
            )
            for error in errors:
                path = ".".join(str(p) for p in error.path) or "(root)"
                print(f"FAIL {key[1]}/{name}: {path}: {error.message}")
            failures += len(errors)
            checked += 1
            if not errors:
                print(f"ok   {key[1]}/{name}")
    print(f"{checked} custom resources checked, {failures} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
