"""``patchgate whatif --kafka``: the metadata topic read by time range through the one Kafka
configuration (real broker), giving the prediction the same records give from a file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from processors.cli import main
from processors.kafka.topics import ensure_tenant_topics
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


def test_per_tenant_topics_are_each_read_and_a_foreign_key_on_one_is_a_listed_skip(
        kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """In the per-tenant topic mode, `--kafka` reads every tenant's metadata topic the brokers hold
    and admits each record against the topic it came from and the broker's time of its message, as
    the worker does: the prediction is the file's, and a message keyed for one tenant on another's
    topic, or one whose event time lies more than a day after its broker time, is refused and listed."""
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name, metadata_topic_mode="per-tenant")
    mail = [step for step in steps() if step.kind == "mail"]
    tenants = sorted({key.partition("/")[0] for step in mail for key, _ in step.records})
    assert len(tenants) >= 2
    ensure_tenant_topics(settings, tenants)
    driver = ReplayDriver(settings)
    for step in mail:
        driver.produce([(settings.tenant_metadata_topic(key.decode().partition("/")[0]), key, value)
                        for _, key, value in driver.mail_messages(step)], step.at)
    foreign_key, foreign = mail[-1].records[0]
    other = next(t for t in tenants if t != foreign_key.partition("/")[0])
    driver.produce([(settings.tenant_metadata_topic(other), foreign_key.encode(),
                     orjson.dumps(foreign | {"event_id": "foreign-one"}))], mail[-1].at)
    own = settings.tenant_metadata_topic(foreign_key.partition("/")[0])  # its own topic, but stamped 3 days early:
    driver.produce([(own, foreign_key.encode(), orjson.dumps(foreign | {"event_id": "from-the-future"}))],
                   mail[-1].at - timedelta(days=3))  # its event time lies beyond the broker's time + 1 day
    driver.close()
    for name, value in (("KAFKA_BOOTSTRAP", kafka_bootstrap), ("TOPIC_METADATA", settings.topic_metadata),
                        ("TOPIC_VERDICTS", settings.topic_verdicts), ("METADATA_TOPIC_MODE", "per-tenant")):
        monkeypatch.setenv(f"PATCHGATE_{name}", value)
    records, commands = sample_files(tmp_path)

    code, from_topics, err = whatif_json(capsys, "--kafka", "--commands", str(commands))
    assert code == 0, err
    _, from_file, _ = whatif_json(capsys, str(records), "--commands", str(commands))
    assert from_topics["servers"] == from_file["servers"] and from_topics["input"]["records"] == 110
    skips = {skip["where"].partition("/")[0]: skip["reason"] for skip in from_topics["skipped"]["first"]}
    assert len(skips) == 2 == from_topics["input"]["skipped"]
    assert skips[settings.tenant_metadata_topic(other)].startswith(
        "refused by the worker: tenant mismatch: the Kafka key names tenant")
    assert skips[own].startswith("refused by the worker: event time: observed_at ")

    tenant = tenants[0]
    code, one, err = whatif_json(capsys, "--kafka", "--topic", settings.tenant_metadata_topic(tenant))
    assert code == 0, err
    assert {s["tenant_id"] for s in one["servers"]} == {tenant}

    monkeypatch.setenv("PATCHGATE_TOPIC_METADATA", f"{settings.topic_metadata}.none")
    code, _, err = whatif_json(capsys, "--kafka")
    assert code == 2 and "no tenant metadata topic" in err and len(err.strip().splitlines()) == 1
