#!/usr/bin/env bash
# Proves dist/ runs on a machine without Swift: in a mount namespace where the toolchain's folder is hidden under an
# empty tmpfs, the tarball's binary prints its version and runs the demo, and the wheel installs offline into a fresh
# venv whose `trickle-relay` (the binary itself, not a Python wrapper) runs the demo too. Needs root (unshare -m).
# Run scripts/package.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-package: $*" >&2; exit 1; }

version=$(tr -d '[:space:]' < VERSION)
tarball="dist/trickle-relay-$version-linux-x86_64.tar.gz"
wheel=$(ls dist/trickle_relay-"$version"-py3-none-manylinux_2_*_x86_64.whl 2>/dev/null | head -1 || true)
[ -f "$tarball" ] || fail "$tarball not found: run scripts/package.sh"
[ -n "$wheel" ] || fail "no wheel for $version in dist/: run scripts/package.sh"

swift_path=$(command -v swift || echo /opt/swift/usr/bin/swift)
toolchain=$(dirname "$(dirname "$(dirname "$(readlink -f "$swift_path")")")")
[ -d "$toolchain" ] || fail "cannot find the Swift toolchain's folder to hide (looked at $toolchain)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work"
binary="$work/trickle-relay-$version-linux-x86_64/trickle-relay"
python3 -m venv "$work/venv"

echo "check-package: hiding $toolchain"
# shellcheck disable=SC2016
unshare -m bash -euo pipefail -c '
    toolchain="$1" binary="$2" venv="$3" wheel="$4"
    mount -t tmpfs none "$toolchain"
    if [ -n "$(ls -A "$toolchain")" ]; then echo "the toolchain is still visible" >&2; exit 1; fi
    if command -v swift >/dev/null 2>&1 && swift --version >/dev/null 2>&1; then echo "swift still runs" >&2; exit 1; fi
    echo "--- tarball: ldd"
    ldd "$binary"
    echo "--- tarball: --version"
    "$binary" --version
    echo "--- tarball: demo"
    "$binary" demo --duration 5
    echo "--- wheel: pip install --no-index"
    "$venv/bin/pip" install --no-index --disable-pip-version-check -q "$wheel"
    installed="$venv/bin/trickle-relay"
    [ "$(head -c 4 "$installed" | od -An -c | tr -d " ")" = "177ELF" ] || { echo "$installed is not the binary itself" >&2; exit 1; }
    "$installed" --version
    "$venv/bin/python" -m trickle_relay --version
    echo "--- wheel: demo"
    "$installed" demo --duration 5
' check-package "$toolchain" "$binary" "$work/venv" "$PWD/$wheel"
echo "check-package: the tarball and the wheel run without the Swift toolchain"
