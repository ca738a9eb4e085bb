"""Event contracts: the versioned JSON Schemas of ``schemas/``, compiled into fast checks.

Usage::

    from processors.contracts import contracts, ContractError
    contracts.metadata_record(event)      # raises ContractError("$.client.ip: expected string, ...")
    contracts.metadata_batch_fast(event)  # True: certainly valid; False: run contracts.metadata_batch

The ``*_fast`` checks (:mod:`processors.contracts.fast`) are for the worker's hot loop: a compiled
validator of the same schema answers "valid" in about a microsecond per record; only a "don't know"
needs the exact check, which names the path and the rule.

The schema folder is the copy of the repository's ``schemas/`` that the wheel ships as
``processors._schemas``, or in a source checkout the repository's ``schemas/`` itself; set
``PATCHGATE_SCHEMAS_DIR`` to use another folder.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from processors.contracts.codegen import SourceGenerator
from processors.contracts.compiler import Check, ContractError, SchemaCompileError, SchemaSet
from processors.contracts.fast import FastCheck, fast_validator

METADATA_SCHEMA = "patchgate.metadata/1"
METADATA_BATCH_SCHEMA = "patchgate.metadata-batch/1"
VERDICT_SCHEMA = "patchgate.verdict/1"
NOTIFICATION_SCHEMA = "patchgate.notification/1"
DEADLETTER_SCHEMA = "patchgate.deadletter/1"
COMMAND_SCHEMA = "patchgate.command/1"

__all__ = [
    "COMMAND_SCHEMA", "DEADLETTER_SCHEMA", "METADATA_BATCH_SCHEMA", "METADATA_SCHEMA", "NOTIFICATION_SCHEMA",
    "VERDICT_SCHEMA", "ContractError", "Contracts", "FastCheck", "SchemaCompileError", "contracts", "schemas_dir",
]


PACKAGED_SCHEMAS = "processors._schemas"
_PROBE = "metadata.v1.json"


def schemas_dir() -> Path:
    """``PATCHGATE_SCHEMAS_DIR``, else the packaged copy, else the checkout's ``schemas/``."""
    explicit = os.environ.get("PATCHGATE_SCHEMAS_DIR")
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec(PACKAGED_SCHEMAS)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / _PROBE).is_file():
            return Path(folder)
    return Path(__file__).resolve().parents[2] / "schemas"


def _validator(schemas: SchemaSet, document: str, pointer: str = "") -> Any:
    """Generated code answers valid-or-not fast; the closures explain a failure precisely."""
    explain: Check = schemas.compile(document, pointer)
    valid = SourceGenerator(schemas.resolve).build(document, pointer)

    def validate(value: Any) -> None:
        if not valid(value):
            explain(value)
            raise ContractError("invalid")  # the generated code and the closures disagree: refuse
    return validate


@dataclass(frozen=True)
class Contracts:
    """One validating function per contract; each raises :class:`ContractError` or returns None."""

    metadata: Any           # a record or a batch envelope
    metadata_record: Any
    metadata_batch: Any
    verdict: Any
    notification: Any
    deadletter: Any
    command: Any
    metadata_record_fast: FastCheck
    metadata_batch_fast: FastCheck

    @classmethod
    def load(cls, folder: Path) -> Contracts:
        schemas = SchemaSet(folder)
        return cls(
            metadata=_validator(schemas, "metadata.v1.json"),
            metadata_record=_validator(schemas, "metadata.v1.json", "/$defs/record"),
            metadata_batch=_validator(schemas, "metadata.v1.json", "/$defs/batch"),
            verdict=_validator(schemas, "verdict.v1.json"),
            notification=_validator(schemas, "notification.v1.json"),
            deadletter=_validator(schemas, "deadletter.v1.json"),
            command=_validator(schemas, "command.v1.json"),
            metadata_record_fast=fast_validator(schemas, "metadata.v1.json", "/$defs/record"),
            metadata_batch_fast=fast_validator(schemas, "metadata.v1.json", "/$defs/batch"),
        )


@cache
def _default() -> Contracts:
    return Contracts.load(schemas_dir())


class _Lazy:
    """Module-level ``contracts`` that compiles the schemas on first use."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_default(), name)


contracts: Contracts = _Lazy()  # type: ignore[assignment]
