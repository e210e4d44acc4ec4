#!/usr/bin/env bash
# mypy on the whole `neurflow` package as it is imported. The package maps three folders
# (neurflow_core/ -> neurflow, ingest/ -> neurflow.ingest, queries/ -> neurflow.queries) and
# mypy cannot follow setuptools' editable-install finder, so this links them into one tree
# in a temporary folder, checks it, and prints the findings with the repository's paths.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mypy="${MYPY:-$root/.venv/bin/mypy}"
case "$mypy" in /*) ;; */*) mypy="$PWD/$mypy" ;; esac  # a relative path, before the cd below
farm="$(mktemp -d)"
trap 'rm -rf "$farm"' EXIT
mkdir "$farm/neurflow"
for f in "$root"/neurflow_core/*; do ln -s "$f" "$farm/neurflow/"; done
ln -s "$root/ingest" "$farm/neurflow/ingest"
ln -s "$root/queries" "$farm/neurflow/queries"
cd "$farm"
status=0
"$mypy" --config-file "$root/pyproject.toml" --cache-dir "$root/.mypy_cache" -p neurflow > "$farm/out.txt" 2>&1 || status=$?
sed -e 's#^neurflow/ingest/#ingest/#' -e 's#^neurflow/queries/#queries/#' -e 's#^neurflow/#neurflow_core/#' "$farm/out.txt"
exit $status
