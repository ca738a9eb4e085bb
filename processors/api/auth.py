"""Bearer tokens: who may read and change which tenant's data.

Tokens come from a file (``PATCHGATE_API_TOKENS_FILE``, TOML or JSON) or from
``PATCHGATE_API_TOKENS`` (``token=tenant,token2=*``). A value is a tenant id, or ``*`` for an
operator token that may read and change every tenant and list the tenants. File formats::

    # tokens.toml                                  // tokens.json
    [tokens]                                       {"tokens": {
    "f0c1...long-random..." = "contoso"               "f0c1...long-random...": "contoso",
    "9ab2...long-random..." = "*"                     "9ab2...long-random...": "*"}}

(a top-level table without ``[tokens]`` works too). Only SHA-256 digests of the tokens are kept in
memory; a presented token is hashed and compared with every digest using
:func:`hmac.compare_digest`, without stopping at a match, so the time taken does not depend on
which token matched or how much of it was right. Tokens shorter than 16 characters are refused
when loading. The file is re-read when its modification time changes (token rotation without a
restart).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from processors.errors import PatchgateError

TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" would accept a final newline
OPERATOR = "*"
MIN_TOKEN_LENGTH = 16


class TokenConfigError(PatchgateError, ValueError):
    """The token configuration is unusable; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str  # a tenant id, or "*" for an operator
    fingerprint: str  # first 8 hex digits of the token's SHA-256: safe to log, names the token

    @property
    def operator(self) -> bool:
        return self.tenant == OPERATOR

    def may_access(self, tenant: str) -> bool:
        return self.operator or hmac.compare_digest(self.tenant.encode(), tenant.encode())

    @property
    def actor(self) -> str:
        who = "operator" if self.operator else f"tenant:{self.tenant}"
        return f"api:{who}:{self.fingerprint}"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _presented_digest(token: str) -> bytes | None:
    """The digest of a token as the client sent it, or None if it cannot be one of ours.

    aiohttp decodes header bytes that are not UTF-8 as lone surrogates ('surrogateescape'); encoding
    back the same way gives the bytes that were sent, which match no configured token (401, not 500).
    """
    try:
        return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
    except UnicodeEncodeError:
        return None


def parse_mapping(mapping: Mapping[str, object], where: str) -> list[tuple[bytes, str]]:
    entries: list[tuple[bytes, str]] = []
    for token, tenant in mapping.items():
        if not isinstance(tenant, str) or not (tenant == OPERATOR or TENANT.match(tenant)):
            raise TokenConfigError(f"{where}: the value of a token must be a tenant id or '*', got {tenant!r}")
        if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
            raise TokenConfigError(f"{where}: tokens must be at least {MIN_TOKEN_LENGTH} characters without "
                                   f"spaces (token for {tenant!r} is not)")
        entries.append((_digest(token), tenant))
    return entries


def parse_env(value: str) -> list[tuple[bytes, str]]:
    mapping: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        token, sep, tenant = item.rpartition("=")
        if not sep or not token:
            raise TokenConfigError("PATCHGATE_API_TOKENS: expected token=tenant pairs separated by commas")
        mapping[token.strip()] = tenant.strip()
    return parse_mapping(mapping, "PATCHGATE_API_TOKENS")


def parse_file(path: Path) -> list[tuple[bytes, str]]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise TokenConfigError(f"PATCHGATE_API_TOKENS_FILE: cannot read {path}: {error}") from None
    try:
        text = raw.decode("utf-8")
        document = json.loads(text) if path.suffix.lower() == ".json" or text.lstrip().startswith("{") \
            else tomllib.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise TokenConfigError(f"{path}: not valid TOML or JSON: {error}") from None
    if not isinstance(document, dict):
        raise TokenConfigError(f"{path}: must hold a table/object of token = tenant")
    table = document.get("tokens", document)
    if not isinstance(table, dict):
        raise TokenConfigError(f"{path}: 'tokens' must be a table/object of token = tenant")
    return parse_mapping(table, str(path))


class TokenStore:
    def __init__(self, entries: list[tuple[bytes, str]], path: Path | None = None) -> None:
        self._entries = entries
        self._path = path
        self._stamp = self._file_stamp()
        self._checked = time.monotonic()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TokenStore:
        environ = os.environ if environ is None else environ
        entries: list[tuple[bytes, str]] = []
        path = Path(environ["PATCHGATE_API_TOKENS_FILE"]) if environ.get("PATCHGATE_API_TOKENS_FILE") else None
        if path is not None:
            entries += parse_file(path)
        if environ.get("PATCHGATE_API_TOKENS"):
            entries += parse_env(environ["PATCHGATE_API_TOKENS"])
        return cls(entries, path)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> TokenStore:
        return cls(parse_mapping(mapping, "tokens"))

    def __len__(self) -> int:
        return len(self._entries)

    def _file_stamp(self) -> tuple[float, int] | None:
        if self._path is None:
            return None
        try:
            stat = self._path.stat()
        except OSError:
            return None
        return (stat.st_mtime, stat.st_size)

    def _maybe_reload(self) -> None:
        if self._path is None or time.monotonic() - self._checked < 1.0:
            return
        self._checked = time.monotonic()
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return
        try:
            entries = parse_file(self._path)
            env = os.environ.get("PATCHGATE_API_TOKENS")
            if env:
                entries += parse_env(env)
        except TokenConfigError:
            return  # keep the tokens in force; a half-written file must not lock everybody out
        self._entries = entries
        self._stamp = stamp

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal of an ``Authorization: Bearer <token>`` header value, or None."""
        self._maybe_reload()
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        presented = _presented_digest(token)
        if presented is None:
            return None
        found: str | None = None
        for digest, tenant in self._entries:  # no early exit: constant time over the table
            if hmac.compare_digest(digest, presented):
                found = tenant
        if found is None:
            return None
        return Principal(found, presented.hex()[:8])
