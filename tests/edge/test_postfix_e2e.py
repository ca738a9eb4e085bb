"""End to end: real Postfix -> our milter process (``edge milter`` CLI) <- verdicts on a real broker.

Verdicts are published to the session's Kafka-protocol broker before the milter starts; the milter
process reads them, Postfix calls it for every message, and the SMTP client must see exactly the
verdict's reply line (450 4.7.230 / 550 5.7.230) or 250. Metadata must arrive on the metadata topic.
Finally the milter is killed and mail must still flow (milter_default_action = accept).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.milter.codec import ACCEPT_PACKET
from edge.milter.server import AcceptAll, MilterServer, Session
from processors.devservices import free_port
from processors.devservices.postfix import PostfixInstance
from tests.edge.helpers import BLOCK, THROTTLE, exchange_received, verdict_bytes
from tests.edge.kafka_helpers import create_topic, produce, read_all

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]

CONFIG = """
[edge]
name = "edge-e2e"

[[connector]]
id = "contoso-onprem"
tenant_id = "contoso"
type = "OnPremises"
client_ips = ["127.0.0.1/32"]

[[connector]]
id = "contoso-partner"
tenant_id = "contoso"
type = "Partner"
client_ips = ["127.0.0.3/32"]
"""


def message(by: str, build: str, subject: str) -> bytes:
    msg = EmailMessage()
    msg["Received"] = exchange_received(by=by, build=build)
    msg["From"] = "Alice <alice@contoso.com>"
    msg["To"] = "bob@example.net"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@contoso.com>"
    msg["X-MS-Exchange-Organization-AuthSource"] = by
    msg.set_content("Hello from an on-premises Exchange server.\n")
    return msg.as_bytes().replace(b"\n", b"\r\n")


def send(port: int, data: bytes, *, source: str = "127.0.0.1", helo: str = "ex01.contoso.com") -> tuple[int, bytes]:
    """One SMTP transaction; returns the reply to the end of DATA exactly as the client saw it."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as smtp:
        smtp.ehlo(helo)
        code, _ = smtp.mail("alice@contoso.com")
        assert code == 250
        code, _ = smtp.rcpt("bob@example.net")
        assert code == 250
        return smtp.data(data)


class EdgeProcess:
    """``patchgate edge <command>`` as a child process; ``wait_ready`` returns its ready line."""

    def __init__(self, args: list[str], log: Path, command: str = "milter",
                 env: Mapping[str, str] | None = None) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "edge", command, *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=log.open("wb"), text=True, env={**os.environ, **(env or {})},
        )

    def wait_ready(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until the ready line or the process exits
        if "ready" not in line:
            self.proc.wait(5)
            raise AssertionError(f"milter did not start (rc={self.proc.returncode}):\n{self.log.read_text()}")
        return line

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def topics(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> dict[str, str]:
    names = {"verdicts": unique_name("verdicts"), "metadata": unique_name("metadata")}
    create_topic(kafka_bootstrap, names["verdicts"], partitions=2, compact=True)
    create_topic(kafka_bootstrap, names["metadata"], partitions=2)
    return names


@contextlib.contextmanager
def running_stack(kafka_bootstrap: str, topics: dict[str, str], *, policy: bool = False) -> Iterator[dict[str, Any]]:
    since = time.time() - 3600  # effective an hour ago, by the real clock Postfix runs on
    produce(kafka_bootstrap, topics["verdicts"], [
        ("contoso/ex01.contoso.com", verdict_bytes(server_key="contoso/ex01.contoso.com", stage=4, throttle=60,
                                                   effective_at=since)),
        ("contoso/ex02.contoso.com", verdict_bytes(server_key="contoso/ex02.contoso.com", stage=8, throttle=0,
                                                   block=60, effective_at=since)),
    ])
    postfix: PostfixInstance | None = None
    milter: EdgeProcess | None = None
    try:
        postfix = PostfixInstance("placeholder")
        sock = postfix.dir / "milter.sock"
        policy_sock = postfix.dir / "policy.sock"
        postfix.milters = f"{{ unix:{sock}, default_action=accept }}"
        if policy:
            postfix.extra["smtpd_recipient_restrictions"] = (
                f"check_policy_service {{ unix:{policy_sock}, timeout=2s, default_action=DUNNO }}, "
                "permit_mynetworks, reject_unauth_destination")
        config = postfix.dir / "edge.toml"
        config.write_text(CONFIG)
        metrics_port = free_port()
        args = ["--config", str(config), "--listen", f"unix:{sock}", "--socket-group", "postfix",
                "--bootstrap", kafka_bootstrap,
                "--verdicts-topic", topics["verdicts"], "--metadata-topic", topics["metadata"],
                "--catchup-timeout", "20", "--metrics-interval", "3600", "--metrics-port", str(metrics_port)]
        if policy:
            args += ["--policy-listen", f"unix:{policy_sock}"]
        milter = EdgeProcess(args, postfix.dir / "milter.log")
        ready = milter.wait_ready()
        assert "caught_up=True" in ready, ready
        postfix.start()
        yield {"postfix": postfix, "milter": milter, "topics": topics,
               "metrics_url": f"http://127.0.0.1:{metrics_port}/metrics"}
    finally:
        if milter is not None:
            milter.stop()
        if postfix is not None:
            print(postfix.log_tail())
            milter_log = postfix.dir / "milter.log"
            if milter_log.exists():
                print(milter_log.read_text(errors="replace")[-5000:])
            postfix.cleanup()


@pytest.fixture
def stack(kafka_bootstrap: str, topics: dict[str, str]) -> Iterator[dict[str, Any]]:
    with running_stack(kafka_bootstrap, topics) as s:
        yield s


def test_postfix_applies_verdicts_through_the_milter(stack: dict[str, Any], kafka_bootstrap: str) -> None:
    port = stack["postfix"].port
    old = "15.1.2507.6"  # Exchange 2016 CU23, out of support

    # ex01: throttled all hour -> the exact 450 line, verbatim (no Postfix prefix).
    code, text = send(port, message("EX01.contoso.com", old, "throttle me"))
    assert (code, text.decode()) == (450, THROTTLE.format(n=60)[4:])

    # ex02: stage 8 -> 550.
    code, text = send(port, message("EX02.contoso.com", old, "block me"), helo="ex02.contoso.com")
    assert (code, text.decode()) == (550, BLOCK.format(n=60)[4:])

    # ex03: no verdict -> accepted.
    code, text = send(port, message("EX03.contoso.com", old, "no verdict"), helo="ex03.contoso.com")
    assert code == 250 and text.startswith(b"2.0.0 Ok: queued as ")
    queue_id = text.split()[-1].decode()

    # ex01 after patching: the message's own header shows a current build -> accepted at once.
    code, _ = send(port, message("EX01.contoso.com", "15.2.2562.53", "patched"))
    assert code == 250

    # The same blocked server over a Partner connector (other client IP) -> never enforced.
    code, _ = send(port, message("EX02.contoso.com", old, "via partner"), source="127.0.0.3",
                   helo="ex02.contoso.com")
    assert code == 250

    # Unmatched client IP (no connector) -> accepted, not published.
    code, _ = send(port, message("EX02.contoso.com", old, "unknown client"), source="127.0.0.2")
    assert code == 250

    # Metadata: one record per classified message (5: all but the unmatched client), keyed by server.
    def count(got: list[tuple[Any, Any]]) -> bool:
        return sum(len(orjson.loads(v)["records"]) for _, v in got) >= 5

    envelopes = read_all(kafka_bootstrap, stack["topics"]["metadata"], until=count, timeout=30)
    records: list[tuple[str, dict[str, Any]]] = []
    for key, value in envelopes:
        assert value is not None
        env = orjson.loads(value)
        assert env["schema"] == "patchgate.metadata-batch/1" and key == env["server_key"].encode()
        records.extend((env["server_key"], r) for r in env["records"])
    by_subject = {next(v for n, v in r["headers"] if n == "Subject"): (k, r) for k, r in records}
    assert set(by_subject) == {"throttle me", "block me", "no verdict", "patched", "via partner"}
    server_key, rec = by_subject["throttle me"]
    assert server_key == "contoso/ex01.contoso.com"
    assert rec["edge"] == "edge-e2e" and rec["tenant_id"] == "contoso"
    assert rec["connector"] == {"id": "contoso-onprem", "type": "OnPremises"}
    assert rec["client"]["ip"] == "127.0.0.1" and rec["client"]["helo"] == "ex01.contoso.com"
    assert rec["message"]["id"] == "<throttle-me@contoso.com>" and rec["message"]["recipients"] == 1
    assert rec["event_id"].startswith("edge-e2e:")
    # The top header is the client's Received: Postfix does not pass the one it prepends to milters.
    assert rec["headers"][0][0] == "Received" and "id 15.1.2507.6" in rec["headers"][0][1]
    assert "(Postfix)" not in rec["headers"][0][1]
    assert by_subject["via partner"][1]["connector"]["type"] == "Partner"
    # the milter asks Postfix for its own short macro lists: the queue id still arrives at EOH
    assert by_subject["no verdict"][1]["event_id"] == f"edge-e2e:{queue_id}"
    # The unmatched client was let go at CONNECT: Postfix never sent its message to the milter.
    with urllib.request.urlopen(stack["metrics_url"], timeout=10) as response:
        exported = response.read().decode()
    for counter, times in [("skipped_connections", 1), ("messages", 5), ("unmatched", 0), ("throttled", 1),
                           ("blocked", 1), ("out_of_scope", 1), ("accepted_current_build", 1)]:
        assert f'patchgate_edge_events_total{{component="milter",counter="{counter}"}} {times}.0' in exported
    assert f'patchgate_edge_cache_caught_up{{topic="{stack["topics"]["verdicts"]}"}} 1.0' in exported


def test_mail_flows_when_the_milter_is_killed(stack: dict[str, Any]) -> None:
    port = stack["postfix"].port
    code, _ = send(port, message("EX02.contoso.com", "15.1.2507.6", "blocked"), helo="ex02.contoso.com")
    assert code == 550
    stack["milter"].kill()
    code, text = send(port, message("EX02.contoso.com", "15.1.2507.6", "milter down"), helo="ex02.contoso.com")
    assert code == 250, text
    assert "Milter service" in stack["postfix"].log_tail()  # Postfix logs the failed milter connection


def test_policy_service_through_postfix(kafka_bootstrap: str, topics: dict[str, str]) -> None:
    """check_policy_service keyed by <tenant>/<HELO>: Postfix prefixes the text, keeps the codes."""
    with running_stack(kafka_bootstrap, topics, policy=True) as s:
        port = s["postfix"].port
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo("ex01.contoso.com")
            assert smtp.mail("alice@contoso.com")[0] == 250
            code, text = smtp.rcpt("bob@example.net")
        assert code == 450
        assert text.decode() == ("4.7.230 <bob@example.net>: Recipient address rejected: "
                                 + THROTTLE.format(n=60)[12:])
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo("ex02.contoso.com")
            smtp.mail("alice@contoso.com")
            code, text = smtp.rcpt("bob@example.net")
        assert code == 550 and text.startswith(b"5.7.230 <bob@example.net>: Recipient address rejected: ")
        # Unknown HELO and the Partner connector: DUNNO, mail accepted.
        code, _ = send(port, message("EX03.contoso.com", "15.1.2507.6", "policy dunno"), helo="ex03.contoso.com")
        assert code == 250
        code, _ = send(port, message("EX03.contoso.com", "15.2.2562.53", "partner"), source="127.0.0.3",
                       helo="ex02.contoso.com")
        assert code == 250


def send_raw(port: int, helo: bytes, data: bytes) -> bytes:
    """One SMTP transaction with arbitrary bytes in HELO and the message; the reply to the final dot."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn, conn.makefile("rb") as replies:
        def reply() -> bytes:
            line = replies.readline()
            while line[3:4] == b"-":
                line = replies.readline()
            return line.rstrip()
        reply()  # banner
        for command in (b"EHLO " + helo, b"MAIL FROM:<alice@contoso.com>", b"RCPT TO:<bob@example.net>", b"DATA"):
            conn.sendall(command + b"\r\n")
            assert reply()[:1] in (b"2", b"3"), command
        conn.sendall(data + b"\r\n.\r\n")
        final = reply()
        conn.sendall(b"QUIT\r\n")
        return final


def raw_message(subject: str, received_by: bytes | None) -> bytes:
    lines = [b"From: Alice <alice@contoso.com>", b"To: bob@example.net", b"Subject: " + subject.encode(),
             b"Message-ID: <" + subject.replace(" ", "-").encode() + b"@contoso.com>"]
    if received_by is not None:
        lines.insert(0, b"Received: from EX02.contoso.com (10.0.0.6) by " + received_by
                     + b" (10.0.0.5) with Microsoft SMTP Server id 15.1.2507.6; Sat, 28 Nov 2026 10:00:00 +0000")
    return b"\r\n".join([*lines, b"", b"Hello."])


def metric(url: str, pattern: str) -> float:
    with urllib.request.urlopen(url, timeout=10) as response:
        found = re.search(r"^" + re.escape(pattern) + r" (\S+)$", response.read().decode(), re.MULTILINE)
    assert found is not None, pattern
    return float(found.group(1))


def test_a_0xff_byte_in_helo_or_received_by_does_not_stop_publishing(stack: dict[str, Any],
                                                                       kafka_bootstrap: str) -> None:
    """Through real Postfix: bytes that are not UTF-8 reach the milter; the publisher drops those
    records (counted by reason) and goes on publishing the next message."""
    port, url = stack["postfix"].port, stack["metrics_url"]
    assert send_raw(port, b"ex\xff01.contoso.com", raw_message("bad by host", b"EX\xff01.contoso.com"))[:3] == b"250"
    assert send_raw(port, b"ex\xff09.contoso.com", raw_message("bad helo", None))[:3] == b"250"
    code, _ = send(port, message("EX03.contoso.com", "15.1.2507.6", "after the bad bytes"), helo="ex03.contoso.com")
    assert code == 250

    def published(got: list[tuple[Any, Any]]) -> bool:
        return any(next((v for n, v in r["headers"] if n == "Subject"), None) == "after the bad bytes"
                   for _, value in got for r in orjson.loads(value or b"{}").get("records", []))
    envelopes = read_all(kafka_bootstrap, stack["topics"]["metadata"], until=published, timeout=30)
    assert published(envelopes)
    for _, value in envelopes:
        assert value is not None
        for record in orjson.loads(value)["records"]:
            assert "\udcff" not in orjson.dumps(record).decode()
    dropped = metric(url, 'patchgate_edge_events_total{component="publisher",counter="records_dropped_bad_key"}')
    assert dropped == 2.0
    assert metric(url, 'patchgate_edge_thread_alive{thread="publisher"}') == 1.0
    assert metric(url, 'patchgate_edge_thread_restarts_total{thread="publisher"}') == 0.0
    assert metric(url, 'patchgate_edge_thread_alive{thread="verdict-follower"}') == 1.0


class RecordingMilter(AcceptAll):
    """Keeps the headers each message showed the milter at end-of-headers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, list[tuple[str, str]]]] = []

    def end_of_headers(self, session: Session) -> bytes:
        self.seen.append((session.macros.get("j"), list(session.headers)))
        return ACCEPT_PACKET


def test_postfix_does_not_pass_its_own_received_header_to_milters() -> None:
    """smtpd_milters see the headers the client sent (plus those cleanup adds, e.g. Date), not the
    Received header Postfix prepends; the edge's strip of a Received header of its own host is for
    MTAs that do pass it (Sendmail)."""
    app = RecordingMilter()
    postfix = PostfixInstance("placeholder")
    sock = postfix.dir / "recording.sock"
    postfix.milters = f"{{ unix:{sock}, default_action=accept }}"
    loop = asyncio.new_event_loop()
    server = MilterServer(app)
    loop.run_until_complete(server.listen_unix(sock, group="postfix"))
    serving = threading.Thread(target=loop.run_forever, daemon=True)
    serving.start()
    try:
        postfix.start()
        client_received = "from EX02.contoso.com by ex01.contoso.com; Sat, 28 Nov 2026 10:00:00 +0000"
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
            smtp.ehlo("ex01.contoso.com")
            smtp.sendmail("alice@contoso.com", ["bob@example.net"],
                          f"Received: {client_received}\r\nSubject: probe\r\n\r\nHello.\r\n".encode())
        [(own_host, headers)] = app.seen
        assert own_host == "edge.patchgate.test"
        assert headers[0] == ("Received", client_received)
        assert [v for n, v in headers if n == "Received"] == [client_received]
        assert not any(own_host in v for n, v in headers if n == "Received")
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        serving.join(10)
        loop.close()
        postfix.cleanup()
