#!/usr/bin/env bash
# Interop with the official Python SDK, livepeer-gateway 1.0.0 from PyPI: round trips through
# `trickle-relay serve` in both directions (Python writes -> Swift reads, Swift writes -> Python reads).
#
# livepeer-gateway declares Requires-Python >= 3.12, and this machine has 3.11. The SDK's trickle modules
# (trickle_publisher, trickle_subscriber, segment_reader, channel_writer, channel_reader, errors) use no 3.12
# feature and need only aiohttp; the package's __init__ additionally imports the media stack (PyAV, gRPC). So we
# install the published wheel unmodified with --no-deps --ignore-requires-python, install aiohttp, and load the
# trickle modules directly without executing the package __init__ (see interop.py). Nothing of the SDK is
# patched or vendored.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

venv="${TRICKLE_RELAY_INTEROP_VENV:-$root/.build/interop-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "aiohttp>=3.9" "prometheus_client>=0.20"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python "livepeer-gateway==1.0.0"

swift build --product trickle-relay
bin="$(swift build --show-bin-path)/trickle-relay"

# A throwaway CA and a server certificate for 127.0.0.1, for the checks over TLS. The SDK (aiohttp) trusts the CA
# through SSL_CERT_FILE, set before Python starts (aiohttp builds its default SSL context when it is imported).
tls="$(mktemp -d)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/ca.key" -out "$tls/ca.pem" \
    -subj "/CN=interop CA" -days 2 -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/server.key" -out "$tls/server.csr" \
    -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$tls/server.ext"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
    -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null
SSL_CERT_FILE="$tls/ca.pem" "$venv/bin/python" "$root/Tests/interop/interop.py" --trickle-relay "$bin" \
    --tls-cert "$tls/server.pem" --tls-key "$tls/server.key" --ca-file "$tls/ca.pem"
