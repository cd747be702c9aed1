#!/usr/bin/env bash
# Re-resolve the lock files from pyproject.toml (run by `make lock`; see README "Dependencies").
#   requirements/runtime.txt  what the package needs to run (the Docker image, `pip install`)
#   requirements/dev.txt      that plus the dev and bench extras and requirements/build.in
#   requirements/build.txt    requirements/build.in alone (the Docker image's build stage)
# One universal resolution for Python 3.11 on every platform (linux x86_64 and aarch64 included),
# every file's sha256 listed: `pip install --require-hashes` installs the same bytes everywhere.
# Versions already in the lock are kept unless pyproject.toml needs others; to move one on, e.g.
# `bash scripts/lock.sh --upgrade-package chromadb` (or `--upgrade` for all).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
TOOL=build/lock-tool
if [[ ! -x $TOOL/bin/uv ]] || [[ $($TOOL/bin/uv --version) != "uv $UV_VERSION"* ]]; then
  python3 -m venv --clear "$TOOL"
  "$TOOL/bin/pip" install --quiet "uv==$UV_VERSION"
fi
compile=("$TOOL/bin/uv" pip compile --universal --python-version 3.11 --generate-hashes --quiet \
  --custom-compile-command "make lock" "$@")
"${compile[@]}" pyproject.toml -o requirements/runtime.txt
# The dev lock is constrained by the runtime lock: both pin a shared package to one version.
"${compile[@]}" pyproject.toml requirements/build.in --extra dev --extra bench \
  -c requirements/runtime.txt -o requirements/dev.txt
"${compile[@]}" requirements/build.in -c requirements/dev.txt -o requirements/build.txt
echo "requirements/*.txt updated; commit them with pyproject.toml"
