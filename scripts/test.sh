#!/usr/bin/env bash
# Install what is needed (first run only), then run the whole test suite. Extra arguments go to pytest.
#
# The tests run inside a private network namespace when that is allowed (root, as in CI):
# only loopback exists there, so no test can send a packet off this machine. Elsewhere
# (a laptop) they run as they are; every test binds 127.0.0.1 regardless, and the one
# that drives WebRTC from Chromium skips.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
PYTEST=(.venv/bin/python -m pytest -p no:cacheprovider "$@")

netns_setup='ip link set lo up'

if [ "${STREAM_TEST_NO_NETNS:-}" != 1 ] && unshare -n true 2>/dev/null; then
  export STREAM_TEST_NETNS=1
  exec unshare -n bash -c "$netns_setup"'
exec "$@"' bash "${PYTEST[@]}"
fi
echo "note: cannot make a private network namespace here; running the tests in the normal network" >&2
exec "${PYTEST[@]}"
