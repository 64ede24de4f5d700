#!/usr/bin/env bash
# Fuzzes the JSONL reader and the dispatcher with libFuzzer for a fixed time (default 60 s), seeded with the
# recorded fixtures. Usage: bash Fuzz/run.sh [seconds]
# The random seed is fixed (TRICKLE_RELAY_FUZZ_SEED, default 1) so a CI run explores the same inputs each time for
# the same code; set another seed (or 0 for a random one) to explore further.
# A crash, a sanitizer report, a broken invariant, an allocation over 64 MB or an RSS over 2 GB fails the run and
# leaves the input in .build/fuzz-artifacts/ (replay it: .build/debug/trickle-relay-fuzz <file>).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
seed="${TRICKLE_RELAY_FUZZ_SEED:-1}"
export TRICKLE_RELAY_FUZZ=1
swift build --product trickle-relay-fuzz
binary="$(swift build --product trickle-relay-fuzz --show-bin-path)/trickle-relay-fuzz"
corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
mkdir -p .build/fuzz-artifacts
# Leak detection stays off: the Swift runtime's metadata caches read as leaks, and it costs 10× the speed.
SWIFT_BACKTRACE=enable=no "$binary" \
    -max_total_time="$seconds" -seed="$seed" -max_len=4096 -detect_leaks=0 -malloc_limit_mb=64 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix=.build/fuzz-artifacts/ \
    "$corpus" fixtures 2>&1 | grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' | tail -n 40
