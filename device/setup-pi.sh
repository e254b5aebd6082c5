#!/usr/bin/env bash
# Prepare a Raspberry Pi (Raspberry Pi OS Bookworm or Trixie, 64-bit) to run edgekit
# bundles on a Google Coral USB Accelerator, with a MATCHED runtime pair: a libedgetpu
# and a TFLite interpreter built from one TensorFlow release, as recorded in the pair
# table edgekit/device/pairs.json. (A libedgetpu and an interpreter built from
# different TensorFlow commits crash the process when the delegate loads.)
#
# Safe to run again: every step checks what is already in place. Run it as your
# normal user (it calls sudo where it needs root) or as root.
# See device/README.md for the whole deployment.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHECKOUT="$(dirname "$SCRIPT_DIR")"
DISTRIBUTION="edgekit-sb3"  # PyPI's "edgekit" is another project: never install by that name
# Coral's own apt repository: only with --coral-apt (its libedgetpu is built against TensorFlow 2.5).
CORAL_REPO_URL="https://packages.cloud.google.com/apt"
CORAL_REPO_SUITE="coral-edgetpu-stable"
CORAL_KEY_URL="https://packages.cloud.google.com/apt/doc/apt-key.gpg"
CORAL_KEYRING="/usr/share/keyrings/coral-edgetpu-archive-keyring.gpg"
CORAL_SOURCES="/etc/apt/sources.list.d/coral-edgetpu.list"
CORAL_INTERPRETER=("tflite-runtime==2.14.0" "numpy<2")

VENV_DIR="/opt/edgekit/venv"
VARIANT="std"
WHEEL=""
SOURCE=""
PAIRS_FILE=""
LIBEDGETPU_DEB_LOCAL=""
INTERPRETER_WHEEL_LOCAL=""
PYCORAL_WHEEL_LOCAL=""
WITH_PYCORAL=0
CORAL_APT=0
DRY_RUN=0
PYTHON_ARG=""
OS_RELEASE_ARG=""
EMULATOR=()

usage() {
    cat <<'EOF'
Usage: setup-pi.sh [--max] [--venv DIR] [--wheel PATH | --source DIR]
                   [--libedgetpu-deb FILE] [--interpreter-wheel FILE]
                   [--pycoral [--pycoral-wheel FILE]] [--pairs FILE] [--coral-apt]
                   [--dry-run [--python PATH] [--os-release FILE] [--emulator CMD]]

Install a tested libedgetpu + TFLite interpreter pair and edgekit's device side:
  1. detect the OS release (/etc/os-release VERSION_CODENAME), Python and architecture
  2. pick the pair for them from edgekit's pair table (edgekit/device/pairs.json);
     an untested combination stops here, naming the supported ones
  3. install the pair's libedgetpu .deb (downloaded, or --libedgetpu-deb), python3-venv
  4. create a virtual environment; install the pair's interpreter wheel (downloaded,
     or --interpreter-wheel) and edgekit from this checkout (or --wheel / --source)
  5. add the invoking user to the plugdev group (USB access to the accelerator)
  6. run `edgekit doctor`

Options:
  --max          libedgetpu1-max (full clock: faster, runs hotter) instead of -std
  --venv DIR     virtual environment to create or update (default: /opt/edgekit/venv)
  --wheel PATH   install edgekit from this wheel file
  --source DIR   install edgekit from this source checkout (default: the checkout
                 this script belongs to; edgekit is never installed by name)
  --libedgetpu-deb FILE    the pair's libedgetpu .deb, already downloaded (offline Pis)
  --interpreter-wheel FILE the pair's interpreter wheel, already downloaded
  --pycoral      also install the pair's pycoral wheel (edgekit does not need it)
  --pycoral-wheel FILE     that wheel, already downloaded
  --pairs FILE   use this pair table instead of the shipped one (a maintainer
                 trying a new pair before recording it; tests)
  --coral-apt    NOT RECOMMENDED: Coral's apt repository (libedgetpu 16.0, built
                 against TensorFlow 2.5) with tflite-runtime 2.14 from PyPI. This
                 combination is known to crash (SIGSEGV) when the Edge TPU delegate
                 loads (tensorflow/tensorflow#62371, google-coral/edgetpu#812)
  --dry-run      print each step; run only the Python and pip steps (venv, pip
                 install, checks) and print the others (downloads, apt, udev,
                 groups) without running them; needs no root
  --python PATH  with --dry-run: the Python to make the venv with (default: /usr/bin/python3)
  --os-release FILE  with --dry-run: read the release from FILE, not /etc/os-release
  --emulator CMD with --dry-run: run every Python command through CMD, e.g.
                 'qemu-aarch64 -L ROOT' with --python ROOT/usr/bin/python3
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

need_file() {  # need_file OPTION PATH -> absolute path
    [[ -f "$2" ]] || die "$1: no such file: $2"
    printf '%s/%s' "$(cd "$(dirname "$2")" && pwd)" "$(basename "$2")"
}

# --- arguments ---------------------------------------------------------------

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --max) VARIANT="max"; shift ;;
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
        --libedgetpu-deb)
            [[ $# -ge 2 && -n "$2" ]] || die "--libedgetpu-deb needs a .deb file"
            LIBEDGETPU_DEB_LOCAL="$(need_file --libedgetpu-deb "$2")"; shift 2 ;;
        --interpreter-wheel)
            [[ $# -ge 2 && -n "$2" ]] || die "--interpreter-wheel needs a .whl file"
            INTERPRETER_WHEEL_LOCAL="$(need_file --interpreter-wheel "$2")"; shift 2 ;;
        --pycoral) WITH_PYCORAL=1; shift ;;
        --pycoral-wheel)
            [[ $# -ge 2 && -n "$2" ]] || die "--pycoral-wheel needs a .whl file"
            PYCORAL_WHEEL_LOCAL="$(need_file --pycoral-wheel "$2")"; WITH_PYCORAL=1; shift 2 ;;
        --pairs)
            [[ $# -ge 2 && -n "$2" ]] || die "--pairs needs a pair table (JSON)"
            PAIRS_FILE="$(need_file --pairs "$2")"; shift 2 ;;
        --coral-apt) CORAL_APT=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        --python)
            [[ $# -ge 2 && -n "$2" ]] || die "--python needs a path to a Python executable"
            PYTHON_ARG="$2"; shift 2 ;;
        --python=*) PYTHON_ARG="${1#*=}"; [[ -n "$PYTHON_ARG" ]] || die "--python needs a path"; shift ;;
        --os-release)
            [[ $# -ge 2 && -n "$2" ]] || die "--os-release needs a file"
            OS_RELEASE_ARG="$(need_file --os-release "$2")"; shift 2 ;;
        --emulator)
            [[ $# -ge 2 && -n "$2" ]] || die "--emulator needs a command, e.g. 'qemu-aarch64 -L ROOT'"
            read -r -a EMULATOR <<<"$2"; shift 2 ;;
        --emulator=*) read -r -a EMULATOR <<<"${1#*=}"; shift ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

if [[ -n "$WHEEL" && -n "$SOURCE" ]]; then
    die "--wheel and --source are exclusive: give one of them"
fi
if [[ $DRY_RUN -eq 0 && ( -n "$PYTHON_ARG" || -n "$OS_RELEASE_ARG" || ${#EMULATOR[@]} -gt 0 ) ]]; then
    die "--python, --os-release and --emulator are for --dry-run only"
fi
if [[ $CORAL_APT -eq 1 && ( -n "$LIBEDGETPU_DEB_LOCAL" || -n "$INTERPRETER_WHEEL_LOCAL" || -n "$PAIRS_FILE" \
        || $WITH_PYCORAL -eq 1 ) ]]; then
    die "--coral-apt installs Coral's packages: it takes no pair files, --pairs or --pycoral"
fi
if [[ -n "$PYTHON_ARG" && ! -x "$PYTHON_ARG" ]]; then
    die "--python: not an executable: $PYTHON_ARG"
fi
if [[ -n "$WHEEL" ]]; then
    WHEEL="$(need_file --wheel "$WHEEL")"
    [[ "$WHEEL" == *.whl ]] || die "not a wheel (.whl) file: $WHEEL"
fi
if [[ -z "$WHEEL" && -z "$SOURCE" ]]; then
    # The checkout this script belongs to: edgekit is installed from files, never by name.
    if grep -qs "^name = \"$DISTRIBUTION\"" "$CHECKOUT/pyproject.toml"; then
        SOURCE="$CHECKOUT"
    else
        die "this script is not inside an edgekit checkout: give --wheel PATH (a wheel of $DISTRIBUTION) or --source DIR (PyPI's \"edgekit\" is another project)"
    fi
fi
if [[ -n "$SOURCE" ]]; then
    [[ -d "$SOURCE" ]] || die "no such directory: $SOURCE"
    SOURCE="$(cd "$SOURCE" && pwd)"
    grep -qs "^name = \"$DISTRIBUTION\"" "$SOURCE/pyproject.toml" \
        || die "$SOURCE is not an edgekit checkout (its pyproject.toml does not name $DISTRIBUTION)"
    if [[ ${#EMULATOR[@]} -gt 0 ]]; then
        # Building a wheel runs the interpreter in subprocesses, which the emulator cannot follow.
        die "--emulator needs --wheel (build the wheel on the host)"
    fi
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

tmpdir="$(mktemp -d)"
trap 'rm -rf "$tmpdir"' EXIT

# fetch NAME URL SHA256 LOCAL -> prints the file to install. A LOCAL file is used as
# it is (offline Pis); otherwise URL is downloaded (a dry run prints that and
# prints nothing). The sha256 is checked where the pair table has one.
fetch() {
    local name="$1" url="$2" sha="$3" local_file="$4" file
    if [[ -n "$local_file" ]]; then
        file="$local_file"
        info "$name: using the local file $file" >&2
        if [[ "$(basename "$file")" != "$(basename "$url")" ]]; then
            warn "$name: $file is not named like the pair's $(basename "$url")"
        fi
    elif [[ $DRY_RUN -eq 1 ]]; then
        skipped curl -fL --retry 3 -o "$tmpdir/$(basename "$url")" "$url" >&2
        return 0
    else
        file="$tmpdir/$(basename "$url")"
        info "$name: downloading $url" >&2
        curl -fL --retry 3 -sS -o "$file" "$url" \
            || die "cannot download $url (network? proxy?); download it elsewhere and pass it with the matching --...-deb/--...-wheel option"
    fi
    if [[ -n "$sha" ]]; then
        local got
        got="$(sha256sum "$file" | cut -d' ' -f1)"
        [[ "$got" == "$sha" ]] || die "$name: sha256 of $file is $got, the pair table says $sha: not installing it"
        info "$name: sha256 verified ($sha)" >&2
    else
        warn "$name: could not verify $(basename "$file"): the pair table has no published sha256 for it"
        info "$name: sha256 $(sha256sum "$file" | cut -d' ' -f1) (unverified)" >&2
    fi
    printf '%s' "$file"
}

# --- 1. platform -------------------------------------------------------------

step "check the platform"
if [[ -n "$PYTHON_ARG" ]]; then
    PYTHON="$PYTHON_ARG"
elif [[ -x /usr/bin/python3 ]]; then
    # Debian's own Python: python3-venv is for it, and the service user can run it.
    PYTHON="/usr/bin/python3"
else
    PYTHON="$(command -v python3 || true)"
    [[ -n "$PYTHON" ]] || die "python3 not found"
fi
KERNEL="$(uname -s)"
[[ "$KERNEL" == "Linux" ]] || die "this script is for Linux (Raspberry Pi OS, Debian); found $KERNEL"
# The machine as Python sees it (under --emulator: the emulated one, not the host's).
MACHINE="$(py "$PYTHON" -c 'import platform; print(platform.machine())')"
py_version="$(py "$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
OS_RELEASE="${OS_RELEASE_ARG:-/etc/os-release}"
CODENAME="$(sed -n 's/^VERSION_CODENAME=//p' "$OS_RELEASE" 2>/dev/null | tr -d '"' | head -n 1)"
PRETTY="$(sed -n 's/^PRETTY_NAME=//p' "$OS_RELEASE" 2>/dev/null | tr -d '"' | head -n 1)"
info "${PRETTY:-unknown OS} (VERSION_CODENAME=${CODENAME:-none}), Python $py_version ($PYTHON), machine $MACHINE"
[[ $DRY_RUN -eq 1 ]] || command -v apt-get >/dev/null 2>&1 \
    || die "apt-get not found: this script needs a Debian-based system"

# --- 2. the pair -------------------------------------------------------------

if [[ $CORAL_APT -eq 1 ]]; then
    step "Coral's apt packages (--coral-apt): NOT a tested pair"
    warn "--coral-apt: Coral's libedgetpu1-$VARIANT 16.0 is built against TensorFlow 2.5; with tflite-runtime"
    warn "2.14 (or any current interpreter) the process is known to crash with SIGSEGV when the Edge TPU"
    warn "delegate loads (tensorflow/tensorflow#62371, google-coral/edgetpu#812, google-coral/libedgetpu#53)."
    warn "Without --coral-apt this script installs a tested pair. Going on because you asked for it."
    LIBEDGETPU_PACKAGE="libedgetpu1-$VARIANT"
else
    step "pick the tested libedgetpu/interpreter pair"
    # The table is read with the target's Python from the checkout or from the wheel itself.
    PAIRS_PATH="${SOURCE:-$WHEEL}"
    pairs_args=()
    [[ -z "$PAIRS_FILE" ]] || pairs_args=(--pairs "$PAIRS_FILE")
    selection="$(PYTHONPATH="$PAIRS_PATH" py "$PYTHON" -m edgekit.device.pairs "${pairs_args[@]}" select \
        --codename "${CODENAME:-unknown}" --python "$py_version" --arch "$MACHINE" --variant "$VARIANT")" \
        || die "no tested pair for this system (above); --coral-apt installs Coral's own packages instead (known to crash)"
    PAIR_ID="" PAIR_TENSORFLOW="" LIBEDGETPU_PACKAGE="" LIBEDGETPU_VERSION="" LIBEDGETPU_URL=""
    LIBEDGETPU_SHA256="" INTERPRETER_DIST="" INTERPRETER_MODULE="" INTERPRETER_VERSION="" INTERPRETER_URL=""
    INTERPRETER_SHA256="" INTERPRETER_REQUIRES="" PYCORAL_URL="" PYCORAL_SHA256=""
    eval "$selection"
    info "pair $PAIR_ID: $LIBEDGETPU_PACKAGE $LIBEDGETPU_VERSION + $INTERPRETER_DIST $INTERPRETER_VERSION" \
         "(both built from TensorFlow $PAIR_TENSORFLOW)"
    if [[ $WITH_PYCORAL -eq 1 && -z "$PYCORAL_URL" ]]; then
        die "the pair $PAIR_ID has no pycoral wheel (edgekit does not need pycoral): drop --pycoral"
    fi
fi

# --- 3. libedgetpu and system packages ---------------------------------------

step "install $LIBEDGETPU_PACKAGE and python3-venv"
if [[ "$VARIANT" == "max" ]]; then
    # The max package asks for confirmation (full clock, hotter); --max is that confirmation.
    as_root debconf-set-selections <<'EOF'
libedgetpu1-max libedgetpu/accepted-eula boolean true
libedgetpu1-max libedgetpu/install-confirm-max boolean true
EOF
fi
info "libedgetpu1-std and libedgetpu1-max replace each other"
if [[ $CORAL_APT -eq 1 ]]; then
    missing=()
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v gpg >/dev/null 2>&1 || missing+=(gnupg)
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt_get update
        apt_get install -y "${missing[@]}"
    fi
    if [[ $DRY_RUN -eq 1 ]]; then
        skipped curl -fsSL --retry 3 -o "$tmpdir/key.download" "$CORAL_KEY_URL"
        skipped install -m 0644 "$tmpdir/key.gpg" "$CORAL_KEYRING"
        skipped install -m 0644 "$tmpdir/coral.list" "$CORAL_SOURCES"
        info "$CORAL_SOURCES would hold: deb [signed-by=$CORAL_KEYRING] $CORAL_REPO_URL $CORAL_REPO_SUITE main"
    else
        curl -fsSL --retry 3 -o "$tmpdir/key.download" "$CORAL_KEY_URL" \
            || die "cannot download Coral's signing key from $CORAL_KEY_URL (network? proxy?)"
        if head -c 64 "$tmpdir/key.download" | grep -q -- '-----BEGIN PGP'; then
            gpg --batch --yes --dearmor -o "$tmpdir/key.gpg" "$tmpdir/key.download"
        else
            cp "$tmpdir/key.download" "$tmpdir/key.gpg"
        fi
        as_root install -m 0644 "$tmpdir/key.gpg" "$CORAL_KEYRING"
        printf 'deb [signed-by=%s] %s %s main\n' "$CORAL_KEYRING" "$CORAL_REPO_URL" "$CORAL_REPO_SUITE" \
            > "$tmpdir/coral.list"
        as_root install -m 0644 "$tmpdir/coral.list" "$CORAL_SOURCES"
    fi
    apt_get update
    apt_get install -y "$LIBEDGETPU_PACKAGE" python3-venv usbutils
else
    deb="$(fetch "$LIBEDGETPU_PACKAGE" "$LIBEDGETPU_URL" "$LIBEDGETPU_SHA256" "$LIBEDGETPU_DEB_LOCAL")"
    if [[ -n "$deb" ]] && command -v dpkg-deb >/dev/null 2>&1; then
        got_package="$(dpkg-deb -f "$deb" Package)" || die "$deb is not a Debian package"
        got_version="$(dpkg-deb -f "$deb" Version)"
        [[ "$got_package" == "$LIBEDGETPU_PACKAGE" && "$got_version" == "$LIBEDGETPU_VERSION" ]] \
            || die "$deb holds $got_package $got_version, the pair needs $LIBEDGETPU_PACKAGE $LIBEDGETPU_VERSION"
        info "$deb: $got_package $got_version"
    fi
    apt_get update
    # apt installs the .deb with its dependencies (libusb); an installed Coral libedgetpu is replaced.
    apt_get install -y --allow-downgrades "${deb:-./$(basename "$LIBEDGETPU_URL")}" python3-venv usbutils
    if [[ -f "$CORAL_SOURCES" ]]; then
        warn "$CORAL_SOURCES (Coral's repository) is still listed: apt may later 'upgrade' libedgetpu to"
        warn "Coral's 16.0 build, which crashes with this interpreter. Remove it: sudo rm $CORAL_SOURCES"
    fi
fi
if [[ $DRY_RUN -eq 1 ]]; then
    :  # nothing was installed: the packaged udev rule cannot be there
elif ! grep -rqsi '1a6e' /etc/udev/rules.d /lib/udev/rules.d /usr/lib/udev/rules.d; then
    warn "no udev rule for the accelerator (1a6e/18d1) found: see device/99-edgetpu-accelerator.rules"
fi
if command -v udevadm >/dev/null 2>&1; then
    as_root udevadm control --reload-rules || true
fi

# --- 4. Python environment, interpreter and edgekit ---------------------------

step "create the virtual environment $VENV_DIR"
py_minor="${py_version#3.}"
if [[ "${py_version%%.*}" != "3" || "$py_minor" -lt 9 ]]; then
    die "edgekit needs Python >= 3.9; found $py_version"
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

step "install the interpreter and edgekit into $VENV_DIR"
if [[ $CORAL_APT -eq 1 ]]; then
    as_venv_owner "$VENV_DIR/bin/python" -m pip install "${CORAL_INTERPRETER[@]}"
    INTERPRETER_MODULE="tflite_runtime"
else
    interpreter_wheel="$(fetch "$INTERPRETER_DIST" "$INTERPRETER_URL" "$INTERPRETER_SHA256" "$INTERPRETER_WHEEL_LOCAL")"
    requires=()
    [[ -z "$INTERPRETER_REQUIRES" ]] || read -r -a requires <<<"$INTERPRETER_REQUIRES"
    if [[ -n "$interpreter_wheel" ]]; then
        as_venv_owner "$VENV_DIR/bin/python" -m pip install "$interpreter_wheel" "${requires[@]}"
    else
        skipped "$VENV_DIR/bin/python" -m pip install "$(basename "$INTERPRETER_URL")" "${requires[@]}"
        info "(dry run without --interpreter-wheel: the pair's interpreter is not installed)"
    fi
    if [[ $WITH_PYCORAL -eq 1 ]]; then
        pycoral_wheel="$(fetch pycoral "$PYCORAL_URL" "$PYCORAL_SHA256" "$PYCORAL_WHEEL_LOCAL")"
        if [[ -n "$pycoral_wheel" ]]; then
            as_venv_owner "$VENV_DIR/bin/python" -m pip install --no-deps "$pycoral_wheel"
        fi
    fi
fi
# Another interpreter package would come first in edgekit's order (ai_edge_litert,
# tflite_runtime, tensorflow) and load libedgetpu with a different TensorFlow build.
for other in ai-edge-litert tflite-runtime; do
    [[ "$other" != "${INTERPRETER_DIST:-tflite-runtime}" ]] || continue
    if py "$VENV_DIR/bin/python" -c "import importlib.metadata as m; m.version('$other')" 2>/dev/null; then
        info "removing $other from the venv: it would shadow the pair's interpreter"
        as_venv_owner "$VENV_DIR/bin/python" -m pip uninstall --yes --quiet "$other"
    fi
done

if [[ -n "$SOURCE" ]]; then
    info "building edgekit from the checkout $SOURCE"
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
    WHEEL="$(find "$tmpdir/wheel" -maxdepth 1 -name 'edgekit_sb3-*.whl' | head -n 1)"
    [[ -n "$WHEEL" ]] || die "building a wheel from $SOURCE produced no edgekit_sb3-*.whl"
    info "built $(basename "$WHEEL")"
fi
# edgekit itself needs numpy only: the interpreter is the pair's, installed above
# (not the `device` extra, which would add ai-edge-litert from PyPI).
as_venv_owner "$VENV_DIR/bin/python" -m pip install "$WHEEL"
# pip keeps an installed edgekit of the same version: force the given one in.
as_venv_owner "$VENV_DIR/bin/python" -m pip install --no-deps --force-reinstall "$WHEEL"

# --- 5. USB access -----------------------------------------------------------

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

# --- 6. checks ---------------------------------------------------------------

step "check the installation (edgekit doctor)"
# The console script's #! line names the venv's python: run it with that python
# (under an emulator the kernel cannot run the #! line itself).
edgekit_cmd=("$VENV_DIR/bin/python" "$VENV_DIR/bin/edgekit")
py "${edgekit_cmd[@]}" --version || die "$VENV_DIR/bin/edgekit --version failed"
py "$VENV_DIR/bin/python" - <<'PY' || true
from importlib import metadata
found = []
for dist in ("edgekit-sb3", "tflite-runtime", "ai-edge-litert", "pycoral", "tensorflow", "numpy"):
    try:
        found.append(f"{dist} {metadata.version(dist)}")
    except metadata.PackageNotFoundError:
        pass
print("    installed: " + ", ".join(found))
PY
if [[ -n "${INTERPRETER_MODULE:-}" ]]; then
    if py "$VENV_DIR/bin/python" -c "import $INTERPRETER_MODULE.interpreter"; then
        info "$INTERPRETER_MODULE imports"
    elif [[ $DRY_RUN -eq 1 ]]; then
        info "$INTERPRETER_MODULE does not import (a dry run: the pair's wheel was not installed, or a stand-in was)"
    else
        die "$INTERPRETER_MODULE does not import in $VENV_DIR (output above)"
    fi
fi
doctor_status=0
py "${edgekit_cmd[@]}" doctor || doctor_status=$?

printf '\n'
if [[ $DRY_RUN -eq 1 ]]; then
    say "dry run done: the Python and pip steps ran, the other steps were only printed"
    exit 0
fi
if [[ $doctor_status -ne 0 ]]; then
    say "installed, but edgekit doctor found problems (above). Right after a first install that is"
    info "usually the group and the plug: log out and in again, replug the accelerator, then run"
    info "$VENV_DIR/bin/edgekit doctor"
else
    say "done. Try:"
fi
info "$VENV_DIR/bin/edgekit bench BUNDLE --device usb"
info "$VENV_DIR/bin/edgekit run BUNDLE --device usb --serve tcp:127.0.0.1:5555"
