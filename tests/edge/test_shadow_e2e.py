"""Shadow mode end to end, with real Postfix, the real worker and the real broker.

A server of tenant contoso, shadowed in the policy file, was first seen with an out-of-support build
91 days ago: the worker walks it to stage 8 (blocked 60 min/hr) and publishes shadowed verdicts and
notifications. Its mail through Postfix and the edge milter is accepted (250) while the edge's
``patchgate_edge_shadow_replies_total{code="550"}`` rises. Then the policy file is replaced without
contoso's shadow mode: the worker holding the timer re-publishes the server's verdict without
``shadow`` (no new mail needed), the edge follows it, and the next message gets ``550 5.7.230``.
Every step is awaited by polling for its event (a verdict on the topic, a counter at the edge).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest

from processors.devservices import free_port
from processors.devservices.postfix import PostfixInstance
from processors.devservices.worker_process import WorkerProcess
from processors.replay.driver import ReplayDriver
from tests.edge.test_postfix_e2e import CONFIG, EdgeProcess, message, metric, send
from tests.worker.factories import metadata_event
from tests.worker.harness import isolated_settings, read_topic

pytestmark = pytest.mark.e2e

SERVER_KEY = "contoso/ex08.contoso.com"
OLD = "15.1.2507.6"  # Exchange 2016 CU23 without updates: out of support
BLOCKED = ("5.7.230 Connecting Exchange server version is out-of-date; connection to patchgate blocked for "
           "60 mins/hr.")
SHADOW_550 = 'patchgate_edge_shadow_replies_total{code="550"}'
APPLIED = 'patchgate_edge_events_total{component="cache",counter="verdicts_applied"}'


def write_policy(path: Path, *, contoso_shadowed: bool) -> None:
    text = resources.files("processors").joinpath("data/policy.toml").read_text()
    if contoso_shadowed:
        text = text.replace("# contoso = true\n", "contoso = true\n")
    staged = path.with_suffix(".new")
    staged.write_text(text)
    os.replace(staged, path)  # atomically, as an operator (or the kubelet) does


def poll(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """``check()`` until it returns something true; the event itself is what we wait for."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)  # polling interval of a topic or a metrics page


def test_a_shadowed_stage_8_server_is_accepted_until_shadow_mode_is_switched_off(
        tmp_path: Path, kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> None:
    policy = tmp_path / "policy.toml"
    write_policy(policy, contoso_shadowed=True)
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name, policy_file=policy)
    worker = WorkerProcess(settings)
    worker.start()
    driver = ReplayDriver(settings, step_timeout=90)
    postfix = PostfixInstance("placeholder")
    milter: EdgeProcess | None = None

    def verdicts() -> list[dict[str, Any]]:
        return [v for k, v in read_topic(kafka_bootstrap, settings.topic_verdicts) if k == SERVER_KEY.encode()]

    try:
        first_seen = datetime.now(UTC) - timedelta(days=91)
        driver.set_clock(first_seen.timestamp())
        event = metadata_event("first", first_seen, server="ex08.contoso.com", build=OLD, ip="127.0.0.1")
        driver.send([(settings.topic_metadata, SERVER_KEY.encode(), orjson.dumps(event))])
        driver.set_clock(time.time())  # the timer walks the server through the stages to today's
        shadowed = poll("the stage 8 verdict", lambda: [v for v in verdicts() if v["stage"] == 8])[-1]
        assert (shadowed["block_minutes"], shadowed["shadow"]) == (60, True)
        assert all(v.get("shadow") is True for v in verdicts())
        notices = [n for _, n in read_topic(kafka_bootstrap, settings.topic_notifications)]
        assert {n["kind"] for n in notices} >= {"detected", "stage_started"}
        assert all(n.get("shadow") is True for n in notices)

        sock = postfix.dir / "milter.sock"
        postfix.milters = f"{{ unix:{sock}, default_action=accept }}"
        config = postfix.dir / "edge.toml"
        config.write_text(CONFIG)
        port = free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        milter = EdgeProcess(["--config", str(config), "--listen", f"unix:{sock}", "--socket-group", "postfix",
                              "--bootstrap", kafka_bootstrap, "--verdicts-topic", settings.topic_verdicts,
                              "--metadata-topic", settings.topic_metadata, "--catchup-timeout", "20",
                              "--metrics-interval", "3600", "--metrics-port", str(port)],
                             postfix.dir / "milter.log")
        assert "caught_up=True" in milter.wait_ready()
        postfix.start()

        code, _ = send(postfix.port, message("EX08.contoso.com", OLD, "shadowed"), helo="ex08.contoso.com")
        assert code == 250
        assert metric(url, SHADOW_550) == 1.0  # counted before the reply went out
        assert metric(url, 'patchgate_edge_events_total{component="milter",counter="blocked"}') == 0.0
        log = (postfix.dir / "milter.log").read_text()
        assert "shadow mode: accepted instead of replying '550 5.7.230 " in log
        assert "(tenant contoso, server ex08.contoso.com, client 127.0.0.1" in log

        applied = metric(url, APPLIED)
        write_policy(policy, contoso_shadowed=False)
        enforced = poll("the verdict without shadow", lambda: [v for v in verdicts()
                                                               if v["sequence"] > shadowed["sequence"]])[-1]
        assert "shadow" not in enforced and (enforced["stage"], enforced["block_minutes"]) == (8, 60)
        poll("the edge applying it", lambda: metric(url, APPLIED) > applied)

        code, text = send(postfix.port, message("EX08.contoso.com", OLD, "enforced"), helo="ex08.contoso.com")
        assert (code, text.decode()) == (550, BLOCKED)
        assert metric(url, SHADOW_550) == 1.0
        assert metric(url, 'patchgate_edge_events_total{component="milter",counter="blocked"}') == 1.0
    finally:
        if milter is not None:
            milter.stop()
            print((postfix.dir / "milter.log").read_text(errors="replace")[-5000:])
        print(postfix.log_tail())
        print(worker.log_tail(40))
        postfix.cleanup()
        driver.close()
        worker.stop()
