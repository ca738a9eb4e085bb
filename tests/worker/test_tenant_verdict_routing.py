"""Verdicts of the per-tenant topic mode (no services): each goes to its tenant's verdicts topic and
nowhere else, decided at publication from the outbox record, so an outbox committed before a crash
(or before the switch to the per-tenant mode) and a recovered claim go to the same topic; the shared
mode keeps every topic as it was."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from processors.kafka.config import KafkaConfig
from processors.kafka.verdict_routing import UnroutableVerdict, publication_topic, verdict_tenant
from processors.settings import Settings, SettingsError
from processors.worker import runtime as runtime_module
from processors.worker.processing import RawMessage
from processors.worker.runtime import WorkerRuntime
from tests.worker.factories import encode
from tests.worker.test_batch_unit import EX01, T0, Driver, event

PER_TENANT = Settings.from_env({}, metadata_topic_mode="per-tenant")
FABRIKAM = "fabrikam/ex09.fabrikam.com"


class TenantDriver(Driver):
    """The batch driver with a per-tenant worker: messages arrive on their tenant's metadata topic."""

    def worker(self, identity: str) -> WorkerRuntime:
        runtime = WorkerRuntime(PER_TENANT, self.store, self.output, self.policies, self.clock)
        runtime.identity = identity
        runtime.ready.set()
        return runtime

    def tenant_events(self, tenant: str, *events: dict[str, Any]) -> list[RawMessage]:
        return [self.message(f"{e['tenant_id']}/{e['client']['helo']}".encode(), encode(e),
                             topic=PER_TENANT.tenant_metadata_topic(tenant)) for e in events]

    def keys_on(self, topic: str) -> list[bytes | None]:
        return [key for name, key, _ in self.output.published if name == topic]


def test_the_route_names_the_tenant_of_the_key_in_the_per_tenant_mode_only() -> None:
    shared = Settings.from_env({})
    assert publication_topic(PER_TENANT, "patchgate.verdicts", b"contoso/ex01.contoso.com") == \
        "patchgate.verdicts.contoso"
    assert publication_topic(PER_TENANT, "patchgate.verdicts", b"north.wind-1/mx") == "patchgate.verdicts.north.wind-1"
    assert publication_topic(shared, "patchgate.verdicts", b"contoso/ex01.contoso.com") == "patchgate.verdicts"
    for topic in ("patchgate.notifications", "patchgate.deadletter"):  # only verdicts are routed
        assert publication_topic(PER_TENANT, topic, b"contoso") == topic


@pytest.mark.parametrize("key", [None, b"", b"contoso", b"contoso/", b"/ex01", b"con toso/ex01", b"-x/ex01",
                                 b"a" * 65 + b"/ex01", b"\xff/ex01"])
def test_a_verdict_key_naming_no_tenant_is_refused_with_a_clear_error(key: bytes | None) -> None:
    with pytest.raises(UnroutableVerdict, match="names no tenant"):
        verdict_tenant(key)


def test_settings_refuse_topic_names_too_long_for_a_tenant_suffix() -> None:
    Settings.from_env({}, topic_verdicts="v" * 240)  # the shared mode adds no suffix
    with pytest.raises(SettingsError, match="PATCHGATE_TOPIC_VERDICTS: is longer than 184 characters"):
        Settings.from_env({}, topic_verdicts="v" * 185, metadata_topic_mode="per-tenant")


def test_each_tenant_s_verdicts_go_to_its_own_topic_and_none_to_the_shared_one() -> None:
    driver = TenantDriver()
    driver.feed(driver.tenant_events("contoso", event(1, T0)))
    driver.feed(driver.tenant_events("fabrikam", event(2, T0, server="ex09.fabrikam.com", tenant="fabrikam")))
    assert driver.keys_on("patchgate.verdicts.contoso") == [EX01.encode()]
    assert driver.keys_on("patchgate.verdicts.fabrikam") == [FABRIKAM.encode()]
    assert driver.keys_on(PER_TENANT.topic_verdicts) == []
    # notifications keep their topic (keyed by tenant, read by the operator's notifier)
    assert {name for name, _, _ in driver.output.published} == {
        "patchgate.verdicts.contoso", "patchgate.verdicts.fabrikam", PER_TENANT.topic_notifications}


def test_an_outbox_committed_for_the_shared_topic_is_published_to_its_tenant_s_topic() -> None:
    """A crash left a committed, unsent outbox (or the deployment switched modes meanwhile): the next
    batch of its server publishes it once, to the tenant's topic."""
    driver = TenantDriver()
    driver.feed(driver.tenant_events("contoso", event(1, T0)))
    left = driver.store.keys.server_outbox(EX01)
    driver.store.lists[left] = [b"patchgate.verdicts\n" + EX01.encode() + b"\n{\"left\":1}"]
    driver.feed(driver.tenant_events("contoso", event(2, T0 + timedelta(minutes=1))))
    assert driver.output.published[-1] == ("patchgate.verdicts.contoso", EX01.encode(), b'{"left":1}')
    assert asyncio.run(driver.store.pending_outboxes()) == []


class BrokerReadBack:
    """``published_since`` answered from what the recording output delivered, noting the topics asked."""

    def __init__(self, driver: TenantDriver) -> None:
        self.driver = driver
        self.asked: list[list[str]] = []

    def __call__(self, kafka: KafkaConfig, topics: Sequence[str], since: float) -> set[tuple[str, bytes, bytes]]:
        self.asked.append(list(topics))
        return {(t, k or b"", v or b"") for t, k, v in self.driver.output.published if t in topics}


@pytest.mark.parametrize("already_delivered", [False, True])
def test_a_recovered_claim_is_looked_for_and_republished_on_the_tenant_s_topic(
        monkeypatch: pytest.MonkeyPatch, already_delivered: bool) -> None:
    driver = TenantDriver()
    readback = BrokerReadBack(driver)
    monkeypatch.setattr(runtime_module, "published_since", readback)
    outbox = driver.store.keys.server_outbox(FABRIKAM)
    raw = b"patchgate.verdicts\n" + FABRIKAM.encode() + b"\n{\"seq\":7}"
    driver.store.lists[outbox] = [raw]
    driver.store.sets.setdefault(driver.store.keys.outbox_pending, set()).add(outbox)
    asyncio.run(driver.store.claim([outbox], time.time() - 3600))  # claimed by a worker that died
    if already_delivered:  # it died after the broker's acknowledgement, before the release
        driver.output.published.append(("patchgate.verdicts.fabrikam", FABRIKAM.encode(), b'{"seq":7}'))
    republished = asyncio.run(driver.runtime.recover_abandoned_claims())
    assert readback.asked == [["patchgate.verdicts.fabrikam"]]
    assert republished == (0 if already_delivered else 1)
    assert driver.output.published == [("patchgate.verdicts.fabrikam", FABRIKAM.encode(), b'{"seq":7}')]
    assert asyncio.run(driver.store.abandoned_claims(float("inf"))) == []
