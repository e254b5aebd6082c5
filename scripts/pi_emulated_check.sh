#!/usr/bin/env bash
# Run edgekit's device side on an emulated Raspberry Pi OS (Debian 12 arm64) userland
# and compare it with this host: see scripts/pi_emulated_check.py for what it does.
#
#   scripts/pi_emulated_check.sh [--json report.json] [--cache-dir DIR] [--bundle DIR ...]
#
# Needs the host venv (.venv, with edgekit-sb3[host]) and, the first time, root for
# debootstrap (--install-tools apt-gets debootstrap and qemu-user-static).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${EDGEKIT_HOST_PYTHON:-$repo/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
    python="$(command -v python3)" || { echo "error: no $repo/.venv and no python3" >&2; exit 2; }
fi
exec "$python" "$repo/scripts/pi_emulated_check.py" "$@"
