"""The admission rules the metadata schema cannot say: key authority, canonical IPs, host names, event time."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from processors.enforcement.policy import EnforcementPolicy, Stage
from processors.settings import Settings
from processors.worker.admission import (
    Refused,
    check_event_time,
    check_ip,
    event_time_limit,
    is_canonical_ip,
    is_host_name,
    is_server_name,
    key_parts,
    topic_tenant,
)


@pytest.mark.parametrize(("key", "expected"), [
    (b"contoso/ex01.contoso.com", ("contoso", "ex01.contoso.com")),
    (b"contoso/EX01.Contoso.com", ("contoso", "ex01.contoso.com")),
    (b"fabrikam/192.0.2.10", ("fabrikam", "192.0.2.10")),
])
def test_a_well_formed_key_names_tenant_and_server(key: bytes, expected: tuple[str, str]) -> None:
    assert key_parts(key) == expected


@pytest.mark.parametrize("key", [None, b"", b"contoso", b"contoso/", b"/ex01", b"-bad/ex01", b"\xff/ex01",
                                 b"a" * 65 + b"/ex01", b"contoso/" + b"x" * 256])
def test_a_missing_or_malformed_key_is_refused_with_the_key_category(key: bytes | None) -> None:
    with pytest.raises(Refused, match=r"^key: "):
        key_parts(key)


def test_the_per_tenant_topic_names_the_tenant() -> None:
    pattern = re.compile(Settings(metadata_topic_mode="per-tenant").metadata_topic_pattern)
    assert topic_tenant("patchgate.metadata.contoso", pattern) == "contoso"
    for topic in ("patchgate.metadata", "patchgate.metadataXcontoso", "other.metadata.contoso",
                  "patchgate.metadata.-bad"):
        with pytest.raises(Refused, match=r"^topic: "):
            topic_tenant(topic, pattern)


@pytest.mark.parametrize("value", ["192.0.2.10", "2001:db8::5", "::1", "::ffff:c000:201", "10.0.0.5"])
def test_canonical_addresses_pass(value: str) -> None:
    assert is_canonical_ip(value)
    check_ip(value)


@pytest.mark.parametrize("value", ["[10.0.0.5]", "IPv6:2001:db8::5", "2001:DB8::5", "2001:db8:0::5", "010.0.0.5",
                                   "fe80::1%eth0", "10.0.0.256", "", " 10.0.0.5", "unknown"])
def test_non_canonical_or_unparsable_addresses_are_refused(value: str) -> None:
    assert not is_canonical_ip(value)
    with pytest.raises(Refused, match=r"^client ip: "):
        check_ip(value)


@pytest.mark.parametrize("name", ["ex01.contoso.com", "EX01.corp.local", "ex_01.corp.local", "mail.example.",
                                  "xn--bcher-kva.example", "bücher.example", "a" * 63 + ".example", "localhost"])
def test_host_names_pass(name: str) -> None:
    assert is_host_name(name)


@pytest.mark.parametrize("name", ["", "[10.0.0.5]", "-ex01.contoso.com", "ex01-.contoso.com", "ex01..contoso.com",
                                  "a" * 64 + ".example", ".".join(["a" * 60] * 5), "ex 01", "ex01\udcff.x",
                                  "ex01;drop", "."])
def test_names_that_are_no_host_names_are_refused(name: str) -> None:
    assert not is_host_name(name)


def test_a_server_is_a_host_name_or_an_address() -> None:
    assert is_server_name("192.0.2.10") and is_server_name("ex01.contoso.com")
    assert not is_server_name("[192.0.2.10]")


def test_event_time_is_bounded_by_the_broker_timestamp_not_the_wall_clock() -> None:
    # a replay far from today: still judged by its log
    limit = event_time_limit(datetime(2030, 1, 1, tzinfo=UTC).timestamp(), 86400)
    assert limit == datetime(2030, 1, 2, tzinfo=UTC)
    check_event_time(datetime(2030, 1, 1, 23, tzinfo=UTC), limit)
    check_event_time(datetime(2001, 1, 1, tzinfo=UTC), limit)  # the past is allowed
    with pytest.raises(Refused, match=r"^event time: "):
        check_event_time(datetime(2030, 1, 2, 0, 0, 1, tzinfo=UTC), limit)
    assert event_time_limit(None, 86400) is None and event_time_limit(0.0, 86400) is None
    check_event_time(datetime(2099, 1, 1, tzinfo=UTC), None)  # no broker time: the schema's window only


def test_stage_start_of_the_last_day_does_not_overflow() -> None:
    start = EnforcementPolicy.stage_start(datetime(9999, 12, 30, tzinfo=UTC).date(), Stage(8, 300, 0, 60))
    assert start == datetime(9999, 12, 31, tzinfo=UTC)
