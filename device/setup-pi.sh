#!/usr/bin/env bash
# Prepare a Raspberry Pi (or any Debian-based ARM Linux) to run edgekit bundles
# on a Google Coral USB Accelerator.
#
# Safe to run again: every step checks what is already in place. Run it as your
# normal user (it calls sudo where it needs root) or as root.
# See device/README.md for the whole deployment.

set -euo pipefail

# Coral's documented apt repository and signing key.
CORAL_REPO_URL="https://packages.cloud.google.com/apt"
CORAL_REPO_SUITE="coral-edgetpu-stable"
CORAL_KEY_URL="https://packages.cloud.google.com/apt/doc/apt-key.gpg"
CORAL_KEYRING="/usr/share/keyrings/coral-edgetpu-archive-keyring.gpg"
CORAL_SOURCES="/etc/apt/sources.list.d/coral-edgetpu.list"
EDGETPU_LIBRARY="libedgetpu.so.1"

VENV_DIR="/opt/edgekit/venv"
LIBEDGETPU="libedgetpu1-std"
WHEEL=""
SOURCE=""
DRY_RUN=0
PYTHON_ARG=""
EMULATOR=()

usage() {
    cat <<'EOF'
Usage: setup-pi.sh [--max] [--venv DIR] [--wheel PATH | --source DIR]
                   [--dry-run [--python PATH] [--emulator CMD]]

Install the Coral Edge TPU runtime and edgekit's device side on this machine:
  1. add Coral's apt repository (key under /usr/share/keyrings, signed-by)
  2. apt-get install libedgetpu1-std (or -max), python3-venv
  3. create a virtual environment and pip install 'edgekit[device]'
  4. add the invoking user to the plugdev group (USB access to the accelerator)
  5. check that libedgetpu.so.1 loads and that `edgekit --version` runs

Options:
  --max          install libedgetpu1-max (full clock: faster, runs hotter)
                 instead of libedgetpu1-std; the two packages replace each other
  --venv DIR     virtual environment to create or update (default: /opt/edgekit/venv)
  --wheel PATH   install edgekit from this wheel file instead of PyPI
  --source DIR   install edgekit from this source checkout instead of PyPI
                 (built into a wheel first, as the checkout's owner)
  --dry-run      print each step; run only the Python and pip steps (venv,
                 pip install, checks) and print the others (apt, Coral's
                 repository, udev, groups) without running them; needs no root
  --python PATH  with --dry-run: the Python to make the venv with
                 (default: /usr/bin/python3)
  --emulator CMD with --dry-run: run every Python command through CMD, e.g.
                 'qemu-aarch64-static -L ROOT' with --python ROOT/usr/bin/python3
                 for an emulated Raspberry Pi OS root (scripts/pi_emulated_check.py)
  -h, --help     show this help and exit

Run it again at any time: steps already done are skipped or refreshed.
EOF
}

say()  { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

STEP=0
STEPS=7
step() {
    STEP=$((STEP + 1))
    printf '\n==> [%d/%d] %s\n' "$STEP" "$STEPS" "$*"
}

# --dry-run: print a command that changes the system instead of running it.
skipped() {
    local quoted
    printf -v quoted ' %q' "$@"
    printf '    [dry-run] skipped:%s\n' "$quoted"
}

# --- arguments ---------------------------------------------------------------

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --max) LIBEDGETPU="libedgetpu1-max"; shift ;;
        --venv)
            [[ $# -ge 2 && -n "$2" ]] || die "--venv needs a directory"
            VENV_DIR="$2"; shift 2 ;;
        --venv=*) VENV_DIR="${1#*=}"; [[ -n "$VENV_DIR" ]] || die "--venv needs a directory"; shift ;;
        --wheel)
            [[ $# -ge 2 && -n "$2" ]] || die "--wheel needs a path to a .whl file"
            WHEEL="$2"; shift 2 ;;
        --wheel=*) WHEEL="${1#*=}"; shift ;;
        --source)
            [[ $# -ge 2 && -n "$2" ]] || die "--source needs a directory"
            SOURCE="$2"; shift 2 ;;
        --source=*) SOURCE="${1#*=}"; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        --python)
            [[ $# -ge 2 && -n "$2" ]] || die "--python needs a path to a Python executable"
            PYTHON_ARG="$2"; shift 2 ;;
        --python=*) PYTHON_ARG="${1#*=}"; [[ -n "$PYTHON_ARG" ]] || die "--python needs a path"; shift ;;
        --emulator)
            [[ $# -ge 2 && -n "$2" ]] || die "--emulator needs a command, e.g. 'qemu-aarch64-static -L ROOT'"
            read -r -a EMULATOR <<<"$2"; shift 2 ;;
        --emulator=*) read -r -a EMULATOR <<<"${1#*=}"; shift ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

if [[ -n "$WHEEL" && -n "$SOURCE" ]]; then
    die "--wheel and --source are exclusive: give one of them"
fi
if [[ $DRY_RUN -eq 0 && ( -n "$PYTHON_ARG" || ${#EMULATOR[@]} -gt 0 ) ]]; then
    die "--python and --emulator are for --dry-run only"
fi
if [[ ${#EMULATOR[@]} -gt 0 && -n "$SOURCE" ]]; then
    # Building a wheel runs the interpreter in subprocesses, which the emulator cannot follow.
    die "--emulator needs --wheel (build the wheel on the host)"
fi
if [[ -n "$PYTHON_ARG" && ! -x "$PYTHON_ARG" ]]; then
    die "--python: not an executable: $PYTHON_ARG"
fi
if [[ -n "$WHEEL" ]]; then
    [[ -f "$WHEEL" ]] || die "no such wheel file: $WHEEL"
    [[ "$WHEEL" == *.whl ]] || die "not a wheel (.whl) file: $WHEEL"
    WHEEL="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
fi
if [[ -n "$SOURCE" ]]; then
    [[ -d "$SOURCE" ]] || die "no such directory: $SOURCE"
    SOURCE="$(cd "$SOURCE" && pwd)"
    [[ -f "$SOURCE/pyproject.toml" ]] || die "$SOURCE has no pyproject.toml: is it an edgekit checkout?"
fi
case "$VENV_DIR" in
    /*) ;;
    *) VENV_DIR="$PWD/$VENV_DIR" ;;
esac
VENV_DIR="${VENV_DIR%/}"

# Everything this script creates must be readable by the service user.
umask 022

# --- privileges --------------------------------------------------------------

if [[ $DRY_RUN -eq 1 ]]; then
    say "dry run: only the Python and pip steps run${EMULATOR[0]:+ (through ${EMULATOR[*]})}"
elif [[ $EUID -ne 0 ]] && ! command -v sudo >/dev/null 2>&1; then
    die "not running as root and sudo is not installed: run this script as root"
fi

# Run a command as root: directly when we are root, through sudo otherwise.
# A dry run prints it instead.
as_root() {
    if [[ $DRY_RUN -eq 1 ]]; then
        skipped "$@"
    elif [[ $EUID -eq 0 ]]; then
        "$@"
    else
        sudo "$@"
    fi
}

apt_get() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get "$@"
}

# The user who should get USB access: the one who called sudo, or ourselves.
TARGET_USER="${SUDO_USER:-$(id -un)}"

# The venv needs root only when its nearest existing parent is not writable by us.
venv_needs_root() {
    local dir="$VENV_DIR"
    while [[ ! -e "$dir" ]]; do
        dir="$(dirname "$dir")"
    done
    [[ ! -w "$dir" ]]
}

as_venv_owner() {
    if [[ $DRY_RUN -eq 1 ]]; then
        ! venv_needs_root || die "--dry-run needs a --venv you can write to: $VENV_DIR"
        py "$@"
    elif venv_needs_root; then
        as_root "$@"
    else
        "$@"
    fi
}

# Run a Python command (the system's or the venv's Python). A dry run prints it
# first and, emulated, runs it through the emulator.
py() {
    if [[ $DRY_RUN -eq 1 ]]; then
        local quoted
        printf -v quoted ' %q' "${EMULATOR[@]}" "$@"
        printf '    $%s\n' "$quoted" >&2
    fi
    "${EMULATOR[@]}" "$@"
}

# --- 1. platform -------------------------------------------------------------

step "check the platform"
KERNEL="$(uname -s)"
MACHINE="$(uname -m)"
DPKG_ARCH=""
if [[ ${#EMULATOR[@]} -gt 0 ]]; then
    # The emulated machine, not the host's.
    MACHINE="$(py "${PYTHON_ARG:-/usr/bin/python3}" -c 'import platform; print(platform.machine())')"
elif command -v dpkg >/dev/null 2>&1; then
    DPKG_ARCH="$(dpkg --print-architecture)"
fi
info "kernel $KERNEL, machine $MACHINE${DPKG_ARCH:+, Debian architecture $DPKG_ARCH}"
if [[ "$KERNEL" != "Linux" ]]; then
    die "this script is for Linux (Raspberry Pi OS, Debian, Ubuntu); found $KERNEL"
fi
case "$MACHINE" in
    aarch64|armv7l) ;;
    *) warn "expected a Raspberry Pi (aarch64 or armv7l), found $MACHINE: going on, but this is not the tested target" ;;
esac
if [[ "$DPKG_ARCH" == "armhf" || "$MACHINE" == "armv7l" ]]; then
    warn "32-bit userland: edgekit[device] targets 64-bit Raspberry Pi OS; the TFLite interpreter"
    warn "wheels it selects may not exist for armv7l. Prefer the 64-bit OS (Bookworm, arm64)."
fi
[[ $DRY_RUN -eq 1 ]] || command -v apt-get >/dev/null 2>&1 \
    || die "apt-get not found: this script needs a Debian-based system"

# --- 2. Coral's apt repository -----------------------------------------------

step "add Coral's apt repository ($CORAL_REPO_SUITE)"
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v gpg >/dev/null 2>&1 || missing+=(gnupg)
[[ -d /etc/ssl/certs && -n "$(ls -A /etc/ssl/certs 2>/dev/null)" ]] || missing+=(ca-certificates)
if [[ ${#missing[@]} -gt 0 ]]; then
    info "installing ${missing[*]} (needed to fetch the key)"
    apt_get update
    apt_get install -y "${missing[@]}"
fi

tmpdir="$(mktemp -d)"
trap 'rm -rf "$tmpdir"' EXIT
if [[ $DRY_RUN -eq 1 ]]; then
    skipped curl -fsSL --retry 3 -o "$tmpdir/key.download" "$CORAL_KEY_URL"
    skipped install -m 0644 "$tmpdir/key.gpg" "$CORAL_KEYRING"
    skipped install -m 0644 "$tmpdir/coral.list" "$CORAL_SOURCES"
    info "$CORAL_SOURCES would hold: deb [signed-by=$CORAL_KEYRING] $CORAL_REPO_URL $CORAL_REPO_SUITE main"
else
# Fetch the key every time: Coral has rotated it before, and a stale key makes
# `apt-get update` fail with NO_PUBKEY / EXPKEYSIG.
curl -fsSL --retry 3 -o "$tmpdir/key.download" "$CORAL_KEY_URL" \
    || die "cannot download Coral's signing key from $CORAL_KEY_URL (network? proxy?)"
if head -c 64 "$tmpdir/key.download" | grep -q -- '-----BEGIN PGP'; then
    gpg --batch --yes --dearmor -o "$tmpdir/key.gpg" "$tmpdir/key.download"
else
    cp "$tmpdir/key.download" "$tmpdir/key.gpg"
fi
if [[ -f "$CORAL_KEYRING" ]] && cmp -s "$tmpdir/key.gpg" "$CORAL_KEYRING"; then
    info "key already in $CORAL_KEYRING"
else
    as_root install -m 0644 "$tmpdir/key.gpg" "$CORAL_KEYRING"
    info "key written to $CORAL_KEYRING"
fi

repo_line="deb [signed-by=$CORAL_KEYRING] $CORAL_REPO_URL $CORAL_REPO_SUITE main"
if [[ -f "$CORAL_SOURCES" ]] && [[ "$(cat "$CORAL_SOURCES")" == "$repo_line" ]]; then
    info "repository already listed in $CORAL_SOURCES"
else
    printf '%s\n' "$repo_line" > "$tmpdir/coral.list"
    as_root install -m 0644 "$tmpdir/coral.list" "$CORAL_SOURCES"
    info "wrote $CORAL_SOURCES"
fi
# Another entry for the same repository (an older guide's apt-key setup) would
# conflict with ours ("Conflicting values set for option Signed-By").
for other in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$other" && "$other" != "$CORAL_SOURCES" ]] || continue
    if grep -qs "^[^#]*$CORAL_REPO_SUITE" "$other"; then
        warn "$other also lists $CORAL_REPO_SUITE: remove that entry if apt-get update complains"
    fi
done
fi  # not a dry run

# --- 3. system packages ------------------------------------------------------

step "install $LIBEDGETPU and python3-venv"
apt_get update
if [[ "$LIBEDGETPU" == "libedgetpu1-max" ]]; then
    # The max package asks for confirmation (it runs the TPU at full clock, hotter);
    # --max is that confirmation.
    as_root debconf-set-selections <<'EOF'
libedgetpu1-max libedgetpu/accepted-eula boolean true
libedgetpu1-max libedgetpu/install-confirm-max boolean true
EOF
    info "libedgetpu1-max replaces libedgetpu1-std if that is installed"
else
    info "libedgetpu1-std replaces libedgetpu1-max if that is installed"
fi
apt_get install -y "$LIBEDGETPU" python3-venv usbutils
if [[ $DRY_RUN -eq 1 ]]; then
    :  # nothing was installed: the packaged udev rule cannot be there
elif ! grep -rqsi '1a6e' /etc/udev/rules.d /lib/udev/rules.d /usr/lib/udev/rules.d; then
    warn "no udev rule for the accelerator (1a6e/18d1) found: see device/99-edgetpu-accelerator.rules"
fi
if command -v udevadm >/dev/null 2>&1; then
    as_root udevadm control --reload-rules || true
fi

# --- 4. Python environment ---------------------------------------------------

step "create the virtual environment $VENV_DIR"
# Debian's own Python: python3-venv is for it, and the service user can run it
# (a pyenv or conda python under a home directory would not be reachable).
if [[ -n "$PYTHON_ARG" ]]; then
    PYTHON="$PYTHON_ARG"
elif [[ -x /usr/bin/python3 ]]; then
    PYTHON="/usr/bin/python3"
else
    PYTHON="$(command -v python3 || true)"
    [[ -n "$PYTHON" ]] || die "python3 not found"
fi
py_version="$(py "$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
py_minor="${py_version#3.}"
info "system Python $py_version ($PYTHON)"
if [[ "${py_version%%.*}" != "3" || "$py_minor" -lt 9 ]]; then
    die "edgekit needs Python >= 3.9; found $py_version"
fi
if [[ "$MACHINE" == "aarch64" ]]; then
    if [[ "$py_minor" -le 11 ]]; then
        info "edgekit[device] will install tflite-runtime 2.14 with numpy<2"
    else
        warn "Python $py_version on aarch64: edgekit[device] installs ai-edge-litert, whose aarch64 wheel"
        warn "crashed under emulation in edgekit's tests; if it segfaults, use Python 3.11 (Bookworm)"
    fi
fi

if [[ -x "$VENV_DIR/bin/python" ]]; then
    venv_version="$(py "$VENV_DIR/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [[ "$venv_version" != "$py_version" ]]; then
        die "$VENV_DIR uses Python $venv_version, the system has $py_version: remove $VENV_DIR and run again"
    fi
    info "already exists (Python $venv_version)"
else
    if venv_needs_root; then
        as_root mkdir -p "$VENV_DIR"
    else
        mkdir -p "$VENV_DIR"
    fi
    if [[ ${#EMULATOR[@]} -gt 0 ]]; then
        # venv's ensurepip re-executes the interpreter, which user-mode emulation
        # without binfmt_misc cannot do: make the venv without pip and install pip
        # into it with the system's own pip (python3-pip).
        as_venv_owner "$PYTHON" -m venv --without-pip "$VENV_DIR"
        system_pip="$(py "$PYTHON" -c 'import os, pip; print(os.path.dirname(os.path.dirname(pip.__file__)))')" \
            || die "the system Python has no pip: install python3-pip"
        PYTHONPATH="$system_pip" py "$VENV_DIR/bin/python" -m pip install --quiet --ignore-installed pip
    else
        as_venv_owner "$PYTHON" -m venv "$VENV_DIR"
    fi
    info "created"
fi
as_venv_owner "$VENV_DIR/bin/python" -m pip install --quiet --upgrade pip

# --- 5. edgekit --------------------------------------------------------------

if [[ -n "$SOURCE" ]]; then
    step "install edgekit[device] from the source checkout $SOURCE"
    # Build the wheel as the checkout's owner, so that no root-owned build files
    # land in the checkout, then install it like --wheel.
    owner="$(stat -c %U "$SOURCE")"
    mkdir -p "$tmpdir/wheel"
    build=("$VENV_DIR/bin/python" -m pip wheel --quiet --no-deps --no-cache-dir -w "$tmpdir/wheel" "$SOURCE")
    if [[ $EUID -eq 0 && "$owner" != "root" ]]; then
        chown "$owner" "$tmpdir" "$tmpdir/wheel"
        build=(runuser -u "$owner" -- "${build[@]}")
    fi
    if ! "${build[@]}" >"$tmpdir/build.log" 2>&1; then
        cat "$tmpdir/build.log" >&2
        die "building a wheel from $SOURCE failed (output above)"
    fi
    WHEEL="$(find "$tmpdir/wheel" -maxdepth 1 -name 'edgekit-*.whl' | head -n 1)"
    [[ -n "$WHEEL" ]] || die "building a wheel from $SOURCE produced no edgekit-*.whl"
    info "built $(basename "$WHEEL")"
elif [[ -n "$WHEEL" ]]; then
    step "install edgekit[device] from the wheel $WHEEL"
else
    step "install edgekit[device] from PyPI"
fi

if [[ -n "$WHEEL" ]]; then
    as_venv_owner "$VENV_DIR/bin/python" -m pip install "${WHEEL}[device]"
    # pip keeps an installed edgekit of the same version: force the given one in.
    as_venv_owner "$VENV_DIR/bin/python" -m pip install --no-deps --force-reinstall "$WHEEL"
else
    as_venv_owner "$VENV_DIR/bin/python" -m pip install --upgrade "edgekit[device]"
fi

# --- 6. USB access -----------------------------------------------------------

step "give $TARGET_USER access to the USB accelerator (group plugdev)"
if [[ $DRY_RUN -eq 1 ]]; then
    skipped groupadd --system plugdev
    skipped usermod -aG plugdev "$TARGET_USER"
elif ! getent group plugdev >/dev/null; then
    as_root groupadd --system plugdev
    info "created group plugdev"
fi
if [[ $DRY_RUN -eq 1 ]]; then
    :  # printed above
elif [[ "$TARGET_USER" == "root" ]]; then
    info "running as root without sudo: no user to add (root needs no group)"
elif id -nG "$TARGET_USER" | tr ' ' '\n' | grep -qx plugdev; then
    info "$TARGET_USER is already in plugdev"
else
    as_root usermod -aG plugdev "$TARGET_USER"
    info "added $TARGET_USER to plugdev: log out and in again (or reboot) for it to apply"
fi

# --- 7. checks ---------------------------------------------------------------

step "check the installation"
if [[ $DRY_RUN -eq 1 ]]; then
    if py "$VENV_DIR/bin/python" -c "import ctypes; ctypes.CDLL('$EDGETPU_LIBRARY')" 2>/dev/null; then
        info "$EDGETPU_LIBRARY loads"
    else
        info "$EDGETPU_LIBRARY does not load (expected in a dry run: $LIBEDGETPU was not installed)"
    fi
elif "$VENV_DIR/bin/python" -c "import ctypes; ctypes.CDLL('$EDGETPU_LIBRARY')"; then
    info "$EDGETPU_LIBRARY loads"
else
    die "$EDGETPU_LIBRARY does not load: is $LIBEDGETPU installed? (dpkg -L $LIBEDGETPU)"
fi
if [[ ${#EMULATOR[@]} -gt 0 ]]; then
    # The console script's #! line names the emulated python: run it with that python.
    py "$VENV_DIR/bin/python" "$VENV_DIR/bin/edgekit" --version || die "$VENV_DIR/bin/edgekit --version failed"
else
    "$VENV_DIR/bin/edgekit" --version || die "$VENV_DIR/bin/edgekit --version failed"
fi
py "$VENV_DIR/bin/python" - <<'PY' || true
from importlib import metadata
found = []
for dist in ("tflite-runtime", "ai-edge-litert", "tensorflow", "numpy"):
    try:
        found.append(f"{dist} {metadata.version(dist)}")
    except metadata.PackageNotFoundError:
        pass
print("    installed: " + ", ".join(found))
PY
# A package of the same name that is not this edgekit would pass --version.
py "$VENV_DIR/bin/python" -c "import edgekit.runtime.interpreters" \
    || die "the installed edgekit has no edgekit.runtime: install from --wheel or --source instead"

if [[ $DRY_RUN -eq 1 ]]; then
    :  # the host's USB bus says nothing about the target's
elif command -v lsusb >/dev/null 2>&1; then
    if lsusb -d 18d1:9302 >/dev/null 2>&1; then
        info "Coral USB Accelerator present (18d1:9302, runtime firmware loaded)"
    elif lsusb -d 1a6e:089a >/dev/null 2>&1; then
        info "Coral USB Accelerator present (1a6e:089a, firmware is loaded on first use)"
        info "if it was plugged in before this script ran, unplug and replug it once"
    else
        info "no Coral USB Accelerator on the bus (lsusb): plug it into a USB 3 (blue) port"
    fi
fi

printf '\n'
if [[ $DRY_RUN -eq 1 ]]; then
    say "dry run done: the Python and pip steps ran, the other steps were only printed"
    exit 0
fi
say "done. Try:"
info "$VENV_DIR/bin/edgekit bench BUNDLE --device usb"
info "$VENV_DIR/bin/edgekit run BUNDLE --device usb --serve tcp:127.0.0.1:5555"
