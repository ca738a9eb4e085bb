"""The v1 contracts: shipped examples validate, malformed ones are rejected with a precise reason,
and the compiled checks agree with the reference jsonschema validator."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from referencing import Registry, Resource

from processors.contracts import ContractError, SchemaCompileError, contracts, schemas_dir
from processors.contracts.compiler import SchemaSet

EXAMPLES = schemas_dir() / "examples"
CONTRACT_BY_PREFIX = {
    "metadata": ("metadata", "metadata.v1.json"),
    "verdict": ("verdict", "verdict.v1.json"),
    "notification": ("notification", "notification.v1.json"),
    "deadletter": ("deadletter", "deadletter.v1.json"),
    "command": ("command", "command.v1.json"),
}


def _contract_for(path: Path) -> tuple[str, str]:
    return CONTRACT_BY_PREFIX[path.stem.split("-")[0]]


def _reference_validator(schema_file: str) -> jsonschema.Draft202012Validator:
    resources = [
        (path.name, Resource.from_contents(orjson.loads(path.read_bytes())))
        for path in schemas_dir().glob("*.json")
    ]
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = orjson.loads((schemas_dir() / schema_file).read_bytes())
    return jsonschema.Draft202012Validator(
        schema, registry=registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_every_schema_is_valid_draft_2020_12() -> None:
    for path in schemas_dir().glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(orjson.loads(path.read_bytes()))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_valid_examples_pass_both_validators(path: Path) -> None:
    contract, schema_file = _contract_for(path)
    event = orjson.loads(path.read_bytes())
    getattr(contracts, contract)(event)
    _reference_validator(schema_file).validate(event)


def test_every_contract_has_an_example() -> None:
    stems = {path.stem.split("-")[0] for path in EXAMPLES.glob("*.json")}
    assert stems == set(CONTRACT_BY_PREFIX)


@pytest.mark.parametrize("path", sorted((EXAMPLES / "invalid").glob("*.json")), ids=lambda p: p.name)
def test_malformed_examples_are_rejected_with_a_precise_reason(path: Path) -> None:
    contract, schema_file = _contract_for(path)
    event = orjson.loads(path.read_bytes())
    expect = event.pop("$expect")
    with pytest.raises(ContractError) as caught:
        getattr(contracts, contract)(event)
    assert caught.value.path == expect["path"]
    assert expect["reason"] in caught.value.reason
    assert not _reference_validator(schema_file).is_valid(event)


def _record() -> dict[str, Any]:
    return orjson.loads((EXAMPLES / "metadata-record.json").read_bytes())


MUTATIONS: list[tuple[str, Any]] = [
    ("edge", None), ("edge", ""), ("event_id", 7), ("connector", {"id": "x"}), ("connector", []),
    ("client", {"ip": "1.2.3.4"}), ("message", {"id": None, "size": -1, "recipients": 0}),
    ("message", {"id": None, "size": 1.5, "recipients": 0}), ("headers", [["Received", 5]]),
    ("headers", [[]]), ("headers", "Received: x"), ("headers_truncated", {"reason": "cap"}),
    ("observed_at", "2026-11-28T09:15:02+02:00"), ("tenant_id", "-bad"), ("schema", "patchgate.metadata/2"),
    ("headers", [["Received", "x"]] * 501), ("client", {"ip": "1.2.3.4", "helo": None, "tls": {"x": 1}}),
]


@pytest.mark.parametrize(("field", "value"), MUTATIONS)
def test_compiled_checks_agree_with_reference_on_mutations(field: str, value: Any) -> None:
    event = _record()
    event[field] = copy.deepcopy(value)
    reference_ok = _reference_validator("metadata.v1.json").is_valid(event)
    try:
        contracts.metadata(event)
        compiled_ok = True
    except ContractError:
        compiled_ok = False
    assert compiled_ok == reference_ok
    assert not compiled_ok


def test_batch_envelope_reports_the_bad_records_index() -> None:
    batch = orjson.loads((EXAMPLES / "metadata-batch.json").read_bytes())
    batch["records"][1]["message"]["size"] = "big"
    with pytest.raises(ContractError) as caught:
        contracts.metadata(batch)
    assert caught.value.path == "$.records[1].message.size"
    assert str(caught.value) == "$.records[1].message.size: expected integer, got string"


def test_booleans_are_not_integers() -> None:
    event = _record()
    event["message"]["recipients"] = True
    with pytest.raises(ContractError, match=r"\$\.message\.recipients: expected integer, got boolean"):
        contracts.metadata_record(event)


def test_unsupported_keyword_is_refused_at_compile_time(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_bytes(orjson.dumps({"type": "string", "uniqueItems": True}))
    with pytest.raises(SchemaCompileError, match="uniqueItems"):
        SchemaSet(tmp_path).compile("x.json")
