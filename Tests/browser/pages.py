"""The live pages, checked in a real browser (Debian's Chromium driven by Playwright), as a person sees them.

Starts `trickle-relay serve`, a runner agent (multi-session, with a token) and a client daemon (with a stream
token, a file sink), opens the client's page and the runner agent's page, and checks: sessions appear; an event
sent after the page opened shows within a few seconds, byte for byte as relayed when its row is opened; counters
move; a loss (a malformed line on a followed channel) shows as a loss; a wrong token shows the message; the token
leaves the address bar; no request leaves the page's origin; no console error. Screenshots go to
`.build/browser/` (paths printed).

Usage: python pages.py PATH/TO/trickle-relay
"""

import http.server
import json
import os
import threading
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from playwright.sync_api import sync_playwright, expect

BINARY = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".build/debug/trickle-relay")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = os.path.abspath(".build/browser")
TOKEN = "browser-token-7f3a"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(method, url, body=None, token=TOKEN):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=10) as response:
        return response.status, response.read()


def wait_for(what, condition, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(0.1)  # polling a process over a socket: the thing waited on is outside this process
    raise AssertionError("timed out waiting for " + what)


class RejectingMetricsAPI(http.server.BaseHTTPRequestHandler):
    """A metrics API that rejects the key: every POST answers 401."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        body = b'{"error":"invalid api key"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    os.makedirs(SHOTS, exist_ok=True)
    work = tempfile.mkdtemp(prefix="trickle-browser-")
    token_file = os.path.join(work, "token")
    with open(token_file, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    output = os.path.join(work, "out.jsonl")
    serve_port, runner_port, client_port, failing_port = free_port(), free_port(), free_port(), free_port()
    metrics_api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RejectingMetricsAPI)
    threading.Thread(target=metrics_api.serve_forever, daemon=True).start()
    key_file = os.path.join(work, "api.key")
    with open(key_file, "w") as f:
        f.write("wrong-key\n")
    os.chmod(key_file, 0o600)
    trickle = "http://127.0.0.1:%d" % serve_port
    runner_api = "http://127.0.0.1:%d" % runner_port
    client_api = "http://127.0.0.1:%d" % client_port
    logs = open(os.path.join(work, "processes.log"), "w")
    client_arguments = [
        BINARY, "client", "--listen", "127.0.0.1:%d" % client_port, "--stream-token-file", token_file, "--sink", "file:" + output,
        "--spool-dir", os.path.join(work, "state"), "--keep-running", "--quiet", "--wait-for-channel", "120",
    ]
    processes = [
        subprocess.Popen([BINARY, "serve", "--port", str(serve_port), "--log-level", "warning"], stdout=logs, stderr=logs),
        subprocess.Popen([BINARY, "runner", "--telemetry", "on", "--listen", "127.0.0.1:%d" % runner_port, "--token-file", token_file], stdout=logs, stderr=logs),
        subprocess.Popen(client_arguments, stdout=logs, stderr=logs),
        # A second client whose egress is a metrics API that rejects its key: the page says so, in words.
        subprocess.Popen(
            [BINARY, "client", "--listen", "127.0.0.1:%d" % failing_port, "--sink", "http://127.0.0.1:%d/v1/metrics" % metrics_api.server_port,
             "--api-key-file", key_file, "--spool-dir", os.path.join(work, "spool"), "--keep-running", "--quiet", "--wait-for-channel", "120"],
            stdout=logs, stderr=logs,
        ),
    ]
    failing_api = "http://127.0.0.1:%d" % failing_port
    failures = []
    try:
        for url in (trickle + "/healthz", runner_api + "/healthz", client_api + "/healthz", failing_api + "/healthz"):
            wait_for(url, lambda url=url: request("GET", url, token=None)[0] == 200)
        events_url = trickle + "/browser-1-events"
        raw_url = trickle + "/raw-1-events"
        request("POST", runner_api + "/v1/sessions", {"session_id": "browser-1", "events_url": events_url})
        request("POST", client_api + "/v1/subscriptions", {"events_url": events_url, "start": 0})
        request("POST", client_api + "/v1/subscriptions", {"events_url": raw_url, "start": 0})
        request("POST", failing_api + "/v1/subscriptions", {"events_url": events_url, "start": 0}, token=None)

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            for base, name in ((client_api, "client"), (runner_api, "runner")):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = context.new_page()
                console_errors, foreign = [], []
                page.on("console", lambda message, errors=console_errors: errors.append(message.text) if message.type == "error" else None)
                page.on("pageerror", lambda error, errors=console_errors: errors.append(str(error)))
                page.on("request", lambda req, base=base, out=foreign: out.append(req.url) if not req.url.startswith(base + "/") else None)
                page.goto(base + "/?jwt=" + TOKEN)
                if "jwt" in page.url:
                    failures.append(name + ": the token stayed in the address bar: " + page.url)
                expect(page.locator('#sessions tr[data-session="browser-1"]')).to_be_visible(timeout=10_000)
                if name == "client":
                    # An event sent after the page opened shows within a few seconds, byte for byte when opened.
                    request("POST", runner_api + "/v1/sessions/browser-1/telemetry", {"type": "browser_probe", "api_key": "sk-live-1234567890abcdef1234", "n": 7})
                    row = page.locator("#telemetry tr.event", has_text="browser_probe").first
                    expect(row).to_be_visible(timeout=10_000)
                    row.click()
                    shown = page.locator("#telemetry pre.envelope").first.text_content()
                    wait_for("the envelope in the file sink", lambda: "browser_probe" in open(output).read())
                    relayed = [line for line in open(output).read().splitlines() if "browser_probe" in line]
                    if shown not in relayed:
                        failures.append("client: the opened row is not the envelope as relayed:\n  shown   %r\n  relayed %r" % (shown, relayed))
                    if "sk-live-1234567890abcdef1234" in shown:
                        failures.append("client: a secret reached the page unredacted")
                    # Filters: a type nothing has hides every row; the session filter keeps the probe.
                    page.fill("#filter-type", "no-such-type")
                    expect(page.locator("#telemetry tr.event")).to_have_count(0)
                    page.fill("#filter-type", "")
                    page.select_option("#filter-session", "browser-1")
                    expect(page.locator("#telemetry tr.event", has_text="browser_probe")).to_have_count(1)
                    # Pause: what arrives is counted, not drawn, until resumed.
                    page.click("#pause")
                    request("POST", runner_api + "/v1/sessions/browser-1/telemetry", {"type": "browser_while_paused"})
                    expect(page.locator("#shown")).to_contain_text("1 arrived since", timeout=10_000)
                    expect(page.locator("#telemetry tr.event", has_text="browser_while_paused")).to_have_count(0)
                    page.click("#pause")
                    expect(page.locator("#telemetry tr.event", has_text="browser_while_paused")).to_have_count(1, timeout=5_000)
                    # Copy as JSONL: what is shown, one envelope per line, exactly as relayed.
                    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
                    page.click("#copy")
                    expect(page.locator("#shown")).to_contain_text("copied")
                    copied = page.evaluate("navigator.clipboard.readText()")
                    if shown + "\n" not in copied or not copied.endswith("\n"):
                        failures.append("client: Copy as JSONL did not copy the shown envelopes as lines: %r" % copied[:300])
                    expect(page.locator("#egress")).to_contain_text("Telemetry handed to the sink")
                    handed = page.locator("#egress dt", has_text="Telemetry handed to the sink").locator("xpath=following-sibling::dd[1]")
                    expect(handed).not_to_have_text("0", timeout=10_000)
                    # A loss shows as a loss: a malformed line on a followed channel.
                    request("POST", raw_url + "/0", b"this is not json\n", token=None)
                    malformed = page.locator("#losses dt", has_text="Malformed lines skipped").locator("xpath=following-sibling::dd[1]")
                    expect(malformed).to_have_text("1", timeout=10_000)
                    expect(malformed).to_have_class("loss")
                    # The daemon restarts: the page reconnects by itself, and what comes next shows.
                    processes[2].terminate()
                    processes[2].wait(timeout=20)
                    expect(page.locator("#status")).not_to_have_text("live", timeout=10_000)
                    processes[2] = subprocess.Popen(client_arguments, stdout=logs, stderr=logs)
                    wait_for("the restarted client", lambda: request("GET", client_api + "/healthz", token=None)[0] == 200)
                    request("POST", runner_api + "/v1/sessions/browser-1/telemetry", {"type": "browser_after_restart"})
                    expect(page.locator("#telemetry tr.event", has_text="browser_after_restart")).to_have_count(1, timeout=20_000)
                    expect(page.locator("#status")).to_have_text("live", timeout=10_000)
                else:
                    relayed_cell = page.locator('#sessions tr[data-session="browser-1"] td').nth(3)
                    expect(relayed_cell).not_to_have_text("0", timeout=15_000)
                shot = os.path.join(SHOTS, name + "-page.png")
                page.screenshot(path=shot, full_page=True)
                print("screenshot: " + shot)
                if console_errors:
                    failures.append(name + ": console errors: " + repr(console_errors))
                if foreign:
                    failures.append(name + ": requests left the page's origin: " + repr(foreign))
                # A wrong token shows a clear message (and the token field).
                wrong = context.new_page()
                wrong.goto(base + "/?jwt=not-the-token")
                expect(wrong.locator("#auth")).to_be_visible(timeout=10_000)
                expect(wrong.locator("#auth-message")).to_contain_text("wrong token")
                shot = os.path.join(SHOTS, name + "-wrong-token.png")
                wrong.screenshot(path=shot)
                print("screenshot: " + shot)
                context.close()
            # The egress failure state, in words: the metrics API answering 401.
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.goto(failing_api + "/")
            failing = page.locator("#egress dt", has_text="Failing").locator("xpath=following-sibling::dd[1]")
            expect(failing).to_contain_text("401", timeout=20_000)
            expect(failing).to_contain_text("since")
            shot = os.path.join(SHOTS, "client-egress-failing.png")
            page.screenshot(path=shot, full_page=True)
            print("screenshot: " + shot)
            context.close()
            browser.close()
    except Exception as error:  # a failed expectation: report it with the processes' logs
        failures.append("%s: %s" % (type(error).__name__, error))
    finally:
        metrics_api.shutdown()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        logs.close()
    if failures:
        print("FAILED:\n" + "\n".join(failures))
        print("--- processes' logs ---\n" + open(os.path.join(work, "processes.log")).read()[-4000:])
        sys.exit(1)
    print("browser checks passed: client page and runner agent page")


if __name__ == "__main__":
    main()
