"""The verdict cache on per-tenant verdicts topics, against the session's broker: an edge follows its
tenant's topic and discards (and counts) any verdict on it that names another tenant; an operator's
``cache-dump`` follows every tenant's topic by pattern, topics created later included; a per-tenant
milter's metrics name its tenant's topic."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from edge.cli import main
from edge.verdict_cache import VerdictCache
from edge.verdicts import BLOCK, THROTTLE
from processors.devservices import free_port
from processors.settings import tenant_topic_pattern
from tests.edge.helpers import T0, verdict_bytes
from tests.edge.kafka_helpers import create_topic, produce
from tests.edge.test_postfix_e2e import EdgeProcess

pytestmark = pytest.mark.integration
NOW = T0 + 60
OWN, FOREIGN = "contoso/ex01.contoso.com", "fabrikam/ex09.fabrikam.com"


def tenant_topics(bootstrap: str, base: str, records: dict[str, list[tuple[str, bytes | None]]]) -> None:
    """``<base>.<tenant>`` for each tenant, compacted, holding its records."""
    for tenant, held in records.items():
        create_topic(bootstrap, f"{base}.{tenant}", partitions=2, compact=True)
        produce(bootstrap, f"{base}.{tenant}", held)


def test_an_edge_applies_its_tenant_s_verdicts_and_discards_another_tenant_s_on_its_topic(
        kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    base = unique_name("verdicts")
    tenant_topics(kafka_bootstrap, base, {"contoso": [
        (OWN, verdict_bytes(server_key=OWN, stage=8, throttle=0, block=60)),
        (FOREIGN, verdict_bytes(server_key=FOREIGN, stage=8, throttle=0, block=60)),  # forged onto contoso's
    ]})
    with VerdictCache(kafka_bootstrap, topic=f"{base}.contoso", tenant="contoso") as cache:
        assert cache.wait_caught_up(20)
        assert cache.decide(OWN, NOW).action == BLOCK
        assert cache.decide(FOREIGN, NOW).reason == "no-verdict"
        produce(kafka_bootstrap, f"{base}.contoso", [(FOREIGN, None), ("contoso-east/ex01.contoso.com",
                                                                      verdict_bytes(server_key=OWN, sequence=9))])
        assert cache.wait_until(lambda: cache.metrics.verdicts_foreign_tenant == 3, 20)
        m = cache.metrics
        assert (m.verdicts_applied, m.tombstones_applied, m.bad_records) == (1, 0, 0)
        assert [record["server_key"] for record in cache.snapshot()] == [OWN]


def test_a_cache_following_a_pattern_reads_every_tenant_topic_and_discards_foreign_verdicts(
        kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    base = unique_name("verdicts")
    create_topic(kafka_bootstrap, base, partitions=1, compact=True)  # the shared topic: not followed
    produce(kafka_bootstrap, base, [("northwind/mx", verdict_bytes(server_key="northwind/mx"))])
    tenant_topics(kafka_bootstrap, base, {
        "contoso": [(OWN, verdict_bytes(server_key=OWN, throttle=60)), (FOREIGN, verdict_bytes(server_key=FOREIGN))],
        "fabrikam": [(FOREIGN, verdict_bytes(server_key=FOREIGN, stage=8, throttle=0, block=60))]})
    with VerdictCache(kafka_bootstrap, topic_pattern=tenant_topic_pattern(base), metadata_interval=0.2) as cache:
        assert cache.wait_caught_up(20)
        assert (cache.decide(OWN, NOW).action, cache.decide(FOREIGN, NOW).action) == (THROTTLE, BLOCK)
        assert cache.metrics.verdicts_foreign_tenant == 1
        later: list[tuple[str, bytes | None]] = [("northwind/mx", verdict_bytes(server_key="northwind/mx"))]
        tenant_topics(kafka_bootstrap, base, {"northwind": later})
        assert cache.wait_until(lambda: cache.get("northwind/mx") is not None, 20)  # a tenant created later
        assert [r["server_key"] for r in cache.snapshot()] == [OWN, FOREIGN, "northwind/mx"]


def test_cache_dump_shows_one_tenant_with_its_edge_config_and_every_tenant_without(
        kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    base = unique_name("verdicts")
    tenant_topics(kafka_bootstrap, base, {
        "contoso": [(OWN, verdict_bytes(server_key=OWN, stage=8, throttle=0, block=60)),
                    (FOREIGN, verdict_bytes(server_key=FOREIGN))],
        "fabrikam": [(FOREIGN, verdict_bytes(server_key=FOREIGN, throttle=60))]})
    config = tmp_path / "edge.toml"
    config.write_text('[[connector]]\nid = "c"\ntenant_id = "contoso"\ntype = "OnPremises"\n'
                      'client_ips = ["192.0.2.0/24"]\n')
    monkeypatch.setenv("PATCHGATE_METADATA_TOPIC_MODE", "per-tenant")
    argv = ["edge", "cache-dump", "--bootstrap", kafka_bootstrap, "--verdicts-topic", base, "--decide-at", str(NOW),
            "--catchup-timeout", "20"]

    def dump(*extra: str) -> tuple[list[tuple[str, str]], int]:
        assert main([*argv, *extra]) == 0
        out = capsys.readouterr()
        lines = [orjson.loads(line) for line in out.out.splitlines()]
        foreign = orjson.loads(out.err.splitlines()[-1])["metrics"]["verdicts_foreign_tenant"]
        return [(line["server_key"], line["decision"]) for line in lines], foreign

    assert dump("--config", str(config)) == ([(OWN, "block")], 1)
    assert dump() == ([(OWN, "block"), (FOREIGN, "throttle")], 1)


def test_a_per_tenant_milter_exports_its_tenant_s_verdicts_topic(
        kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path) -> None:
    """The label the stale-cache alert joins on: given the shared name, the edge follows and names
    ``<base>.contoso``, the topic the workers' ``patchgate_events_out_total{topic}`` counts."""
    base = unique_name("verdicts")
    tenant_topics(kafka_bootstrap, base, {"contoso": [(OWN, verdict_bytes(server_key=OWN, throttle=60))],
                                          "fabrikam": [(FOREIGN, verdict_bytes(server_key=FOREIGN))]})
    config = tmp_path / "edge.toml"
    config.write_text('[[connector]]\nid = "c"\ntenant_id = "contoso"\ntype = "OnPremises"\n'
                      'client_ips = ["192.0.2.0/24"]\n')
    port = free_port()
    milter = EdgeProcess(["--config", str(config), "--listen", f"unix:{tmp_path}/milter.sock", "--no-publish",
                          "--bootstrap", kafka_bootstrap, "--verdicts-topic", base, "--catchup-timeout", "20",
                          "--metrics-port", str(port), "--metrics-interval", "3600"], tmp_path / "milter.log",
                         env={"PATCHGATE_METADATA_TOPIC_MODE": "per-tenant"})
    try:
        assert "caught_up=True" in milter.wait_ready()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            gauges = [line for line in response.read().decode().splitlines()
                      if line.startswith("patchgate_edge_cache_")]
    finally:
        milter.stop()
    assert gauges == [f'patchgate_edge_cache_caught_up{{topic="{base}.contoso"}} 1.0',
                      f'patchgate_edge_cache_verdicts{{topic="{base}.contoso"}} 1.0']
