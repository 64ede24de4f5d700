#!/usr/bin/env bash
# The live pages (client and runner agent) in a real browser: Debian's Chromium driven by Playwright for Python
# (PyPI), pointed at the system Chromium with executable_path — nothing is downloaded by Playwright. Screenshots
# go to .build/browser/ (paths printed).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

if ! command -v chromium >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
venv="${TRICKLE_RELAY_BROWSER_VENV:-$root/.build/browser-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "playwright==1.65.3"

swift build --product trickle-relay
bin="$(swift build --show-bin-path)/trickle-relay"
CHROMIUM="$(command -v chromium)" "$venv/bin/python" "$root/Tests/browser/pages.py" "$bin"
