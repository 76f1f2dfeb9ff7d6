#!/usr/bin/env bash
# Install what is needed (first run only), then run the whole test suite. Extra arguments go to pytest.
#
# The tests run inside a private network namespace when that is allowed (root, as in CI):
# only loopback and a veth pair with documentation addresses exist there, so no test can
# send a packet off this machine. Elsewhere (a laptop) they run as they are; every test
# binds 127.0.0.1 regardless.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
PYTEST=(.venv/bin/python -m pytest -p no:cacheprovider "$@")

netns_setup='ip link set lo up
if ip link add v0 type veth peer name v1 2>/dev/null; then
  ip addr add 192.0.2.1/24 dev v0 && ip link set v0 up && ip link set v1 up
fi'

if [ "${STREAM_TEST_NO_NETNS:-}" != 1 ] && unshare -n true 2>/dev/null; then
  export STREAM_TEST_NETNS=1
  exec unshare -n bash -c "$netns_setup"'
exec "$@"' bash "${PYTEST[@]}"
fi
echo "note: cannot make a private network namespace here; running the tests in the normal network" >&2
exec "${PYTEST[@]}"
