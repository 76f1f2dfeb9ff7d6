#!/usr/bin/env bash
# Installs what the project needs into ./.venv (and, for tests, Debian packages when run as root).
# Usage: scripts/setup.sh server|test      Idempotent: a second run with nothing changed is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-server}"
PY="${PYTHON:-python3}"

if ! command -v "$PY" >/dev/null 2>&1; then
  echo "error: $PY not found; install Python 3.11 or newer (or set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: Python 3.11 or newer is needed, $PY is $("$PY" -V 2>&1); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

# System packages the tests use: Chromium for the browser tests, GStreamer's RTSP server
# for the RTSP tests, iproute2 for the private test network. The server itself needs none
# (PyAV and OpenCV wheels carry FFmpeg).
TEST_DEBS=(chromium python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
           gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad iproute2)
if [ "$mode" = test ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for deb in "${TEST_DEBS[@]}"; do
    dpkg -s "$deb" >/dev/null 2>&1 || missing+=("$deb")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "installing Debian packages: ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "note: not root, so not installing ${missing[*]}; the tests that need them will be skipped" >&2
    fi
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extras=""
[ "$mode" = test ] && extras="[test]"
stamp=".venv/.installed-$mode-$(cat pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "installing Python packages into .venv (first run: a few minutes)..."
  # pip's output is kept in a log and shown only if the install fails.
  if ! .venv/bin/python -m pip install --disable-pip-version-check -e ".$extras" > .venv/pip-install.log 2>&1; then
    tail -n 40 .venv/pip-install.log >&2
    echo "error: installing the Python packages failed; the full log is .venv/pip-install.log" >&2
    exit 1
  fi
  touch "$stamp"
fi
