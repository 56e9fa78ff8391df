#!/usr/bin/python3
"""Validates JSON documents against the OCI image-spec JSON schemas.

usage: validate_oci_schema.py SCHEMA JSON_FILE...
  SCHEMA is a file name of the schema directory, e.g. image-manifest-schema.json.
  The schema directory is $OCI_SCHEMA_DIR, else the one Debian's
  golang-github-opencontainers-image-spec-dev installs under /usr/share/gocode.
exit status: 0 all valid, 1 some document invalid (reasons on stderr),
2 setup problem (no schema directory, unreadable file).
"""
import glob
import json
import os
import sys

import jsonschema


def schema_dir():
    env = os.environ.get("OCI_SCHEMA_DIR")
    if env:
        return env
    found = sorted(glob.glob("/usr/share/gocode/src/*/opencontainers/image-spec/schema"))
    if not found:
        print("no OCI image-spec schema directory under /usr/share/gocode "
              "(install golang-github-opencontainers-image-spec-dev)", file=sys.stderr)
        sys.exit(2)
    return found[0]


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    directory = schema_dir()
    cache = {}

    def load(name):
        if name not in cache:
            with open(os.path.join(directory, name)) as f:
                cache[name] = json.load(f)
        return cache[name]

    # The schemas refer to each other by file name ("defs.json#/..."), resolved
    # against nested draft-04 "id"s that point at opencontainers.org. Whatever
    # the base, the last path segment names the schema file.
    def by_file_name(uri):
        name = uri.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return load(name)

    schema = load(sys.argv[1])
    resolver = jsonschema.RefResolver.from_schema(
        schema, handlers={"https": by_file_name, "http": by_file_name, "file": by_file_name})
    validator = jsonschema.Draft4Validator(
        schema, resolver=resolver, format_checker=jsonschema.FormatChecker())

    status = 0
    for path in sys.argv[2:]:
        try:
            with open(path) as f:
                document = json.load(f)
        except (OSError, ValueError) as e:
            print(f"{path}: cannot read JSON: {e}", file=sys.stderr)
            return 2
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        for e in errors:
            where = "/".join(str(p) for p in e.path) or "(document)"
            print(f"{path}: {where}: {e.message}", file=sys.stderr)
        if errors:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
