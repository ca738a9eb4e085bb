"""Products beyond Exchange through the real worker (real broker, real Redis): an Exim server is
reported only, an IIS SMTP server on Windows Server 2003 is enforced, and switching Exim's
enforcement on in the policy file enforces it without a restart."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from processors.contracts import contracts
from processors.devservices.worker_process import WorkerProcess
from processors.replay.driver import ReplayDriver
from processors.state.keys import KeySchema
from tests.worker.factories import metadata_event
from tests.worker.harness import isolated_settings, read_topic

pytestmark = pytest.mark.integration
AT = datetime(2026, 11, 20, 10, tzinfo=UTC)


def _event(event_id: str, server: str, hop: str, ip: str) -> dict[str, Any]:
    return metadata_event(event_id, AT, tenant="tailspin", server=server, hops=[hop], ip=ip)


def _verdicts(bootstrap: str, topic: str) -> dict[str, dict[str, Any]]:
    out = {}
    for _, value in read_topic(bootstrap, topic):
        contracts.verdict(value)
        out[value["server_key"]] = value
    return out


def test_report_only_and_enforced_products_and_opt_in_by_policy(
        tmp_path: Path, kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_bytes(resources.files("processors").joinpath("data", "policy.toml").read_bytes())
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name, policy_file=policy)
    worker = WorkerProcess(settings)
    worker.start()
    driver = ReplayDriver(settings, step_timeout=90)
    stamp = format_datetime(AT)
    exim = _event("exim-1", "exim.tailspin.com", f"from a.tailspin.local ([10.2.0.5]) by exim.tailspin.com with "
                  f"esmtps (TLS1.2) tls TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\r\n\t(Exim 4.87)\r\n\t"
                  f"(envelope-from <a@tailspin.com>) id 1qAbCd-0001Xy-2Z; {stamp}", "192.0.2.40")
    iis = _event("iis-1", "iis.tailspin.com", f"from a.tailspin.local ([10.2.0.6]) by iis.tailspin.com with "
                 f"Microsoft SMTPSVC(6.0.3790.4675);\r\n\t {stamp}", "192.0.2.41")
    try:
        driver.set_clock(AT.timestamp())
        driver.send([(settings.topic_metadata, b"tailspin/exim.tailspin.com", orjson.dumps(exim)),
                     (settings.topic_metadata, b"tailspin/iis.tailspin.com", orjson.dumps(iis))])
        verdicts = _verdicts(kafka_bootstrap, settings.topic_verdicts)
        assert set(verdicts) == {"tailspin/iis.tailspin.com"}, "Exim is reported only by default"
        iis_verdict = verdicts["tailspin/iis.tailspin.com"]
        assert (iis_verdict["product_id"], iis_verdict["version"], iis_verdict["status"], iis_verdict["stage"]) == (
            "smtpsvc", "6.0.3790", "unsupported", 1)
        assert "Microsoft SMTPSVC (IIS SMTP) 6.0.3790 server is out-of-date" in iis_verdict["replies"]["throttle"]

        state = redis.Redis.from_url(settings.redis_url).hgetall(
            KeySchema(settings.key_prefix).server("tailspin/exim.tailspin.com"))
        assert (state[b"status"], state[b"product_id"], state[b"version"]) == (b"behind", b"exim", b"4.87")
        assert b"detected_at" not in state and b"Report only" in state[b"reason"]

        # an hour later, enforcement is switched on for Exim in the policy file: picked up and applied
        # to the server's last hop without a restart (the report-only evidence counted as no detection)
        driver.set_clock(AT.timestamp() + 3600)
        replacement = tmp_path / "policy.toml.new"
        text = policy.read_text("utf-8").replace("[products.exim]\nenforce = false", "[products.exim]\nenforce = true")
        replacement.write_text(text, "utf-8")
        os.replace(replacement, policy)
        deadline = time.monotonic() + 60
        while "tailspin/exim.tailspin.com" not in verdicts:
            assert time.monotonic() < deadline, f"no Exim verdict after the policy change:\n{worker.log_tail()}"
            time.sleep(0.2)  # polling the topic
            verdicts = _verdicts(kafka_bootstrap, settings.topic_verdicts)
        exim_verdict = verdicts["tailspin/exim.tailspin.com"]
        assert (exim_verdict["product_id"], exim_verdict["version"], exim_verdict["stage"]) == ("exim", "4.87", 1)
    finally:
        driver.close()
        worker.stop()
