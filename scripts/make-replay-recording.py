#!/usr/bin/env python3
"""Writes a realistic events-channel recording for timing `trickle-relay replay` as a whole process.

    python3 scripts/make-replay-recording.py OUT.jsonl [MEGABYTES=200]

Telemetry envelopes of ~850 bytes (ids, timestamps, nested data: numbers, arrays, a long prompt, escapes and
non-ASCII text in a third of them, written both escaped and as UTF-8), one local notification every 50 events.
Seeded: the same file every time.
"""
import json
import random
import sys
import uuid

def main() -> None:
    out_path = sys.argv[1]
    limit = int(sys.argv[2]) * 1_000_000 if len(sys.argv) > 2 else 200_000_000
    rng = random.Random(7)
    data_types = ["stream_heartbeat", "pipeline_load", "frame_stats", "gpu_stats", "error", "model_loaded", "params_update"]
    written = 0
    n = 0
    with open(out_path, "w", encoding="utf-8") as out:
        while written < limit:
            data = {
                "type": rng.choice(data_types),
                "client_source": "scope",
                "session_id": "sess-%04d" % (n % 97),
                "pipeline": "streamdiffusion",
                "fps_in": round(rng.uniform(20, 30), 2),
                "fps_out": round(rng.uniform(20, 30), 2),
                "frames": [rng.randint(0, 10000) for _ in range(12)],
                "gpu": {"name": "NVIDIA L40S", "util": rng.randint(0, 100), "mem_used_mb": rng.randint(1000, 40000), "temp_c": rng.randint(40, 90)},
                "params": {
                    "prompt": "a watercolor painting of a lighthouse at dusk, "
                    + ("soft light \"glow\" \u2728 " if n % 5 == 0 else "")
                    + "x" * rng.randint(100, 400),
                    "seed": rng.randint(0, 2**31),
                    "t_index_list": [12, 20, 32],
                    "guidance": 1.2,
                },
                "note": "caf\u00e9 \\ path\\to\\file\n" if n % 7 == 0 else "ok",
            }
            envelope = {
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "type": "stream_trace",
                "timestamp": str(1763769600000 + n * 17),
                "session_id": "sess-%04d" % (n % 97),
                "relayed_via": "trickle",
                "data": data,
            }
            line = json.dumps({"type": "telemetry", "event": envelope}, ensure_ascii=(n % 3 == 0), separators=(",", ":")) + "\n"
            if n % 50 == 0:
                line = json.dumps({"type": "notification", "payload": {"n": n}}) + "\n" + line
            out.write(line)
            written += len(line.encode())
            n += 1
    print(f"{out_path}: {n} envelopes, {written} bytes")

if __name__ == "__main__":
    main()
