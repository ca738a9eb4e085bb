"""``patchgate whatif`` against the real pipeline: the 120-day sample replayed through the real worker
process (Faust, real broker, real Redis), every message answered by the real edge decision following
the verdicts the worker published, equals the prediction message for message; with the packaged
policy and with one of other stage days and minutes per hour (the prediction changes with it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from processors.devservices.worker_process import WorkerProcess
from processors.replay.driver import ReplayDriver
from processors.replay.sample import steps
from processors.settings import Settings
from tests.whatif.helpers import edge_answers, sample_files, tighter_policy, whatif_answers
from tests.worker.harness import isolated_settings, read_topic

pytestmark = pytest.mark.integration


def replayed_verdicts(settings: Settings) -> list[dict[str, object]]:
    """The sample through the real worker; the verdicts it published."""
    worker = WorkerProcess(settings)
    worker.start()
    try:
        driver = ReplayDriver(settings, step_timeout=90)
        driver.run(steps())
        driver.close()
    finally:
        worker.stop()
    return [value for _, value in read_topic(settings.kafka_bootstrap, settings.topic_verdicts)]


@pytest.mark.parametrize("policy", ["packaged", "tighter"])
def test_whatif_predicts_the_real_worker_and_edge_message_for_message(
        policy: str, kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], tmp_path: Path) -> None:
    policy_file = tighter_policy(tmp_path) if policy == "tighter" else None
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name,
                                 **({"policy_file": policy_file} if policy_file else {}))
    records_file, commands_file = sample_files(tmp_path)
    predicted, prediction = whatif_answers(records_file, commands_file, policy_file)

    records = [record for step in steps() if step.kind == "mail" for _, record in step.records]
    real = edge_answers(records, replayed_verdicts(settings), policy_file)

    assert len(real) == len(records) == prediction.records == 110
    assert predicted == real
    counts = {answer: list(real.values()).count(answer) for answer in ("accepted", "deferred", "rejected")}
    assert counts["deferred"] and counts["rejected"], counts  # the comparison covers every answer

    # and the prediction differs between the two policies (the other run holds the other half)
    packaged, _ = whatif_answers(records_file, commands_file, None)
    tighter, _ = whatif_answers(records_file, commands_file, tighter_policy(tmp_path))
    assert packaged != tighter
