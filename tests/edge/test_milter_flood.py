"""200k HEADER packets without reading replies against the real ``patchgate edge milter`` process.

The client negotiates like a legacy MTA (every header is answered), then writes 200,000 headers in
one message and reads nothing. The process must stop reading (its unwritten replies reach the
high-water mark), keep its memory flat (``VmRSS`` from ``/proc``) and store at most ``max_headers``
of the message; once the client reads its replies the same session completes correctly.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.milter.codec import (
    CONTINUE_PACKET,
    SMFIC_EOH,
    SMFIC_HEADER,
    SMFIC_HELO,
    SMFIC_MAIL,
    SMFIR_ACCEPT,
    SMFIR_CONTINUE,
    encode_connect,
    encode_optneg,
    encode_packet,
    encode_strings,
)
from processors.devservices import free_port
from tests.edge.test_postfix_e2e import EdgeProcess

pytestmark = pytest.mark.integration

HEADERS = 200_000
MAX_RSS_GROWTH_KB = 20 * 1024  # storing the flood would take ~40 MB; replies another 1 MB
CONFIG = '[[connector]]\nid = "c"\ntenant_id = "contoso"\ntype = "OnPremises"\nclient_ips = ["192.0.2.0/24"]\n'


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def counter(metrics_url: str, component: str, name: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    pattern = rf'^patchgate_edge_events_total{{component="{component}",counter="{name}"}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.02)


def read_packet(sock: socket.socket) -> tuple[bytes, bytes]:
    head = recv_exactly(sock, 4)
    body = recv_exactly(sock, struct.unpack(">I", head)[0])
    return body[:1], body[1:]


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "milter closed the connection"
        data += chunk
    return bytes(data)


@pytest.fixture
def milter(tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str]) -> Iterator[dict[str, object]]:
    config = tmp_path / "edge.toml"
    config.write_text(CONFIG)
    sock = tmp_path / "milter.sock"
    port = free_port()
    process = EdgeProcess(["--config", str(config), "--listen", f"unix:{sock}", "--bootstrap", kafka_bootstrap,
                           "--verdicts-topic", unique_name("verdicts"), "--catchup-timeout", "20", "--no-publish",
                           "--metrics-port", str(port), "--metrics-interval", "3600"], tmp_path / "milter.log")
    try:
        process.wait_ready()
        yield {"sock": sock, "pid": process.proc.pid, "metrics": f"http://127.0.0.1:{port}/metrics"}
    finally:
        process.stop()


def test_flood_without_reading_replies_keeps_the_milter_bounded(milter: dict[str, object]) -> None:
    pid, url = int(str(milter["pid"])), str(milter["metrics"])
    client = socket.socket(socket.AF_UNIX)
    client.connect(str(milter["sock"]))
    client.sendall(encode_optneg(6, 0x1FF, 0))  # legacy MTA: no "no reply" flags, every header answered
    assert read_packet(client)[0] == b"O"
    client.sendall(encode_connect("ex01.contoso.com", "4", 25, "192.0.2.10"))
    assert read_packet(client)[0] == SMFIR_CONTINUE
    for command, packet in ((SMFIC_HELO, encode_strings(SMFIC_HELO, "ex01.contoso.com")),
                            (SMFIC_MAIL, encode_strings(SMFIC_MAIL, "<a@contoso.com>"))):
        client.sendall(packet)
        assert read_packet(client) == (SMFIR_CONTINUE, b""), command
    before = rss_kb(pid)

    header = encode_strings(SMFIC_HEADER, "X-Flood", "x" * 40)
    writer = threading.Thread(target=client.sendall, args=(header * HEADERS,), daemon=True)
    writer.start()
    wait_for(lambda: counter(url, "milter_listener", "reads_paused") >= 1)
    assert writer.is_alive()  # the client is stalled by the milter's backpressure
    paused_growth = rss_kb(pid) - before
    assert paused_growth < MAX_RSS_GROWTH_KB, f"milter grew {paused_growth} kB while not being read"

    # now read the replies: the milter resumes and answers every header of the message
    assert recv_exactly(client, len(CONTINUE_PACKET) * HEADERS) == CONTINUE_PACKET * HEADERS
    writer.join(30)
    assert not writer.is_alive()
    client.sendall(encode_packet(SMFIC_EOH))
    assert read_packet(client) == (SMFIR_ACCEPT, b"")  # no verdict: the session is still correct
    growth = rss_kb(pid) - before
    assert growth < MAX_RSS_GROWTH_KB, f"milter grew {growth} kB over the flood"
    assert counter(url, "server", "headers_dropped") == HEADERS - 1000
    assert counter(url, "server", "protocol_errors") == 0
    client.close()
    print(f"flood of {HEADERS} headers: RSS +{paused_growth} kB while paused, +{growth} kB after")
