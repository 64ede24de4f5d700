#!/usr/bin/env bash
# Builds the self-contained release binary and writes dist/ (README, "Install"):
#   trickle-relay-<version>-linux-x86_64.tar.gz        the binary, its .debug file, README, LICENSE, systemd units,
#                                                      an example client configuration
#   trickle_relay-<version>-py3-none-manylinux_2_N_x86_64.whl
#                                                      the same binary as the wheel's script: `pip install` puts it
#                                                      on PATH
#   package-report.txt                                 sizes, glibc floor, ldd, build id
#
# The binary links the Swift runtime statically (--static-swift-stdlib) and imports FoundationEssentials only (no
# ICU), so it needs nothing of the toolchain at run time: `ldd` shows the C runtime family alone, and this script
# refuses anything else. librdkafka is still loaded at run time (dlopen) when the Kafka sink is used.
#
# Environment: TRICKLE_RELAY_PACKAGE_VENV (default .build/package-venv) is where the Python packaging tools live;
# PIP_* variables reach pip as usual.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

say() { echo "package: $*" >&2; }
fail() { echo "package: $*" >&2; exit 1; }

for tool in swift objcopy readelf objdump ldd tar python3; do
    command -v "$tool" >/dev/null || fail "$tool not found (binutils, libc-bin, tar and python3 come from Debian's packages)"
done

version=$(tr -d '[:space:]' < VERSION)
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "VERSION must be MAJOR.MINOR.PATCH, got '$version'"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then commit="$commit-dirty"; fi
# Package.swift reads it: the manifest is evaluated anew when it changes, so the commit is never a stale one.
export TRICKLE_RELAY_GIT_COMMIT="$commit"

build_flags=(-c release --product trickle-relay --static-swift-stdlib -Xlinker --build-id=sha1)
say "building trickle-relay $version ($commit), release, static Swift runtime"
swift build "${build_flags[@]}" >&2
built="$(swift build "${build_flags[@]}" --show-bin-path)/trickle-relay"
[ -x "$built" ] || fail "the build did not produce $built"

rm -rf dist
stage=dist/.stage
mkdir -p "$stage"
binary="$stage/trickle-relay"
cp "$built" "$binary"
chmod 0755 "$binary"

# Debug info beside the binary, tied to it by build id and debuglink (gdb, eu-stack and the Swift backtracer find
# it next to the binary or under /usr/lib/debug/.build-id/).
objcopy --only-keep-debug "$binary" "$binary.debug"
chmod 0644 "$binary.debug"
objcopy --strip-all --add-gnu-debuglink="$binary.debug" "$binary"
build_id=$(readelf -n "$binary" 2>/dev/null | awk '/Build ID/ { print $3 }')
[ -n "$build_id" ] || fail "the binary has no build id (-Xlinker --build-id)"
[ "$(readelf -n "$binary.debug" 2>/dev/null | awk '/Build ID/ { print $3 }')" = "$build_id" ] || fail "the .debug file's build id differs from the binary's"

# Only the C runtime family may be loaded from the system.
libraries=$(ldd "$binary" | awk '{ print $1 }')
unexpected=$(echo "$libraries" | grep -v -E '^(linux-vdso\.so|/lib64/ld-linux-x86-64\.so|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so|libutil\.so|libstdc\+\+\.so|libgcc_s\.so|libz\.so)' || true)
[ -z "$unexpected" ] || fail "the binary needs libraries beyond the C runtime: $(echo $unexpected)"

# The glibc floor: the newest GLIBC_2.N symbol version the binary references. The wheel promises exactly that.
glibc_minor=$(objdump -T "$binary" | grep -o 'GLIBC_2\.[0-9]*' | cut -d. -f2 | sort -n | tail -1)
[ -n "$glibc_minor" ] || fail "no GLIBC symbol versions found in the binary"
[ "$glibc_minor" -le 35 ] || fail "the binary needs glibc 2.$glibc_minor; it must run on Ubuntu 22.04 (2.35)"
platform_tag="manylinux_2_${glibc_minor}_x86_64"

printed=$("$binary" --version)
case "$printed" in
    "$version (commit $commit, release)") ;;
    *) fail "--version printed '$printed', expected '$version (commit $commit, release)'" ;;
esac

# The tarball.
name="trickle-relay-$version-linux-x86_64"
root="$stage/$name"
mkdir -p "$root/systemd" "$root/examples"
cp "$binary" "$binary.debug" "$root/"
cp README.md LICENSE "$root/"
cp -R docs "$root/docs"
cp packaging/systemd/*.service "$root/systemd/"
cp packaging/examples/client.json "$root/examples/"
mtime=$(git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" -C "$stage" -czf "dist/$name.tar.gz" "$name"

# The wheel, with the Python ecosystem's own tools: hatchling builds it (the binary as the wheel's script, see
# packaging/python/hatch_build.py), build drives it, twine and check-wheel-contents check it, auditwheel confirms
# the manylinux tag against the binary's symbol versions.
venv=${TRICKLE_RELAY_PACKAGE_VENV:-.build/package-venv}
if ! "$venv/bin/python" -c 'import build, hatchling, twine, auditwheel, check_wheel_contents' 2>/dev/null; then
    say "installing the Python packaging tools into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check \
        'build>=1.2' 'hatchling>=1.27' 'twine>=6' 'auditwheel>=6' 'check-wheel-contents>=0.6' >&2
fi
wheel_source="$stage/python"
cp -R packaging/python "$wheel_source"
cp LICENSE "$wheel_source/"
TRICKLE_RELAY_VERSION="$version" TRICKLE_RELAY_BINARY="$PWD/$binary" TRICKLE_RELAY_PLATFORM_TAG="$platform_tag" \
    "$venv/bin/python" -m build --wheel --no-isolation --outdir dist "$wheel_source" >&2
wheel="dist/trickle_relay-$version-py3-none-$platform_tag.whl"
[ -f "$wheel" ] || fail "expected $wheel; dist/ holds: $(ls dist)"
"$venv/bin/twine" check --strict "$wheel" >&2
"$venv/bin/check-wheel-contents" "$wheel" >&2
audit=$("$venv/bin/auditwheel" show "$wheel" 2>&1) || fail "auditwheel show failed: $audit"
echo "$audit" | grep -q "\"$platform_tag\"" || fail "auditwheel does not confirm $platform_tag: $audit"

size() { stat -c %s "$1"; }
{
    echo "trickle-relay $printed"
    echo "build id            $build_id"
    echo "binary (unstripped) $(size "$built") bytes"
    echo "binary (stripped)   $(size "$binary") bytes"
    echo "debug info          $(size "$binary.debug") bytes"
    echo "tarball             $(size "dist/$name.tar.gz") bytes  dist/$name.tar.gz"
    echo "wheel               $(size "$wheel") bytes  $wheel"
    echo "glibc floor         2.$glibc_minor ($platform_tag)"
    echo "ldd:"
    ldd "$binary" | sed 's/^/    /'
} > dist/package-report.txt
rm -rf "$stage"
cat dist/package-report.txt
