"""What the client's live page costs at a high event rate: the daemon's CPU with the page open and closed, and
the page's own CPU (Chromium's renderer), in the same minutes. Prints numbers; asserts nothing.

Starts `serve`, a `client` following one channel into the null sink, and a single-session `runner` fed RATE
telemetry lines a second on its standard input, then alternates windows of SECONDS with no page and with the page
open in headless Chromium.

Usage: python measure.py PATH/TO/trickle-relay [RATE] [SECONDS] [ROUNDS]   (release build; default 10000 20 2)
"""

import os
import socket
import subprocess
import sys
import threading
import time

from playwright.sync_api import sync_playwright

BINARY = os.path.abspath(sys.argv[1])
RATE = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
SECONDS = int(sys.argv[3]) if len(sys.argv) > 3 else 20
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 2
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def renderer_pids():
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                command = f.read()  # Chromium rewrites its arguments into one string
        except OSError:
            continue
        if b"--type=renderer" in command:
            pids.append(int(entry))
    return pids


def feed(stdin, stop):
    line = b'{"type":"telemetry","event":{"type":"stream_heartbeat","fps_in":29.97,"frames":[1,2,3],"note":"' + b"x" * 600 + b'"}}\n'
    batch = max(RATE // 100, 1)
    next_tick = time.monotonic()
    while not stop.is_set():
        stdin.write(line * batch)
        stdin.flush()
        next_tick += batch / RATE
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the load generator, not synchronising a test


def main():
    serve_port, client_port = free_port(), free_port()
    channel = "http://127.0.0.1:%d/measure-events" % serve_port
    devnull = open(os.devnull, "w")
    serve = subprocess.Popen([BINARY, "serve", "--port", str(serve_port), "--log-level", "warning"], stdout=devnull, stderr=devnull)
    time.sleep(1)
    client = subprocess.Popen(
        [BINARY, "client", "--events-url", channel, "--start", "0", "--wait-for-channel", "60", "--sink", "null", "--quiet",
         "--listen", "127.0.0.1:%d" % client_port, "--spool-dir", "/tmp/measure-page-state"],
        stdout=devnull, stderr=devnull,
    )
    runner = subprocess.Popen(
        [BINARY, "runner", "--events-url", channel, "--session-id", "measure", "--telemetry", "on", "--max-queue-events", "65536"],
        stdin=subprocess.PIPE, stdout=devnull, stderr=devnull,
    )
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(runner.stdin, stop), daemon=True)
    feeder.start()
    time.sleep(5)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=["--no-sandbox"])
            for round_ in range(ROUNDS):
                before = cpu_seconds(client.pid)
                time.sleep(SECONDS)
                closed = (cpu_seconds(client.pid) - before) / SECONDS
                page = browser.new_page()
                page.goto("http://127.0.0.1:%d/" % client_port)
                page.wait_for_selector("#telemetry tr.event", timeout=20_000)
                time.sleep(2)
                renderers = renderer_pids()
                before = cpu_seconds(client.pid)
                renderer_before = sum(cpu_seconds(pid) for pid in renderers)
                time.sleep(SECONDS)
                opened = (cpu_seconds(client.pid) - before) / SECONDS
                renderer = (sum(cpu_seconds(pid) for pid in renderers) - renderer_before) / SECONDS
                shown = "%s, %s, status %s" % (page.locator("#rate").text_content(), page.locator("#shown").text_content(), page.locator("#status").text_content())
                page.close()
                print(
                    "round %d, %d events/s: daemon %.1f%% of a core with no page, %.1f%% with the page open; the page's renderer %.1f%%; the page read %s"
                    % (round_ + 1, RATE, 100 * closed, 100 * opened, 100 * renderer, shown)
                )
            browser.close()
    finally:
        stop.set()
        for process in (runner, client, serve):
            process.terminate()


if __name__ == "__main__":
    main()
