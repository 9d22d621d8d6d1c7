#!/usr/bin/env bash
# Validate every header of the conformance suite against schema/ with ajv-cli
# (JSON Schema draft 2020-12, strict mode): proves the schema works outside Python.
#
#   conformance/ajv-check.sh            # installs ajv into conformance/ajv/node_modules once
#
# Against the newest schema (the version the reference implementation writes): the header
# of every valid case, and every header the reference implementation accepts, must pass;
# headers it marks schema-invalid (manifest "schema_valid": false) must fail. Released
# older schemas are never edited: ajv must still compile them in strict mode, and they
# must accept the valid headers written with exactly their version.
# Needs node, npm and python3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
tools="$here/ajv"
ajv="$tools/node_modules/.bin/ajv"
if [ ! -x "$ajv" ]; then
  (cd "$tools" && npm ci --no-audit --no-fund --silent)
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 "$here/extract_headers.py" "$work"
shopt -s nullglob
newest="$(ls "$root"/schema/mlarray-header-*.schema.json | sort -V | tail -n 1)"
for schema in "$root"/schema/mlarray-header-*.schema.json; do
  opts=(--spec=draft2020 --strict=true -c ajv-formats -s "$schema" --errors=line)
  if [ "$schema" != "$newest" ]; then
    version="$(basename "$schema" .schema.json)"
    version="${version#mlarray-header-}"
    (cd "$tools" && "$ajv" compile --spec=draft2020 --strict=true -c ajv-formats -s "$schema")
    same=("$work"/by-version/"$version"/*.json)
    if [ ${#same[@]} -gt 0 ]; then
      (cd "$tools" && "$ajv" validate "${opts[@]}" -d "$work/by-version/$version/*.json")
    fi
    continue
  fi
  # ajv validate exits non-zero if any file fails; ajv test --invalid exits non-zero if any passes.
  (cd "$tools" && "$ajv" validate "${opts[@]}" -d "$work/schema-valid/*.json")
  bad=("$work"/schema-invalid/*.json)
  if [ ${#bad[@]} -gt 0 ]; then
    (cd "$tools" && "$ajv" test "${opts[@]}" -d "$work/schema-invalid/*.json" --invalid)
  fi
done
echo "ajv: every header of the suite agrees with the schema"
