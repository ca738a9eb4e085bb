"""The metadata contract's address and event-time rules: the compiled checks and the reference
validator agree on every form an MTA or a careless producer may write."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from processors.contracts import ContractError, contracts
from tests.contracts.test_contracts import EXAMPLES, _reference_validator


def _record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = orjson.loads((EXAMPLES / "metadata-record.json").read_bytes())
    for field, value in changes.items():
        if field == "ip":
            record["client"]["ip"] = value
        else:
            record[field] = value
    return record


def _compiled_ok(record: dict[str, Any]) -> bool:
    try:
        contracts.metadata(record)
    except ContractError:
        return False
    return True


@pytest.mark.parametrize(("ip", "valid"), [
    ("192.0.2.10", True), ("2001:db8::5", True), ("::ffff:c000:201", True),
    ("[10.0.0.5]", False), ("IPv6:2001:db8::5", False), ("2001:DB8::5", False), ("fe80::1%eth0", False),
    ("10.0.0.5 ", False), ("1" * 46, False),
])
def test_client_ip_shapes(ip: str, valid: bool) -> None:
    record = _record(ip=ip)
    assert _compiled_ok(record) is valid
    assert _reference_validator("metadata.v1.json").is_valid(record) is valid


@pytest.mark.parametrize(("observed_at", "valid"), [
    ("2000-01-01T00:00:00Z", True), ("2099-12-31T23:59:59.999Z", True), ("2026-11-28T09:15:02+00:00", True),
    ("1999-12-31T23:59:59Z", False), ("2100-01-01T00:00:00Z", False), ("9999-12-31T23:59:59Z", False),
    ("0001-01-01T00:00:00Z", False),
])
def test_observed_at_window(observed_at: str, valid: bool) -> None:
    record = _record(observed_at=observed_at)
    assert _compiled_ok(record) is valid
    assert _reference_validator("metadata.v1.json").is_valid(record) is valid
