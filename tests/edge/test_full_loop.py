"""The full loop: Postfix → milter → metadata → real worker → verdict → the milter throttles the next
message from the same server, once its stage enforces on the scenario clock.

The processor runs on the scenario clock (PATCHGATE_CLOCK=redis) with a policy whose second stage
throttles 60 min/hr from day 1; the scenario clock is moved two days on, and the edge is restarted
with its clock moved by the same amount (PATCHGATE_EDGE_CLOCK_OFFSET_S), so both live in the same
scenario time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest

from processors.devservices.postfix import PostfixInstance
from processors.devservices.worker_process import WorkerProcess
from processors.replay.driver import ReplayDriver
from tests.edge.test_postfix_e2e import CONFIG, EdgeProcess, message, send
from tests.worker.harness import isolated_settings, read_topic

pytestmark = pytest.mark.e2e

FAST_STAGES = """
[[enforcement.stages]]
stage = 1
start_day = 0
throttle_minutes = 0
block_minutes = 0

[[enforcement.stages]]
stage = 2
start_day = 1
throttle_minutes = 60
block_minutes = 0
"""


def fast_policy(folder: Path) -> Path:
    text = resources.files("processors").joinpath("data/policy.toml").read_text()
    text = re.sub(r"\[\[enforcement\.stages\]\].*?(?=\n# -+\n# *pauses|\n\[pauses\])", FAST_STAGES.strip() + "\n",
                  text, flags=re.S)
    path = folder / "policy.toml"
    path.write_text(text)
    return path


def test_unpatched_server_is_throttled_once_its_stage_enforces(
        tmp_path: Path, kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name, policy_file=fast_policy(tmp_path))
    worker = WorkerProcess(settings)
    worker.start()
    driver = ReplayDriver(settings, step_timeout=90)
    postfix = PostfixInstance("placeholder")
    sock = postfix.dir / "milter.sock"
    postfix.milters = f"{{ unix:{sock}, default_action=accept }}"
    config = postfix.dir / "edge.toml"
    config.write_text(CONFIG)
    args = ["--config", str(config), "--listen", f"unix:{sock}", "--socket-group", "postfix",
            "--bootstrap", kafka_bootstrap,
            "--verdicts-topic", settings.topic_verdicts, "--metadata-topic", settings.topic_metadata,
            "--catchup-timeout", "20", "--metrics-interval", "3600"]
    milter = EdgeProcess(args, postfix.dir / "milter.log")
    try:
        now = time.time()
        driver.set_clock(now)  # the scenario starts now; the worker's timer is running
        milter.wait_ready()
        postfix.start()
        old = "15.1.2507.6"  # Exchange 2016 CU23: out of support

        code, _ = send(postfix.port, message("EX07.contoso.com", old, "first"), helo="ex07.contoso.com")
        assert code == 250  # detected now: stage 1 reports only

        def verdicts() -> list[dict[str, object]]:
            return [v for _, v in read_topic(kafka_bootstrap, settings.topic_verdicts)]

        deadline = time.monotonic() + 60
        while not verdicts():
            assert time.monotonic() < deadline, "the worker published no verdict for the first message"
            time.sleep(0.2)  # polling the topic
        first = verdicts()[0]
        assert first["server_key"] == "contoso/ex07.contoso.com" and first["stage"] == 1

        two_days = 2 * 86400
        driver.set_clock(now + two_days)  # the timer starts stage 2 (throttle 60 min/hr) on day 1
        latest = verdicts()[-1]
        assert latest["stage"] == 2 and latest["throttle_minutes"] == 60

        milter.stop()
        monkeypatch.setenv("PATCHGATE_EDGE_CLOCK_OFFSET_S", str(two_days))
        milter = EdgeProcess(args, postfix.dir / "milter2.log")
        assert "caught_up=True" in milter.wait_ready()
        code, text = send(postfix.port, message("EX07.contoso.com", old, "second"), helo="ex07.contoso.com")
        assert code == 450
        assert text.decode() == ("4.7.230 Connecting Exchange server version is out-of-date; connection to "
                                 "patchgate throttled for 60 mins/hr.")
        # the patched server's next message goes through at once, whatever the verdict says
        code, _ = send(postfix.port, message("EX07.contoso.com", "15.2.2562.53", "patched"),
                       helo="ex07.contoso.com")
        assert code == 250
    finally:
        milter.stop()
        print(postfix.log_tail())
        print(worker.log_tail(40))
        postfix.cleanup()
        driver.close()
        worker.stop()
