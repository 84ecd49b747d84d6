#!/usr/bin/env bash
# One-time setup from the repo's own files: Debian packages (redis-server, prometheus,
# chromium) when missing, then a Python venv with the package and its test extras, then
# the hot modules compiled (scripts/build_compiled.py).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,compile]'
# the per-event modules as C extensions (Cython + the C compiler): a tenth more events/s;
# without them everything runs from source, and the tests say so
.venv/bin/python scripts/build_compiled.py || echo "WARNING: compiling the hot modules failed; they run from source" >&2
touch .venv/.installed
