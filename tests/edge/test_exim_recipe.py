"""End to end: the README's Exim recipe, run by a real Exim against our policy service (exim mode).

The ACL is taken verbatim from ``edge/README.md`` (only the socket path is replaced), so the
documented recipe is the tested one. Exim runs in host-checking mode (``exim -bh``: a real SMTP
session with the real ACLs and ``${readsocket}``, nothing delivered); the policy service reads
verdicts published to the session's broker. The client must see the verdict's reply line verbatim
at the end of DATA, 250 without a verdict, and 250 when the policy service is down (fail open).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from processors.devservices.exim import EximHostCheck
from tests.edge.helpers import BLOCK, THROTTLE, verdict_bytes
from tests.edge.kafka_helpers import create_topic, produce
from tests.edge.test_postfix_e2e import EdgeProcess

pytestmark = pytest.mark.e2e

README = Path(__file__).parents[2] / "edge" / "README.md"
DOCUMENTED_SOCKET = "/run/patchgate/policy-exim.sock"
CONFIG = """
[edge]
name = "edge-exim"

[[connector]]
id = "contoso-onprem"
tenant_id = "contoso"
type = "OnPremises"
client_ips = ["192.0.2.0/25"]
"""


def documented_acl() -> str:
    """The ``acl_check_data`` block of the README's Exim section."""
    section = README.read_text().split("## Exim", 1)[1]
    block = re.search(r"```\n(acl_check_data:.*?)```", section, re.DOTALL)
    assert block is not None, "edge/README.md lost its Exim ACL block"
    assert DOCUMENTED_SOCKET in block.group(1)
    return block.group(1)


def transaction(helo: str) -> list[str]:
    return [f"EHLO {helo}", "MAIL FROM:<alice@contoso.com>", "RCPT TO:<bob@example.net>", "DATA",
            "Subject: exim recipe", "", "Hello.", ".", "QUIT"]


def end_of_data_reply(replies: list[str]) -> str:
    """The reply to the final dot (the one after DATA's 354), its continuation lines joined.

    Exim splits a long ACL message into lines of about 75 characters, repeating the code and the
    enhanced status on each (``450-4.7.230 ...``); the client sees the whole text across them.
    """
    index = next(i for i, line in enumerate(replies) if line.startswith("354")) + 1
    lines = []
    for line in replies[index:]:
        lines.append(line)
        if line[3:4] != "-":
            break
    code = lines[0][:3]
    status = lines[0][4:].split(" ", 1)[0] if lines[0][4:5].isdigit() else ""
    words = []
    for line in lines:
        assert line[:3] == code, lines
        text = line[4:]
        if status and text.startswith(status):
            text = text[len(status):]
        words.append(text.strip())
    return " ".join(filter(None, [code, status, *words]))


@pytest.fixture
def policy(tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str]) -> Iterator[Path]:
    topic = unique_name("verdicts")
    create_topic(kafka_bootstrap, topic, partitions=2, compact=True)
    produce(kafka_bootstrap, topic, [
        ("contoso/ex01.contoso.com", verdict_bytes(server_key="contoso/ex01.contoso.com", stage=4, throttle=60)),
        ("contoso/ex02.contoso.com", verdict_bytes(server_key="contoso/ex02.contoso.com", stage=8, throttle=0,
                                                   block=60)),
    ])
    config = tmp_path / "edge.toml"
    config.write_text(CONFIG)
    # Exim runs its ACLs as its own user: the socket's directory must be reachable by it (pytest's
    # tmp_path is not), as /run/patchgate must be for Debian-exim in production, and the socket
    # (0660) belongs to its group (this test's Exim runs as nobody:nogroup, see devservices.exim)
    sockets = Path(tempfile.mkdtemp(prefix="patchgate-exim-sockets-"))
    sockets.chmod(0o755)
    sock = sockets / "policy-exim.sock"
    process = EdgeProcess(["--mode", "exim", "--listen", f"unix:{sock}", "--socket-group", "nogroup",
                           "--config", str(config),
                           "--bootstrap", kafka_bootstrap, "--verdicts-topic", topic, "--catchup-timeout", "20",
                           "--metrics-interval", "3600"], tmp_path / "policy.log", command="policy")
    try:
        assert "caught_up=True" in process.wait_ready()
        yield sock
    finally:
        process.stop()
        shutil.rmtree(sockets, ignore_errors=True)


def test_documented_exim_recipe_applies_verdicts(policy: Path) -> None:
    exim = EximHostCheck(documented_acl().replace(DOCUMENTED_SOCKET, str(policy)))
    try:
        # ex01 is throttled all hour: Exim defers with the verdict's line, code and text verbatim.
        assert end_of_data_reply(exim.session("192.0.2.10", transaction("ex01.contoso.com"))) == THROTTLE.format(n=60)
        # ex02 is blocked all hour: 550 5.7.230.
        assert end_of_data_reply(exim.session("192.0.2.10", transaction("ex02.contoso.com"))) == BLOCK.format(n=60)
        # no verdict for ex03, and a client no connector covers: accepted.
        assert end_of_data_reply(exim.session("192.0.2.10", transaction("ex03.contoso.com"))).startswith("250 ")
        assert end_of_data_reply(exim.session("198.51.100.7", transaction("ex01.contoso.com"))).startswith("250 ")
    finally:
        exim.cleanup()


def test_documented_exim_recipe_fails_open_without_the_service(tmp_path: Path) -> None:
    exim = EximHostCheck(documented_acl().replace(DOCUMENTED_SOCKET, str(tmp_path / "nobody-listens.sock")))
    try:
        assert end_of_data_reply(exim.session("192.0.2.10", transaction("ex01.contoso.com"))).startswith("250 ")
    finally:
        exim.cleanup()
