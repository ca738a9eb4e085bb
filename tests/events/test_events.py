"""Every builder's output passes its contract; every example of ``schemas/examples`` parses and is rebuilt exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from processors.contracts import ContractError, contracts
from processors.errors import PatchgateError
from processors.events.command import CommandKeyMismatch, parse_command, pause_command
from processors.events.deadletter import (
    ORIGINAL_CAP,
    dead_letter,
    original_bytes,
    parse_dead_letter,
)
from processors.events.metadata import BadEnvelope, encode_batch, metadata_items, metadata_record, parse_metadata_record
from processors.events.notification import notification, parse_notification
from processors.events.verdict import join_verdict, parse_verdict, recommended_build, verdict_parts
from processors.events.wire import encode_event

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
AT = datetime(2026, 11, 28, 9, 15, 2, tzinfo=UTC)


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def test_metadata_record_example_is_rebuilt_by_the_builder() -> None:
    record, at = parse_metadata_record(orjson.loads(example("metadata-record.json")))
    assert at == datetime(2026, 11, 28, 9, 15, 2, 123000, tzinfo=UTC)
    client, message = record["client"], record["message"]
    rebuilt = metadata_record(
        event_id=record["event_id"], observed_at=record["observed_at"], edge=record["edge"],
        tenant_id=record["tenant_id"], connector_id=record["connector"]["id"],
        connector_type=record["connector"]["type"], client_ip=client["ip"], helo=client["helo"],
        ptr=client.get("ptr"), tls=client.get("tls"), headers=record["headers"], message_id=message["id"],
        size=message["size"], recipients=message["recipients"])
    assert rebuilt == record


def test_metadata_batch_example_round_trips_through_items_and_encode_batch() -> None:
    document = orjson.loads(example("metadata-batch.json"))
    contracts.metadata_batch(document)
    items, is_batch = metadata_items(document, b"Contoso/EX02.contoso.local")
    assert is_batch and len(items) == 2
    records = [parse_metadata_record(item)[0] for item in items]
    assert orjson.loads(encode_batch(document["server_key"], records)) == document


def test_a_built_record_and_envelope_pass_their_contracts() -> None:
    record = metadata_record(
        event_id="mx1:Q1", observed_at="2026-11-28T09:15:02.000Z", edge="mx1", tenant_id="contoso",
        connector_id="c1", connector_type="OnPremises", client_ip="192.0.2.10", helo=None,
        headers=[["Received", "from a by b; Fri, 28 Nov 2026 09:15:01 +0000"]], message_id=None, size=10,
        recipients=1, headers_truncated={"dropped_headers": 1, "dropped_bytes": 9, "reason": "too many"})
    contracts.metadata_record(record)
    envelope = orjson.loads(encode_batch("contoso/ex01.contoso.local", [record, record]))
    contracts.metadata(envelope)
    assert metadata_items(record, b"contoso/ex01.contoso.local") == ([record], False)


@pytest.mark.parametrize(("document", "key", "path", "words"), [
    ({"schema": "patchgate.other/1"}, b"t/s", "$.schema", "unknown schema"),
    ([], b"t/s", "$.schema", "unknown schema"),
    ({"schema": "patchgate.metadata-batch/1", "server_key": "t/s", "records": []}, b"t/s", "$.records", "1..1000"),
    ({"schema": "patchgate.metadata-batch/1", "server_key": "t/x", "records": [{}]}, b"t/s", None, "mismatch"),
])
def test_a_bad_envelope_is_refused_with_its_reason(document: Any, key: bytes, path: str | None, words: str) -> None:
    with pytest.raises(BadEnvelope, match=words) as refusal:
        metadata_items(document, key)
    assert refusal.value.path == path


def test_the_verdict_example_is_rebuilt_from_its_parts() -> None:
    data = example("verdict.json")
    verdict = parse_verdict(data)
    parts = verdict_parts(
        server_key=verdict["server_key"], tenant_id=verdict["tenant_id"], server=verdict["server"],
        issued_at=datetime.fromisoformat(verdict["issued_at"]),
        effective_at=datetime.fromisoformat(verdict["effective_at"]), valid_until=_time(verdict["valid_until"]),
        stage=verdict["stage"], throttle_minutes=verdict["throttle_minutes"],
        block_minutes=verdict["block_minutes"], window_offset=verdict["window_offset"],
        throttle_reply=verdict["replies"]["throttle"], block_reply=verdict["replies"]["block"],
        paused_until=_time(verdict["paused_until"]), product=verdict["product"], build=verdict["build"],
        status=verdict["status"], rule=verdict["rule"],
        recommended_builds=[recommended_build(r) for r in verdict["recommended_builds"]],
        client_ips=verdict["client_ips"])
    joined = join_verdict(parts, verdict["sequence"])
    optional_absent = {"product_id": None, "version": None}  # the optional v1 fields, null when unknown
    assert orjson.loads(joined) == {**orjson.loads(data), **optional_absent}
    contracts.verdict(orjson.loads(joined))


def test_the_notification_example_is_rebuilt_by_the_builder() -> None:
    original = parse_notification(example("notification.json"))
    subject, kind, identity = "contoso/ex02.contoso.local", "stage_upcoming", "2|2026-10-31"
    rebuilt = notification(
        tenant_id=original["tenant_id"], kind=kind, identity=identity, at=datetime.fromisoformat(original["at"]),
        text=original["text"], server_key=subject, server=original["server"], stage=original["stage"],
        next_stage_at=_time(original["next_stage_at"]), build=original["build"],
        recommended_builds=original["recommended_builds"])
    assert rebuilt["notification_id"] == "contoso/ex02.contoso.local|stage_upcoming|2|2026-10-31"
    assert {**rebuilt, "notification_id": original["notification_id"]} == {**original, "product_id": None,
                                                                         "version": None}
    assert parse_notification(encode_event(rebuilt)) == rebuilt


def test_a_tenant_wide_notification_passes_its_contract() -> None:
    record = notification(tenant_id="contoso", kind="pause_started", identity="cmd-1", at=AT,
                          text="Enforcement is paused.", next_stage_at=AT)
    contracts.notification(record)
    assert (record["notification_id"], record["server"], record["server_key"]) == ("contoso|pause_started|cmd-1",
                                                                                   None, None)


def test_the_command_example_is_rebuilt_by_the_builder() -> None:
    data = example("command.json")
    original = parse_command(data, b"contoso")
    rebuilt = pause_command(tenant_id=original["tenant_id"], action=original["action"], actor=original["actor"],
                            issued_at=datetime.fromisoformat(original["issued_at"]), days=original["days"],
                            command_id=original["command_id"])
    assert rebuilt == original
    assert orjson.loads(encode_event(rebuilt)) == orjson.loads(data)


def test_a_pause_end_has_no_days_and_a_fresh_id() -> None:
    first = pause_command(tenant_id="contoso", action="pause_end", actor="ops", issued_at=AT, days=7)
    second = pause_command(tenant_id="contoso", action="pause_end", actor="ops", issued_at=AT)
    assert "days" not in first and first["command_id"] != second["command_id"]
    assert first["issued_at"] == "2026-11-28T09:15:02Z"


def test_a_bad_command_is_refused() -> None:
    with pytest.raises(ContractError):
        pause_command(tenant_id="con/toso", action="pause_create", actor="ops", issued_at=AT, days=3)
    with pytest.raises(ContractError, match="days"):
        pause_command(tenant_id="contoso", action="pause_create", actor="ops", issued_at=AT)
    no_days = orjson.dumps({**orjson.loads(example("command.json")), "action": "pause_extend", "days": None})
    with pytest.raises(ContractError):
        parse_command(no_days, b"contoso")
    without_days = orjson.loads(example("command.json"))
    del without_days["days"]
    with pytest.raises(ContractError, match="'days'"):
        parse_command(orjson.dumps(without_days), b"contoso")
    with pytest.raises(CommandKeyMismatch, match="Kafka key"):
        parse_command(example("command.json"), b"fabrikam")


def test_the_dead_letter_example_is_rebuilt_by_the_builder() -> None:
    original = parse_dead_letter(example("deadletter.json"))
    source = original["source"]
    rebuilt = dead_letter(
        topic=source["topic"], partition=source["partition"], offset=source["offset"],
        key=b"contoso/ex02.contoso.local", value=original_bytes(original), reason=original["reason"],
        path=original["path"], record_index=source["record_index"],
        at=datetime.fromisoformat(original["dead_lettered_at"]))
    assert rebuilt == original
    assert parse_dead_letter(encode_event(rebuilt)) == rebuilt


def test_a_dead_letter_keeps_a_cut_original_and_a_bounded_reason() -> None:
    value = b"x" * (ORIGINAL_CAP + 10)
    record = dead_letter(topic="t", partition=0, offset=5, key=None, value=value, reason="r" * 5000, at=AT,
                         record_index=3)
    contracts.deadletter(record)
    assert (record["original_size"], record["original_truncated_at"]) == (ORIGINAL_CAP + 10, ORIGINAL_CAP)
    assert len(original_bytes(record)) == ORIGINAL_CAP and len(record["reason"]) == 2000
    empty = dead_letter(topic="t", partition=0, offset=0, key=b"k", value=None, reason="", at=AT)
    contracts.deadletter(empty)
    assert (empty["original"], empty["source"]["key"], empty["reason"]) == ("", "aw==", "unknown")


@pytest.mark.parametrize("name", sorted(p.name for p in (EXAMPLES / "invalid").glob("*.json")))
def test_the_parsers_refuse_every_invalid_example(name: str) -> None:
    data = (EXAMPLES / "invalid" / name).read_bytes()
    with pytest.raises(ContractError):
        if name.startswith("command"):
            parse_command(data, b"contoso")
        elif name.startswith("verdict"):
            parse_verdict(data)
        else:
            parse_metadata_record(orjson.loads(data))


@pytest.mark.parametrize("error", [BadEnvelope, CommandKeyMismatch])
def test_the_event_errors_are_patchgate_value_errors(error: type[Exception]) -> None:
    assert issubclass(error, PatchgateError) and issubclass(error, ValueError)


def test_product_and_version_travel_in_verdicts_and_notifications() -> None:
    parts = verdict_parts(
        server_key="contoso/mx.contoso.com", tenant_id="contoso", server="mx.contoso.com", issued_at=AT,
        effective_at=AT, valid_until=None, stage=1, throttle_minutes=0, block_minutes=0, window_offset=3,
        throttle_reply="450 4.7.230 x", block_reply="550 5.7.230 x", paused_until=None, product="Exim",
        build=None, product_id="exim", version="4.92", status="unsupported", rule="end_of_support",
        recommended_builds=[], client_ips=["192.0.2.1"])
    verdict = orjson.loads(join_verdict(parts, 2))
    contracts.verdict(verdict)
    assert (verdict["product_id"], verdict["version"], verdict["sequence"]) == ("exim", "4.92", 2)
    record = notification(tenant_id="contoso", kind="detected", identity="2026-11-28", at=AT, text="Detected.",
                          server_key="contoso/mx.contoso.com", server="mx.contoso.com", stage=1,
                          product_id="exim", version="4.92")
    contracts.notification(record)
    assert (record["product_id"], record["version"]) == ("exim", "4.92")
