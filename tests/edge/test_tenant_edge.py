"""The edge in the per-tenant topic mode (no services): it serves the one tenant its config names,
publishes to and follows that tenant's topics, and discards any verdict naming another tenant."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from edge.cli import main
from edge.settings import EdgeSettings, EdgeTopics
from edge.verdicts import VerdictIndex
from processors.settings import SettingsError
from tests.edge.helpers import T0, verdict, verdict_bytes

PER_TENANT = EdgeSettings.from_env({"PATCHGATE_METADATA_TOPIC_MODE": "per-tenant"})
OWN = "contoso/ex01.contoso.com"


def test_the_shared_mode_uses_the_topics_as_named() -> None:
    settings = EdgeSettings.from_env({"PATCHGATE_TOPIC_VERDICTS": "v", "PATCHGATE_TOPIC_METADATA": "m"})
    assert settings.edge_topics({"contoso", "fabrikam"}) == EdgeTopics("m", "v")
    assert settings.edge_topics(None) == EdgeTopics("m", "v")


def test_a_per_tenant_edge_uses_its_one_tenant_s_topics() -> None:
    assert PER_TENANT.edge_topics({"contoso"}) == EdgeTopics(
        "patchgate.metadata.contoso", "patchgate.verdicts.contoso", tenant="contoso")


@pytest.mark.parametrize(("tenants", "message"), [
    (set(), "an edge serves one tenant, its connectors name 0 (none)"),
    ({"contoso", "fabrikam"}, "an edge serves one tenant, its connectors name 2 (contoso, fabrikam)"),
    ({"con@toso"}, "the connectors' tenant_id 'con@toso' is no tenant id the workers admit"),
])
def test_a_per_tenant_edge_config_naming_no_single_valid_tenant_is_refused(tenants: set[str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(f"PATCHGATE_METADATA_TOPIC_MODE=per-tenant: {message}")):
        PER_TENANT.edge_topics(tenants)


def test_an_operator_tool_without_a_config_follows_every_tenant_s_verdicts_topic() -> None:
    topics = PER_TENANT.edge_topics(None)
    assert topics.verdicts_pattern and topics.tenant is None
    pattern = re.compile(topics.verdicts)
    assert [name for name in ("patchgate.verdicts.contoso", "patchgate.verdicts.north.wind", "patchgate.verdicts",
                              "patchgate.verdictsX", "patchgate.verdicts.", "patchgate.metadata.contoso")
            if pattern.match(name)] == ["patchgate.verdicts.contoso", "patchgate.verdicts.north.wind"]
    assert pattern.match("patchgate.verdicts.contoso").group(1) == "contoso"  # type: ignore[union-attr]


def test_a_verdict_naming_another_tenant_is_discarded_and_counted() -> None:
    index = VerdictIndex()
    index.caught_up = True
    assert index.apply_raw(OWN.encode(), verdict_bytes(server_key=OWN, stage=8, throttle=0, block=60),
                           tenant="contoso")
    foreign = [
        (b"fabrikam/ex09.fabrikam.com", verdict_bytes(server_key="fabrikam/ex09.fabrikam.com")),
        (b"contoso-east/ex01.contoso.com", verdict_bytes(server_key="contoso-east/ex01.contoso.com")),  # a prefix
        (b"contosoex01.contoso.com", verdict_bytes(server_key=OWN)),  # no tenant part at all
        (None, verdict_bytes(server_key="fabrikam/ex09.fabrikam.com")),  # keyless: the record names it
        (b"fabrikam/ex01.contoso.com", None),  # a tombstone of another tenant's key
        (b"fabrikam/ex09.fabrikam.com", b"{not json"),  # foreign before anything else
    ]
    for key, value in foreign:
        assert not index.apply_raw(key, value, tenant="contoso")
    m = index.metrics
    assert (m.verdicts_applied, m.verdicts_foreign_tenant, m.bad_records, m.tombstones_applied) == (1, 6, 0, 0)
    assert [record["server_key"] for record in index.snapshot()] == [OWN]
    assert index.decide(OWN, T0 + 60).action == "block"
    assert index.decide("fabrikam/ex09.fabrikam.com", T0 + 60).reason == "no-verdict"
    # without a tenant (the shared mode) every tenant's verdicts apply, as before
    shared = VerdictIndex()
    assert shared.apply_raw(b"fabrikam/ex09.fabrikam.com", orjson.dumps(verdict("fabrikam/ex09.fabrikam.com")))
    assert shared.metrics.verdicts_foreign_tenant == 0


def test_the_milter_refuses_a_config_of_two_tenants_in_the_per_tenant_mode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('[[connector]]\nid = "a"\ntenant_id = "contoso"\ntype = "OnPremises"\n'
                      'client_ips = ["192.0.2.0/24"]\n'
                      '[[connector]]\nid = "b"\ntenant_id = "fabrikam"\ntype = "OnPremises"\n'
                      'client_ips = ["198.51.100.0/24"]\n')
    monkeypatch.setenv("PATCHGATE_METADATA_TOPIC_MODE", "per-tenant")
    with pytest.raises(SystemExit) as stopped:
        main(["edge", "milter", "--config", str(config), "--listen", f"unix:{tmp_path}/m.sock"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "edge: PATCHGATE_METADATA_TOPIC_MODE=per-tenant: an edge serves one tenant, its connectors name 2 "
        "(contoso, fabrikam)"]
