"""Compile the JSON Schemas in ``schemas/`` into plain Python checks, once, at import time.

The worker validates every event, so validation must cost microseconds: a generic validator walks
the schema document on every call, while the closures built here only run the comparisons. The
compiler accepts the subset of JSON Schema 2020-12 the contracts use and refuses any other keyword,
so a schema change can never be silently unchecked. The tests compare its answers with the
reference ``jsonschema`` validator on every example.

Errors name the JSON path and the rule: ``$.client.ip: expected string, got integer``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from processors.errors import PatchgateError

Check = Callable[[Any], None]

_ANNOTATIONS = {"$schema", "$id", "title", "description", "$defs", "$comment", "examples", "default"}
_SUPPORTED = _ANNOTATIONS | {
    "type", "properties", "required", "additionalProperties", "enum", "const", "pattern", "minLength",
    "maxLength", "minimum", "maximum", "items", "prefixItems", "minItems", "maxItems", "format", "$ref",
    "oneOf",
}


class ContractError(PatchgateError, ValueError):
    """A value does not satisfy its contract; ``path`` is the JSON path of the offending value.

    Checks raise it with the reason only; each enclosing object or array adds its segment while the
    exception travels up, so the happy path never builds a path string.
    """

    def __init__(self, reason: str, path: str = "$") -> None:
        super().__init__(reason)
        self.reason = reason
        self._segments: list[str] = []
        self._root = path

    def within(self, segment: str) -> ContractError:
        self._segments.append(segment)
        return self

    @property
    def path(self) -> str:
        return self._root + "".join(reversed(self._segments))

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class SchemaCompileError(PatchgateError):
    """The schema uses something this compiler does not support."""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number"}.get(
        type(value), type(value).__name__
    )


class SchemaSet:
    """All schema documents of one folder, addressable by file name for ``$ref``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.documents: dict[str, dict[str, Any]] = {
            path.name: orjson.loads(path.read_bytes()) for path in sorted(folder.glob("*.json"))
        }
        self._compiled: dict[tuple[str, str], Check] = {}

    def compile(self, document: str, pointer: str = "") -> Check:
        key = (document, pointer)
        if key not in self._compiled:
            # A forward reference resolves lazily so recursive $defs work.
            self._compiled[key] = lambda value: self._compiled[key](value)
            self._compiled[key] = self._compile_node(self.resolve(document, pointer), document)
        return self._compiled[key]

    def resolve(self, document: str, pointer: str) -> Any:
        node: Any = self.documents[document]
        for part in filter(None, pointer.split("/")):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _compile_node(self, schema: Mapping[str, Any] | bool, document: str) -> Check:
        """One fused closure per schema node: a type dispatch, then only that type's constraints."""
        if schema is True:
            return _accept
        if schema is False:
            return _reject
        assert isinstance(schema, Mapping)
        unknown = set(schema) - _SUPPORTED
        if unknown:
            raise SchemaCompileError(f"{document}: unsupported keywords {sorted(unknown)}")
        generic = [
            check for check in (
                self._ref(schema, document), _const(schema), _enum(schema), self._one_of(schema, document),
            ) if check is not None
        ]
        by_type: dict[type, Check] = {}
        for python_type, builder in (
            (str, _string_checks), (int, _number_checks), (float, _number_checks),
            (dict, self._object_checks), (list, self._array_checks),
        ):
            check = builder(schema, document)
            if check is not None:
                by_type[python_type] = check
        names = schema.get("type")
        allowed: frozenset[type] | None = None
        label = ""
        if names is not None:
            names = [names] if isinstance(names, str) else list(names)
            allowed = frozenset(t for name in names for t in _PYTHON_TYPES[name])
            label = " or ".join(names)
        if allowed is None and not by_type and len(generic) == 1:
            return generic[0]  # a bare $ref, const, enum or oneOf
        if allowed is not None and len(allowed) == 1 and not generic:
            return _single_type_check(next(iter(allowed)), by_type, label)

        def check_node(value: Any) -> None:
            kind = type(value)
            if allowed is not None and kind not in allowed:
                raise ContractError(f"expected {label}, got {_type_name(value)}")
            typed = by_type.get(kind)
            if typed is not None:
                typed(value)
            for check in generic:
                check(value)
        return check_node

    def _ref(self, schema: Mapping[str, Any], document: str) -> Check | None:
        ref = schema.get("$ref")
        if ref is None:
            return None
        target_doc, _, pointer = ref.partition("#")
        return self.compile(target_doc or document, pointer)

    def _one_of(self, schema: Mapping[str, Any], document: str) -> Check | None:
        if "oneOf" not in schema:
            return None
        compiled = [self._compile_node(sub, document) for sub in schema["oneOf"]]

        def check_one_of(value: Any) -> None:
            errors: list[ContractError] = []
            matched = 0
            for check in compiled:
                try:
                    check(value)
                except ContractError as error:
                    errors.append(error)
                else:
                    matched += 1
            if matched == 1:
                return
            if matched > 1:
                raise ContractError("matches more than one allowed shape")
            # Report the alternative that got furthest (deepest path): the likely intent.
            raise max(errors, key=lambda e: e.path.count(".") + e.path.count("["))
        return check_one_of

    def _object_checks(self, schema: Mapping[str, Any], document: str) -> Check | None:
        required = list(schema.get("required", ()))
        props = {name: self._compile_node(sub, document)
                 for name, sub in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties", True)
        extra_check = None if isinstance(extra, bool) else self._compile_node(extra, document)
        closed = extra is False
        if not required and not props and not closed and extra_check is None:
            return None

        def check_object(value: dict[str, Any]) -> None:
            for name in required:
                if name not in value:
                    raise ContractError(f"missing required property {name!r}")
            for name, item in value.items():
                check = props.get(name)
                try:
                    if check is not None:
                        check(item)
                    elif extra_check is not None:
                        extra_check(item)
                except ContractError as error:
                    raise error.within(f".{name}") from None
                if check is None and closed:
                    raise ContractError(f"unexpected property {_short(name)}")
        return check_object

    def _array_checks(self, schema: Mapping[str, Any], document: str) -> Check | None:
        prefix = [self._compile_node(sub, document) for sub in schema.get("prefixItems", ())]
        rest = schema.get("items", True)
        rest_check = None if isinstance(rest, bool) else self._compile_node(rest, document)
        closed = rest is False
        low, high = schema.get("minItems"), schema.get("maxItems")
        if not prefix and rest_check is None and not closed and low is None and high is None:
            return None
        width = len(prefix)

        def check_array(value: list[Any]) -> None:
            count = len(value)
            if low is not None and count < low:
                raise ContractError(f"needs at least {low} items, has {count}")
            if high is not None and count > high:
                raise ContractError(f"has {count} items, at most {high} allowed")
            if closed and count > width:
                raise ContractError(f"has {count} items, at most {width} allowed")
            for index, item in enumerate(value):
                try:
                    if index < width:
                        prefix[index](item)
                    elif rest_check is not None:
                        rest_check(item)
                except ContractError as error:
                    raise error.within(f"[{index}]") from None
        return check_array


_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,), "number": (int, float),
    "boolean": (bool,), "null": (type(None),),
}


def _single_type_check(only: type, by_type: dict[type, Check], label: str) -> Check:
    typed = by_type.get(only)
    if typed is None:
        def check_type(value: Any) -> None:
            if type(value) is not only:
                raise ContractError(f"expected {label}, got {_type_name(value)}")
        return check_type

    def check_typed(value: Any) -> None:
        if type(value) is not only:
            raise ContractError(f"expected {label}, got {_type_name(value)}")
        typed(value)
    return check_typed


def _accept(value: Any) -> None:
    return None


def _reject(value: Any) -> None:
    raise ContractError("no value is allowed here")


def _const(schema: Mapping[str, Any]) -> Check | None:
    if "const" not in schema:
        return None
    const = schema["const"]

    def check_const(value: Any) -> None:
        if value != const or type(value) is not type(const):
            raise ContractError(f"must be {orjson.dumps(const).decode()}, got {_short(value)}")
    return check_const


def _enum(schema: Mapping[str, Any]) -> Check | None:
    if "enum" not in schema:
        return None
    options = schema["enum"]
    allowed = {(type(o), o) for o in options}
    label = ", ".join(orjson.dumps(o).decode() for o in options)

    def check_enum(value: Any) -> None:
        if isinstance(value, (dict, list)) or (type(value), value) not in allowed:
            raise ContractError(f"must be one of {label}, got {_short(value)}")
    return check_enum


def _string_checks(schema: Mapping[str, Any], document: str) -> Check | None:
    low, high = schema.get("minLength"), schema.get("maxLength")
    pattern = schema.get("pattern")
    search = re.compile(pattern).search if pattern is not None else None
    fmt = schema.get("format")
    if fmt is not None and fmt != "date-time":
        raise SchemaCompileError(f"{document}: unsupported format {fmt!r}")
    if low is None and high is None and search is None and fmt is None:
        return None

    def check_string(value: str) -> None:
        size = len(value)
        if low is not None and size < low:
            raise ContractError(f"shorter than {low} characters")
        if high is not None and size > high:
            raise ContractError(f"longer than {high} characters ({size})")
        if search is not None and search(value) is None:
            raise ContractError(f"does not match {pattern}: {_short(value)}")
        if fmt is not None:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ContractError(f"not an RFC 3339 date-time: {_short(value)}") from None
    return check_string


def _number_checks(schema: Mapping[str, Any], document: str) -> Check | None:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is None and high is None:
        return None

    def check_number(value: float) -> None:
        if low is not None and value < low:
            raise ContractError(f"must be >= {low}, got {value}")
        if high is not None and value > high:
            raise ContractError(f"must be <= {high}, got {value}")
    return check_number


def _short(value: Any, limit: int = 60) -> str:
    text = orjson.dumps(value, default=str).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
