"""The fast contract checks (``contracts.metadata_*_fast``): "valid" only for what the exact checks
accept, on the shipped examples, on every malformed form the contract tests know, and on the
places where JSON Schema itself is wider than the contracts (integral floats, number constants,
date-times :meth:`datetime.fromisoformat` refuses)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.contracts import ContractError, contracts
from processors.contracts.compiler import SchemaCompileError, SchemaSet
from processors.contracts.fast import fast_validator
from tests.contracts.test_contracts import EXAMPLES, MUTATIONS, _reference_validator


def _record() -> dict[str, Any]:
    return orjson.loads((EXAMPLES / "metadata-record.json").read_bytes())  # type: ignore[no-any-return]


def _batch(*records: dict[str, Any]) -> dict[str, Any]:
    return {"schema": "patchgate.metadata-batch/1", "server_key": "contoso/ex01.contoso.com", "records": list(records)}


def _exact_ok(record: Any) -> bool:
    try:
        contracts.metadata_record(record)
    except ContractError:
        return False
    return True


def test_the_shipped_examples_pass_the_fast_checks() -> None:
    assert contracts.metadata_record_fast(_record())
    assert contracts.metadata_batch_fast(orjson.loads((EXAMPLES / "metadata-batch.json").read_bytes()))


@pytest.mark.parametrize("path", sorted((EXAMPLES / "invalid").glob("metadata-*.json")), ids=lambda p: p.name)
def test_the_malformed_examples_fail_the_fast_checks(path: Path) -> None:
    event = orjson.loads(path.read_bytes())
    event.pop("$expect")
    assert not contracts.metadata_record_fast(event)
    assert not contracts.metadata_batch_fast(_batch(_record(), event))


@pytest.mark.parametrize(("field", "value"), MUTATIONS)
def test_every_mutation_the_exact_checks_refuse_fails_the_fast_checks(field: str, value: Any) -> None:
    event = _record()
    event[field] = copy.deepcopy(value)
    assert not _exact_ok(event)
    assert not contracts.metadata_record_fast(event)
    assert not contracts.metadata_batch_fast(_batch(_record(), event))


@pytest.mark.parametrize(("where", "value"), [
    ("size", 1.0), ("recipients", 0.0), ("dropped_headers", 2.0), ("dropped_bytes", 0.0),  # integral floats
    ("observed_at", "2026-12-31T23:59:60Z"),  # a leap second: RFC 3339, not fromisoformat
])
def test_where_json_schema_is_wider_than_the_contract_the_fast_checks_refuse(where: str, value: Any) -> None:
    event = _record()
    if where in ("size", "recipients"):
        event["message"][where] = value
    elif where == "observed_at":
        event["observed_at"] = value
    else:
        event["headers_truncated"] = {"dropped_headers": 1, "dropped_bytes": 10, "reason": "cap", where: value}
    assert not _exact_ok(event)
    assert not contracts.metadata_record_fast(event)
    assert not contracts.metadata_batch_fast(_batch(event))
    if where != "observed_at":  # the reference validator follows JSON Schema: 1.0 is an integer there
        assert _reference_validator("metadata.v1.json").is_valid(event)


def test_a_value_that_is_no_decoded_json_is_left_to_the_exact_checks() -> None:
    event = _record()
    event["message"]["size"] = object()
    assert not contracts.metadata_record_fast(event)
    assert not _exact_ok(event)


def test_number_constants_are_compared_by_type(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_bytes(orjson.dumps({"type": "object", "properties": {
        "one": {"const": 1}, "flag": {"enum": [0, "x"]}}}))
    fast = fast_validator(SchemaSet(tmp_path), "c.json")
    assert fast({"one": 1, "flag": 0}) and fast({"flag": "x"})
    assert not fast({"one": 1.0}) and not fast({"one": True}) and not fast({"flag": False})


def test_a_recursive_definition_is_guarded_at_every_depth(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_bytes(orjson.dumps({"$ref": "#/$defs/node", "$defs": {"node": {
        "type": "object", "properties": {"n": {"type": "integer"}, "next": {"$ref": "#/$defs/node"}}}}}))
    fast = fast_validator(SchemaSet(tmp_path), "r.json")
    assert fast({"n": 1, "next": {"n": 2, "next": {"n": 3}}})
    assert not fast({"n": 1, "next": {"n": 2, "next": {"n": 3.0}}})


def test_what_the_rust_validator_made_sure_of_is_read_without_tests(tmp_path: Path) -> None:
    """A required property is read directly and a value typed object is not tested again: the guard
    runs only on what the Rust validator passed, and still refuses an integral float below them."""
    (tmp_path / "q.json").write_bytes(orjson.dumps({"type": "object", "required": ["m"], "properties": {
        "m": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}, "k": {"type": "integer"}}},
        "o": {"type": ["object", "null"], "properties": {"n": {"type": "integer"}}}}}))
    fast = fast_validator(SchemaSet(tmp_path), "q.json")
    assert fast({"m": {"n": 1}}) and fast({"m": {"n": 1, "k": 2}, "o": None}) and fast({"m": {"n": 1}, "o": {}})
    assert not fast({}) and not fast({"m": {}}) and not fast({"m": []})
    assert not fast({"m": {"n": 1.0}}) and not fast({"m": {"n": 1, "k": 2.0}})
    assert not fast({"m": {"n": 1}, "o": {"n": 0.0}})


def test_a_number_constant_behind_one_of_has_no_fast_path(tmp_path: Path) -> None:
    (tmp_path / "o.json").write_bytes(orjson.dumps({"oneOf": [{"type": "integer"}, {"type": "string"}]}))
    with pytest.raises(SchemaCompileError, match="oneOf"):
        fast_validator(SchemaSet(tmp_path), "o.json")


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-2, 2) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                  max_size=3), max_leaves=6)
_PLACES = [("edge",), ("client", "ip"), ("client", "helo"), ("client", "tls"), ("message", "size"),
           ("message", "id"), ("headers",), ("headers", 0), ("headers", 0, 1), ("observed_at",), ("connector",),
           ("headers_truncated",), ("tenant_id",), ("extra",)]


@settings(max_examples=300, deadline=None)
@given(place=st.sampled_from(_PLACES), value=_JSON)
def test_a_fast_yes_is_always_an_exact_yes(place: tuple[Any, ...], value: Any) -> None:
    event = _record()
    target: Any = event
    for step in place[:-1]:
        target = target[step]
    target[place[-1]] = value
    if contracts.metadata_record_fast(event):
        assert _exact_ok(event)
    if contracts.metadata_batch_fast(_batch(event)):
        assert _exact_ok(event)
