#!/usr/bin/env bash
# Validate every header of the conformance suite against schema/ with ajv-cli
# (JSON Schema draft 2020-12, strict mode): proves the schema works outside Python.
#
#   conformance/ajv-check.sh            # installs ajv into conformance/ajv/node_modules once
#
# Headers the reference implementation accepts must pass; headers it marks schema-invalid
# (manifest "schema_valid": false) must fail. Needs node, npm and python3.
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
for schema in "$root"/schema/mlarray-header-*.schema.json; do
  opts=(--spec=draft2020 --strict=true -c ajv-formats -s "$schema" --errors=line)
  # ajv validate exits non-zero if any file fails; ajv test --invalid exits non-zero if any passes.
  (cd "$tools" && "$ajv" validate "${opts[@]}" -d "$work/schema-valid/*.json")
  bad=("$work"/schema-invalid/*.json)
  if [ ${#bad[@]} -gt 0 ]; then
    (cd "$tools" && "$ajv" test "${opts[@]}" -d "$work/schema-invalid/*.json" --invalid)
  fi
done
echo "ajv: every header of the suite agrees with the schema"
