"""Round trips between TrickleRelay and the official Python SDK (livepeer-gateway) over `trickle-relay serve`.

Prints one line per check and a closing 'N passed, N failed' line; exits non-zero on any failure.
"""

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import sys
import tempfile
import types

import aiohttp


def load_sdk_trickle_modules():
    """Load the SDK's trickle modules without running livepeer_gateway/__init__.py (it imports PyAV and gRPC,
    which the trickle code does not use). The modules themselves run unmodified."""
    spec = importlib.util.find_spec("livepeer_gateway")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("livepeer-gateway is not installed (run Tests/interop/run.sh)")
    package = types.ModuleType("livepeer_gateway")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["livepeer_gateway"] = package
    from livepeer_gateway.channel_reader import JSONLReader
    from livepeer_gateway.channel_writer import JSONLWriter

    return JSONLReader, JSONLWriter


JSONLReader, JSONLWriter = load_sdk_trickle_modules()

EVENTS = 1000
# A check that has not finished by then failed (a hang must fail the run with a reason, not stall CI).
CHECK_TIMEOUT = int(os.environ.get("TRICKLE_RELAY_INTEROP_CHECK_TIMEOUT", "180"))
# How long `trickle-relay serve` gets to exit after SIGTERM before it is killed and the run fails.
SERVE_EXIT_TIMEOUT = 20

# TLS checks (run.sh makes the pair and points SSL_CERT_FILE, which the SDK's aiohttp trusts, at the CA):
# serve's certificate and key, and the flags the Swift side needs to trust the same CA.
TLS = {"cert": None, "key": None, "ca": None}
SWIFT_TLS_ARGS = []

# Processes started by the check that is running; `end_started_processes` ends those still alive after it.
STARTED = []


async def start(*arguments, **options):
    process = await asyncio.create_subprocess_exec(*arguments, **options)
    STARTED.append(process)
    return process


async def end_started_processes():
    """Terminates (then kills) what the last check left running; returns how many it had to end."""
    left = [process for process in STARTED if process.returncode is None]
    STARTED.clear()
    for process in left:
        process.terminate()
    for process in left:
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
    return len(left)


# The SDK writers the running check opened; closed after it if it did not (a failed check skips its close).
WRITERS = []


def open_writer(url, **options):
    writer = JSONLWriter(url, **options)
    WRITERS.append(writer)
    return writer


async def tidy_after_check():
    """Ends what a check left behind: open SDK writers, background tasks, processes. Returns a note, or ''."""
    notes = []
    writers = list(WRITERS)
    WRITERS.clear()
    for writer in writers:
        try:
            await asyncio.wait_for(writer.close(), timeout=15)
        except Exception as error:
            notes.append(f"an SDK writer did not close: {error!r}")
    current = asyncio.current_task()
    leftover = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    for task in leftover:
        task.cancel()
    if leftover:
        await asyncio.wait(leftover, timeout=10)
    ended = await end_started_processes()
    if ended:
        notes.append(f"ended {ended} process(es) it left running")
    return "; ".join(notes)


def make_event(n):
    return {
        "type": "interop",
        "n": n,
        "text": "caf\u00e9 \u2713 \"quoted\" \\ slash / \U0001F389",
        "ratio": n / 7,
        "big": 2**53 + n,
        "nested": {"list": [1, 2.5, {"deep": None}], "flag": n % 2 == 0},
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for_server(base):
    async with aiohttp.ClientSession() as session:
        for _ in range(500):
            try:
                async with session.get(f"{base}/probe/next") as response:
                    if response.status in (200, 404):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.02)
    raise RuntimeError("trickle-relay serve did not come up")


async def create_channel(base, name):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/{name}", headers={"Expect-Content": "application/jsonl"}) as response:
            assert response.status == 200, f"create {name}: {response.status}"


async def python_writes_swift_reads(binary, base):
    url = f"{base}/py2swift"
    await create_channel(base, "py2swift")
    reader = await start(
        binary, "subscribe", "--url", url, "--start", "0", "--log-level", "error", *SWIFT_TLS_ARGS,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    writer = open_writer(url, segment_interval=0.1)
    sent = [make_event(n) for n in range(EVENTS)]
    for n, event in enumerate(sent):
        await writer.write(event)
        if n % 50 == 49:
            await asyncio.sleep(0.02)  # let a few time-windowed segments form
    await writer.close()
    out, err = await asyncio.wait_for(reader.communicate(), timeout=60)
    received = [json.loads(line) for line in out.decode("utf-8").splitlines()]
    assert reader.returncode == 0, f"subscribe exited {reader.returncode}: {err.decode()}"
    assert len(received) == EVENTS, f"Swift read {len(received)} of {EVENTS} events; stderr: {err.decode()}"
    assert received == sent, "values or order differ"
    return f"Python JSONLWriter -> Swift subscribe: {len(received)}/{EVENTS} events, values and order intact"


async def swift_writes_python_reads(binary, base):
    url = f"{base}/swift2py"
    await create_channel(base, "swift2py")
    sent = [make_event(n) for n in range(EVENTS)]
    received = []

    async def read_all():
        async for event in JSONLReader(url)(start_seq=0):
            received.append(event)

    reading = asyncio.create_task(read_all())
    body = "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in sent).encode("utf-8")
    publisher = await start(
        binary, "publish", "--url", url, "--segment-window", "0.2", "--max-segment-bytes", "65536", *SWIFT_TLS_ARGS,
        "--log-level", "error",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(publisher.communicate(body), timeout=60)
    assert publisher.returncode == 0, f"publish exited {publisher.returncode}: {err.decode()}"
    await asyncio.wait_for(reading, timeout=60)
    assert len(received) == EVENTS, f"the SDK read {len(received)} of {EVENTS} events; publish said: {err.decode()}"
    assert received == sent, "values or order differ"
    return f"Swift publish -> Python JSONLReader: {len(received)}/{EVENTS} events, values and order intact ({err.decode().strip()})"


async def recorded_session_through_runner(binary, base):
    """A recorded session fed to `trickle-relay runner` on stdin is read back whole by the SDK's JSONLReader."""
    url = f"{base}/runner-session"
    await create_channel(base, "runner-session")
    fixture = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "clean-session.jsonl")
    with open(fixture, "rb") as f:
        recorded = f.read()
    inputs = [json.loads(line) for line in recorded.decode("utf-8").splitlines() if line.strip()]
    received = []

    async def read_all():
        async for event in JSONLReader(url)(start_seq=0):
            received.append(event)

    reading = asyncio.create_task(read_all())
    runner = await start(
        binary, "runner", "--events-url", url, "--session-id", "sess-fixture", "--connection-id", "conn-fixture",
        "--telemetry", "on", "--no-scrub", "--segment-window", "0.2", "--log-level", "error",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(runner.communicate(recorded), timeout=60)
    assert runner.returncode == 0, f"runner exited {runner.returncode}: {err.decode()}"
    await asyncio.wait_for(reading, timeout=60)

    def is_self_telemetry(line):
        return line.get("type") == "telemetry" and line["event"]["data"]["type"] in ("relay_ready", "relay_heartbeat")

    lines = [line for line in received if not is_self_telemetry(line)]
    # Control events pass through unchanged and in order.
    expected_control = [line for line in inputs if line.get("type") not in ("telemetry", "stream_trace")]
    got_control = [line for line in lines if line.get("type") != "telemetry"]
    assert got_control == expected_control, f"control events differ: {got_control} vs {expected_control}"
    # Telemetry arrives stamped exactly once, values intact, in order.
    expected_telemetry = [line for line in inputs if line.get("type") in ("telemetry", "stream_trace")]
    got_telemetry = [line["event"] for line in lines if line.get("type") == "telemetry"]
    assert len(got_telemetry) == len(expected_telemetry), f"{len(got_telemetry)} of {len(expected_telemetry)} telemetry events"
    for sent, envelope in zip(expected_telemetry, got_telemetry):
        if sent.get("type") == "stream_trace":
            assert envelope == sent, f"envelope changed: {envelope} vs {sent}"
            continue
        event = sent["event"]
        assert envelope["type"] == "stream_trace" and isinstance(envelope["timestamp"], str), envelope
        data = envelope["data"]
        assert data["session_id"] == "sess-fixture" and data["connection_id"] == "conn-fixture", data
        for key, value in event.items():
            assert data[key] == value, f"data.{key}: {data[key]!r} vs {value!r}"
    return (
        f"recorded session -> trickle-relay runner -> Python JSONLReader: {len(got_control)} control and "
        f"{len(got_telemetry)} telemetry events, values and order intact"
    )


async def read_sse(session, url, headers, want):
    """Reads a text/event-stream until `want(events)` holds; events are (id, name, data) tuples."""
    events = []
    async with session.get(url, headers=headers) as response:
        assert response.status == 200, f"SSE answered {response.status}"
        assert response.headers.get("Content-Type", "").startswith("text/event-stream")
        fields = {}
        async for raw in response.content:
            line = raw.decode("utf-8").rstrip("\n")
            if line == "":
                if "data" in fields:
                    events.append((int(fields.get("id", "0")), fields.get("event", "message"), fields["data"]))
                    if want(events):
                        return events
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
    return events


async def python_writer_to_client_sse(binary, base):
    """The SDK writes telemetry lines; `trickle-relay client` serves them as SSE, read here by aiohttp like a
    browser's EventSource would (token in ?jwt=), then resumed with Last-Event-ID."""
    url = f"{base}/sse-interop"
    await create_channel(base, "sse-interop")
    port = free_port()
    environment = dict(os.environ, TRICKLE_RELAY_STREAM_TOKEN="interop-token")
    client = await start(
        binary, "client", "--events-url", url, "--start", "0", "--sink", "null", "--listen", f"127.0.0.1:{port}",
        "--quiet", "--log-level", "warning", env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stream = f"http://127.0.0.1:{port}/telemetry/stream"
    sent = [
        {"id": f"sse-{n}", "type": "stream_trace", "timestamp": str(1763769600000 + n),
         "data": {"type": "metric", "n": n, "text": "caf\u00e9 \U0001F389", "ratio": n / 7}}
        for n in range(100)
    ]
    async with aiohttp.ClientSession() as session:
        await wait_healthy(session, port)
        async with session.get(stream) as response:
            assert response.status == 401, f"no token: expected 401, got {response.status}"
        writer = open_writer(url, segment_interval=0.1)

        async def write_all():
            await writer.write({"type": "runner_ready", "runner_job_id": "interop"})
            for event in sent:
                await writer.write({"type": "telemetry", "event": event})

        reading = asyncio.create_task(read_sse(
            session, f"{stream}?jwt=interop-token", {"Last-Event-ID": "0"},
            lambda events: sum(1 for e in events if e[1] == "telemetry") >= len(sent),
        ))
        await write_all()
        events = await asyncio.wait_for(reading, timeout=60)
        telemetry = [e for e in events if e[1] == "telemetry"]
        assert [json.loads(e[2]) for e in telemetry] == sent, "telemetry values or order differ"
        assert any(e[1] == "runner_ready" for e in events), "runner_ready was not streamed"
        resume_after = telemetry[49][0]
        resumed = await asyncio.wait_for(read_sse(
            session, stream, {"Authorization": "Bearer interop-token", "Last-Event-ID": str(resume_after)},
            lambda got: bool(got) and got[-1][0] == telemetry[-1][0],
        ), timeout=60)
        assert [e[0] for e in resumed] == [e[0] for e in telemetry[50:]], "Last-Event-ID did not resume exactly"
        await writer.close()
    _, err = await asyncio.wait_for(client.communicate(), timeout=60)
    assert client.returncode == 0, f"client exited {client.returncode}: {err.decode()}"
    assert "interop-token" not in err.decode(), "the token reached a log line"
    return (
        f"Python JSONLWriter -> trickle-relay client -> SSE (aiohttp, ?jwt=): {len(telemetry)}/{len(sent)} envelopes "
        f"equal in value and order, runner_ready streamed, Last-Event-ID resumed the last {len(resumed)}"
    )


async def sdk_reader_behind_deleted_channel(binary, base):
    """The SDK's reader, started behind what a deleted channel still holds (in serve's grace period), is pointed at
    the retained tail by a 470 and reads it to the end, instead of hearing a silent end of stream."""
    url = f"{base}/behind"
    await create_channel(base, "behind")
    async with aiohttp.ClientSession() as session:
        for n in range(8):
            async with session.post(f"{url}/{n}", data=json.dumps({"n": n}) + "\n") as response:
                assert response.status == 200, f"POST {n}: {response.status}"
        async with session.delete(url) as response:
            assert response.status == 200, f"DELETE: {response.status}"
    received = []
    async for event in JSONLReader(url)(start_seq=0):
        received.append(event)
    # A ring of 5: segments 0…2 were evicted before the DELETE, 3…7 are still held.
    assert [e["n"] for e in received] == [3, 4, 5, 6, 7], f"the SDK read {received}"
    return "SDK JSONLReader behind a deleted channel: 470 pointed it at the retained tail, read 3…7 then end of stream"


async def wait_healthy(session, port):
    """Waits until a process's local endpoint answers /healthz."""
    for _ in range(500):
        try:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing answered on port {port}")


async def scrape(session, url):
    async with session.get(url) as response:
        assert response.status == 200, f"{url}: {response.status}"
        return await response.text()


def families(text):
    """Parses a Prometheus text exposition with the reference Python parser (prometheus_client)."""
    from prometheus_client.parser import text_string_to_metric_families
    return {family.name: family for family in text_string_to_metric_families(text)}


async def metrics_parse_with_prometheus_client(binary, base):
    """Each process's /metrics (served by swift-prometheus) parses with prometheus_client, and the latency
    histograms are there with buckets, a count and a sum."""
    url = f"{base}/metrics-interop-events"
    await create_channel(base, "metrics-interop-events")
    runner_port, client_port = free_port(), free_port()
    environment = dict(os.environ, TRICKLE_RELAY_TELEMETRY="on")
    environment.pop("DO_NOT_TRACK", None)
    runner = await start(
        binary, "runner", "--listen", f"127.0.0.1:{runner_port}", "--segment-window", "1", "--log-level", "warning",
        env=environment, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    client = await start(
        binary, "client", "--events-url", url, "--start", "0", "--sink", "null", "--listen", f"127.0.0.1:{client_port}",
        "--quiet", "--log-level", "warning", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for port in (runner_port, client_port):
                await wait_healthy(session, port)
            api = f"http://127.0.0.1:{runner_port}"
            async with session.post(f"{api}/v1/sessions", json={"session_id": "m1", "events_url": url}) as response:
                assert response.status == 201, f"session: {response.status}"
            body = "\n".join(json.dumps({"type": "metric", "n": n}) for n in range(100))
            async with session.post(f"{api}/v1/sessions/m1/telemetry", data=body) as response:
                assert response.status == 202, f"telemetry: {response.status}"
            client_families = {}
            for _ in range(500):
                client_families = families(await scrape(session, f"http://127.0.0.1:{client_port}/metrics"))
                telemetry = client_families.get("trickle_relay_client_telemetry")
                if telemetry and telemetry.samples and telemetry.samples[0].value >= 100:
                    break
                await asyncio.sleep(0.02)
            runner_families = families(await scrape(session, f"{api}/metrics"))
            server_families = families(await scrape(session, f"{base}/metrics"))
        checks = [
            (runner_families, "trickle_relay_emit_to_relay_seconds"),
            (client_families, "trickle_relay_client_dispatch_to_sink_seconds"),
        ]
        for found, name in checks:
            family = found.get(name)
            assert family is not None and family.type == "histogram", f"{name} missing or not a histogram"
            count = [s.value for s in family.samples if s.name == name + "_count"]
            buckets = [s for s in family.samples if s.name == name + "_bucket"]
            assert count and count[0] > 0 and len(buckets) > 5, f"{name}: count {count}, {len(buckets)} buckets"
        assert runner_families["trickle_relay_telemetry_emitted"].samples[0].value >= 100, "runner counter"
        assert client_families["trickle_relay_client_telemetry"].samples[0].value >= 100, "client counter"
        assert "trickle_server_channels" in server_families, "server gauge"
        return (
            f"/metrics of serve ({len(server_families)} families), runner ({len(runner_families)}) and client "
            f"({len(client_families)}) parsed by prometheus_client; emit→relay and dispatch→sink histograms present"
        )
    finally:
        for process in (runner, client):
            if process.returncode is None:
                process.terminate()
                await process.wait()


async def serve_state(base, log_path):
    """What a failed check's server looked like: alive and answering, or not, and the tail of its log."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            async with session.get(f"{base}/healthz") as response:
                health = f"/healthz answered {response.status}"
    except Exception as error:
        health = f"/healthz did not answer ({error!r})"
    with open(log_path, "rb") as log:
        tail = log.read().decode("utf-8", "replace").splitlines()[-15:]
    return health + ("; its log ends:\n    " + "\n    ".join(tail) if tail else "; its log is empty")


async def stop_serve(server):
    """SIGTERM, then a bounded wait: returns an error text if it had to be killed."""
    if server.returncode is not None:
        return f"serve had exited with status {server.returncode}"
    server.terminate()
    try:
        await asyncio.wait_for(server.wait(), timeout=SERVE_EXIT_TIMEOUT)
    except asyncio.TimeoutError:
        server.kill()
        await server.wait()
        return f"serve did not exit within {SERVE_EXIT_TIMEOUT} s of SIGTERM"
    return ""


async def python_writes_swift_reads_over_tls(binary, base):
    """The SDK writes over HTTPS (trusting the test CA through SSL_CERT_FILE); `subscribe --ca-file` reads."""
    return "over TLS: " + await python_writes_swift_reads(binary, base)


async def swift_writes_python_reads_over_tls(binary, base):
    """`publish --ca-file` writes over HTTPS; the SDK reads (trusting the test CA through SSL_CERT_FILE)."""
    return "over TLS: " + await swift_writes_python_reads(binary, base)


TLS_CHECKS = (python_writes_swift_reads_over_tls, swift_writes_python_reads_over_tls)


async def attempt(check, binary):
    """Runs one check against a `trickle-relay serve` of its own (over TLS for the TLS checks); returns (passed, text)."""
    port = free_port()
    tls = check in TLS_CHECKS
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    SWIFT_TLS_ARGS[:] = ["--ca-file", TLS["ca"]] if tls else []
    tls_args = ["--tls-cert", TLS["cert"], "--tls-key", TLS["key"]] if tls else []
    log_path = os.path.join(tempfile.mkdtemp(prefix="trickle-interop-"), "serve.log")
    with open(log_path, "wb") as log:
        server = await asyncio.create_subprocess_exec(
            binary, "serve", "--port", str(port), "--log-level", "warning", *tls_args, stdout=log, stderr=log,
        )
    try:
        await wait_for_server(base)
        text = await asyncio.wait_for(check(binary, base), timeout=CHECK_TIMEOUT)
        passed = True
    except asyncio.TimeoutError:
        passed, text = False, f"did not finish within {CHECK_TIMEOUT} s"
    except Exception as error:
        passed, text = False, repr(error)
    if not passed:
        text += "\n  serve: " + await serve_state(base, log_path)
    note = await tidy_after_check()
    if note:
        text += f"\n  after it: {note}"
    stopped = await stop_serve(server)
    if stopped:
        passed, text = False, text + f"\n  {stopped}"
    return passed, text


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trickle-relay", required=True)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--ca-file")
    args = parser.parse_args()
    TLS.update(cert=args.tls_cert, key=args.tls_key, ca=args.ca_file)
    passed = failed = 0
    for check in (
        python_writes_swift_reads, swift_writes_python_reads, recorded_session_through_runner, python_writer_to_client_sse,
        metrics_parse_with_prometheus_client, sdk_reader_behind_deleted_channel,
    ) + (TLS_CHECKS if args.tls_cert else ()):
        ok, text = await attempt(check, args.trickle_relay)
        if not ok:
            # One more try on a fresh server, so that one bad scheduling moment on a loaded 2-core machine does not
            # sink the run; the first failure is printed in full either way, and a second failure fails the run.
            print(f"RETRY {check.__name__}: {text}", flush=True)
            ok, text = await attempt(check, args.trickle_relay)
        if ok:
            print(f"PASS {text}", flush=True)
            passed += 1
        else:
            print(f"FAIL {check.__name__}: {text}", flush=True)
            failed += 1
    print(f"interop: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
