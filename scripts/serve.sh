#!/usr/bin/env bash
# Install what is needed (first run only), then start the server. Extra arguments go to server.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh server
exec .venv/bin/python server.py "$@"
