"""``patchgate whatif --kafka``: the metadata topic read by time range through the one Kafka
configuration (real broker), giving the prediction the same records give from a file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from processors.cli import main
from processors.replay.driver import ReplayDriver
from processors.replay.sample import at, steps
from tests.whatif.helpers import sample_files
from tests.worker.harness import isolated_settings

pytestmark = pytest.mark.integration


def whatif_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["whatif", *argv, "--format", "json"])
    out, err = capsys.readouterr()
    return code, orjson.loads(out) if code == 0 else None, err


def test_a_topic_read_by_time_range_predicts_as_its_file(
        kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name)
    driver = ReplayDriver(settings)
    for step in steps():  # envelopes per server key, stamped with their simulated time, on 8 partitions
        if step.kind == "mail":
            driver.produce(driver.mail_messages(step), step.at)
    driver.close()
    monkeypatch.setenv("PATCHGATE_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("PATCHGATE_TOPIC_METADATA", settings.topic_metadata)
    records, commands = sample_files(tmp_path)

    code, from_topic, err = whatif_json(capsys, "--kafka", "--commands", str(commands))
    assert code == 0, err
    _, from_file, _ = whatif_json(capsys, str(records), "--commands", str(commands))
    assert from_topic["servers"] == from_file["servers"] and from_topic["input"]["records"] == 110
    assert from_topic["skipped"]["by_reason"] == {}

    code, ranged, err = whatif_json(capsys, "--kafka", "--since", "2026-11-01", "--until", at(64).isoformat())
    assert code == 0, err
    assert ranged["input"]["records"] == 3 * 12 + 1  # days 33, 47 and 63, and patcher's day 45
    assert (ranged["input"]["first_at"], ranged["input"]["last_at"]) == ("2026-11-07T13:00:00Z",
                                                                        "2026-12-07T13:00:00Z")

    code, _, err = whatif_json(capsys, "--kafka", "--since", "2030-01-01")
    assert code == 2 and "no record to simulate" in err and len(err.strip().splitlines()) == 1
    code, _, err = whatif_json(capsys, "--kafka", "--topic", f"{settings.topic_metadata}.missing")
    assert code == 2 and "not found" in err, err
