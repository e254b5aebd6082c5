#!/usr/bin/env bash
# Run edgekit's device side on emulated Raspberry Pi OS userlands (Debian 12 and 13 arm64,
# Bookworm and Trixie) and compare it with this host: see scripts/pi_emulated_check.py.
#
#   scripts/pi_emulated_check.sh [--userland bookworm|trixie] [--json report.json] [--cache-dir DIR] [--bundle DIR ...]
#
# Needs the host venv (.venv, with edgekit-sb3[host]) and, the first time, root for
# debootstrap (--install-tools apt-gets debootstrap and shellcheck, and unpacks trixie's
# qemu-user 10 into the cache).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${EDGEKIT_HOST_PYTHON:-$repo/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
    python="$(command -v python3)" || { echo "error: no $repo/.venv and no python3" >&2; exit 2; }
fi
exec "$python" "$repo/scripts/pi_emulated_check.py" "$@"
