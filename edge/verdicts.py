"""Verdict records, compiled once, and the O(1) decision an edge takes per message.

A ``patchgate.verdict/1`` record (JSON, key = server key) is parsed and validated once, when it
arrives, into a :class:`CompiledVerdict` whose fields are exactly what :meth:`VerdictIndex.decide`
needs: epoch-second floats for the time bounds, the window as minute offsets, and the two possible
:class:`Decision` objects (with their reply lines) preallocated. ``decide`` then does one dict lookup,
a few float comparisons and one modulo, allocates nothing and never raises.

Window semantics: the rule of :mod:`processors.events.verdict` (``window_position``,
``window_action``), inlined in :meth:`CompiledVerdict.decide` on bounds computed once::

    m = (utc_minute(now) - window_offset) % 60
    block if m < block_minutes; throttle if m < block_minutes + throttle_minutes; else accept

A bad value in a field the decision can do without (an entry of ``client_ips``, ``valid_until``,
``paused_until``, ``window_offset``) is skipped alone, as if absent, and counted
(``verdict_fields_skipped``): the verdict keeps enforcing with every other field. Only a record
without a usable key, sequence, stage, start time, minutes or reply line is dropped (``bad_records``).

``paused_until`` in the future, a verdict that is not yet effective (the previous verdict for the key,
if any, stays in force until then) and a verdict past ``valid_until`` all mean accept.

Shadow mode (``"shadow": true``, the tenant's rollout is a dry run): the verdict's throttle and block
decisions are precompiled as acceptances that carry the reply they stand for (``shadow_reply``), so
``decide`` costs the same; the MTA front ends count and log that reply (:mod:`edge.shadow`). A
``shadow`` value that is neither true nor false is counted as a skipped field and read as true: the
field exists only to say "do not enforce", and the edge fails open rather than reject mail on a
garbled one.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from edge.config import normalise_ip
from edge.shadow import ShadowReplies
from processors.errors import PatchgateError
from processors.events.verdict import ACCEPT, BLOCK, THROTTLE, VERDICT_SCHEMA

log = logging.getLogger(__name__)

# One SMTP reply line: 3-digit code, RFC 3463 enhanced code whose class digit equals the code's first
# digit (Postfix milter8_valid_smtp_reply and Exim both insist on that), text without CR/LF/NUL.
_REPLY_RE: Final = re.compile(r"\A([45])\d\d \1\.\d{1,3}\.\d{1,3} [\x20-\x7e]{1,900}\Z")

_MAX_IPS: Final = 64


class Decision:
    """What the edge does with one message from one server. Immutable by convention, shared."""

    __slots__ = ("action", "reason", "reply", "sequence", "server_key", "shadow_reply")

    def __init__(self, action: str, reply: str | None, reason: str, server_key: str | None = None,
                 sequence: int | None = None, shadow_reply: str | None = None) -> None:
        self.action = action
        self.reply = reply
        self.reason = reason
        self.server_key = server_key
        self.sequence = sequence
        #: the reply withheld because the verdict is in shadow mode (``action`` is then accept)
        self.shadow_reply = shadow_reply

    @property
    def enforced(self) -> bool:
        return self.action != ACCEPT

    def __repr__(self) -> str:
        return (f"Decision(action={self.action!r}, reason={self.reason!r}, reply={self.reply!r}, "
                f"server_key={self.server_key!r}, sequence={self.sequence!r}, shadow_reply={self.shadow_reply!r})")


# Shared accept decisions, one per reason, so decide() allocates nothing.
ACCEPT_UNKNOWN: Final = Decision(ACCEPT, None, "no-verdict")
ACCEPT_FAIL_OPEN: Final = Decision(ACCEPT, None, "fail-open-not-caught-up")
ACCEPT_PAUSED: Final = Decision(ACCEPT, None, "paused")
ACCEPT_OUTSIDE_WINDOW: Final = Decision(ACCEPT, None, "outside-window")
ACCEPT_NOT_EFFECTIVE: Final = Decision(ACCEPT, None, "not-yet-effective")
ACCEPT_EXPIRED: Final = Decision(ACCEPT, None, "expired")
ACCEPT_OUT_OF_SCOPE: Final = Decision(ACCEPT, None, "out-of-scope")
ACCEPT_CURRENT_BUILD: Final = Decision(ACCEPT, None, "current-build")


class BadVerdict(PatchgateError, ValueError):
    """A verdict record that cannot be applied; the message says which field and why."""


class CompiledVerdict:
    """A verdict reduced to what a decision needs; built once per record by :func:`compile_verdict`."""

    __slots__ = (
        "block_decision", "block_end", "client_ips", "effective_at", "paused_until", "previous",
        "raw", "sequence", "server_key", "shadow", "stage", "throttle_decision", "throttle_end", "valid_until",
        "window_offset",
    )

    def __init__(self, *, server_key: str, sequence: int, stage: int, effective_at: float,
                 valid_until: float, paused_until: float, window_offset: int, block_minutes: int,
                 throttle_minutes: int, block_reply: str | None, throttle_reply: str | None,
                 client_ips: tuple[str, ...], raw: dict[str, Any], shadow: bool = False) -> None:
        self.server_key = server_key
        self.sequence = sequence
        self.stage = stage
        self.effective_at = effective_at
        self.valid_until = valid_until
        self.paused_until = paused_until
        self.window_offset = window_offset
        self.block_end = block_minutes
        self.throttle_end = min(60, block_minutes + throttle_minutes)
        self.shadow = shadow
        if shadow:  # accept, carrying the reply it stands for
            self.block_decision = Decision(ACCEPT, None, "shadow-block-window", server_key, sequence, block_reply)
            self.throttle_decision = Decision(ACCEPT, None, "shadow-throttle-window", server_key, sequence,
                                              throttle_reply)
        else:
            self.block_decision = Decision(BLOCK, block_reply, "block-window", server_key, sequence)
            self.throttle_decision = Decision(THROTTLE, throttle_reply, "throttle-window", server_key, sequence)
        self.client_ips = client_ips
        self.raw = raw
        # The verdict this one replaces, kept only while this one is not yet effective.
        self.previous: CompiledVerdict | None = None

    def decide(self, now: float) -> Decision:
        """Decision for ``now`` (epoch seconds), ignoring the caught-up state of any cache."""
        v: CompiledVerdict | None = self
        if now < self.effective_at:
            v = self.previous
            if v is None or now < v.effective_at:
                return ACCEPT_NOT_EFFECTIVE
        assert v is not None
        if now >= v.valid_until:
            return ACCEPT_EXPIRED
        if now < v.paused_until:
            return ACCEPT_PAUSED
        # Epoch seconds are aligned to UTC hours, so this is the UTC minute of the hour.
        m = (int(now // 60.0) - v.window_offset) % 60
        if m < v.block_end:
            return v.block_decision
        if m < v.throttle_end:
            return v.throttle_decision
        return ACCEPT_OUTSIDE_WINDOW

    def __repr__(self) -> str:
        return (f"CompiledVerdict({self.server_key!r}, seq={self.sequence}, stage={self.stage}, "
                f"block={self.block_end}, throttle={self.throttle_end - self.block_end}, "
                f"offset={self.window_offset}{', shadow' if self.shadow else ''})")


def _time(record: dict[str, Any], field: str, *, required: bool) -> float | None:
    value = record.get(field)
    if value is None:
        if required:
            raise BadVerdict(f"{field}: missing")
        return None
    if not isinstance(value, str):
        raise BadVerdict(f"{field}: expected an RFC 3339 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadVerdict(f"{field}: not an RFC 3339 timestamp: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise BadVerdict(f"{field}: timestamp without a UTC offset: {value[:40]!r}")
    return parsed.timestamp()


def _int(record: dict[str, Any], field: str, lo: int, hi: int, *, default: int | None = None) -> int:
    value = record.get(field, default)
    if value is None:
        raise BadVerdict(f"{field}: missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadVerdict(f"{field}: expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise BadVerdict(f"{field}: {value} outside {lo}..{hi}")
    return value


def _reply(replies: dict[str, Any], name: str, first_digit: str, needed: bool) -> str | None:
    value = replies.get(name)
    if value is None or value == "":
        if needed:
            raise BadVerdict(f"replies.{name}: missing although {name}_minutes > 0")
        return None
    if not isinstance(value, str) or not _REPLY_RE.match(value) or value[0] != first_digit:
        raise BadVerdict(f"replies.{name}: not a valid {first_digit}xx SMTP reply line: {str(value)[:80]!r}")
    return value


def _optional(problems: list[str] | None, parse: Any, *args: Any, **kwargs: Any) -> Any:
    """``parse(*args)``, or None (the field skipped, the problem noted) if it raises BadVerdict."""
    try:
        return parse(*args, **kwargs)
    except BadVerdict as exc:
        if problems is not None:
            problems.append(str(exc))
        return None


def _client_ips(record: dict[str, Any], problems: list[str] | None) -> tuple[str, ...]:
    ips_raw = record.get("client_ips") or ()
    if not isinstance(ips_raw, list | tuple):
        _optional(problems, _fail, "client_ips: expected a list of IP addresses")
        return ()
    ips: list[str] = []
    for ip in ips_raw[:_MAX_IPS]:
        normalised = normalise_ip(ip) if isinstance(ip, str) else None
        if normalised is None:
            _optional(problems, _fail, f"client_ips: not an IP address: {str(ip)[:60]!r}")
        else:
            ips.append(normalised)
    return tuple(ips)


def _of_tenant(server_key: str, tenant: str) -> bool:
    """Whether ``server_key`` (``<tenant>/<server>``) belongs to ``tenant``."""
    return server_key.startswith(tenant) and server_key[len(tenant):len(tenant) + 1] == "/"


def _fail(message: str) -> None:
    raise BadVerdict(message)


def _shadow(record: dict[str, Any], problems: list[str] | None) -> bool:
    """The ``shadow`` flag: absent or false enforces; true, and any other value (noted), is shadow mode."""
    value = record.get("shadow", False)
    if value is False or value is True:
        return value
    _optional(problems, _fail, f"shadow: expected true or false, got {str(value)[:40]!r} (read as true: "
                               "shadow mode, the edge accepts)")
    return True


def compile_verdict(record: Any, *, key: str | None = None, problems: list[str] | None = None) -> CompiledVerdict:
    """Validate a decoded verdict record and precompute it. Raises :class:`BadVerdict` when a field
    the decision needs is bad; a bad optional field is skipped and described in ``problems``."""
    if not isinstance(record, dict):
        raise BadVerdict(f"verdict: expected a JSON object, got {type(record).__name__}")
    if record.get("schema") != VERDICT_SCHEMA:
        raise BadVerdict(f"schema: expected {VERDICT_SCHEMA!r}, got {str(record.get('schema'))[:40]!r}")
    server_key = record.get("server_key")
    if not isinstance(server_key, str) or "/" not in server_key or len(server_key) > 600:
        raise BadVerdict(f"server_key: expected '<tenant>/<fqdn>', got {str(server_key)[:80]!r}")
    if key is not None and key != server_key:
        raise BadVerdict(f"server_key {server_key[:80]!r} differs from the record key {key[:80]!r}")
    sequence = _int(record, "sequence", 0, 2**63 - 1)
    stage = _int(record, "stage", 0, 32)
    block_minutes = _int(record, "block_minutes", 0, 60, default=0)
    throttle_minutes = _int(record, "throttle_minutes", 0, 60, default=0)
    window_offset = _optional(problems, _int, record, "window_offset", 0, 59, default=0) or 0
    effective_at = _time(record, "effective_at", required=True)
    assert effective_at is not None
    valid_until = _optional(problems, _time, record, "valid_until", required=False)
    paused_until = _optional(problems, _time, record, "paused_until", required=False)
    replies = record.get("replies") or {}
    if not isinstance(replies, dict):
        raise BadVerdict("replies: expected an object")
    block_reply = _reply(replies, "block", "5", block_minutes > 0)
    throttle_reply = _reply(replies, "throttle", "4", throttle_minutes > 0 and block_minutes < 60)
    ips = _client_ips(record, problems)
    return CompiledVerdict(
        server_key=server_key, sequence=sequence, stage=stage, effective_at=effective_at,
        valid_until=float("inf") if valid_until is None else valid_until,
        paused_until=0.0 if paused_until is None else paused_until,
        window_offset=window_offset, block_minutes=block_minutes, throttle_minutes=throttle_minutes,
        block_reply=block_reply, throttle_reply=throttle_reply, client_ips=ips, raw=record,
        shadow=_shadow(record, problems),
    )


def message_decision(index: VerdictIndex, server_key: str, now: float, *, in_scope: bool,
                     status: str) -> Decision:
    """The edge's answer to one classified message, before any client-IP hint (milter steps 4-6).

    Mail over a connector outside the enforcement scope is accepted, and so is a message whose own
    build is acceptable (``status`` ``current``: patching lifts enforcement with the first message
    that shows it); anything else is answered by the server's verdict at ``now``. ``patchgate
    whatif`` answers its simulated messages with this function, the milter its real ones.
    """
    if not in_scope:
        return ACCEPT_OUT_OF_SCOPE
    if status == "current":
        return ACCEPT_CURRENT_BUILD
    return index.decide(server_key, now)


@dataclass(slots=True)
class CacheMetrics:
    """Plain counters (logged and exported by :mod:`edge.cli`). Each is written by one thread only."""

    decisions_accept: int = 0
    decisions_throttle: int = 0
    decisions_block: int = 0
    decisions_fail_open: int = 0
    decisions_no_verdict: int = 0
    verdicts_applied: int = 0
    verdicts_stale_ignored: int = 0
    tombstones_applied: int = 0
    bad_records: int = 0
    verdict_fields_skipped: int = 0
    verdicts_foreign_tenant: int = 0
    consumer_errors: int = 0
    ips_learned: int = 0


class VerdictIndex:
    """The newest compiled verdict per server key, plus client IP → server key hints.

    Writers (the Kafka thread) call :meth:`apply`/:meth:`apply_raw`; readers (the asyncio loop) call
    :meth:`decide`. Single dict reads and writes are atomic in CPython, so no lock is needed; the
    counters are each written by one side only.
    """

    def __init__(self, *, max_learned_ips: int = 100_000) -> None:
        self._verdicts: dict[str, CompiledVerdict] = {}
        self._ip_from_verdicts: dict[str, str] = {}
        self._ip_learned: dict[str, str] = {}
        self._max_learned_ips = max_learned_ips
        self.metrics = CacheMetrics()
        #: withheld replies of shadowed verdicts, counted and logged by the MTA front ends
        self.shadow = ShadowReplies()
        # Until True, decide() fails open. VerdictCache sets it once the topic was read to its end.
        self.caught_up = False

    # -- reading -----------------------------------------------------------------------------

    def decide(self, server_key: str, now: float) -> Decision:
        """Accept, throttle or block for ``server_key`` at ``now`` (epoch seconds). O(1), no I/O."""
        m = self.metrics
        if not self.caught_up:
            m.decisions_fail_open += 1
            m.decisions_accept += 1
            return ACCEPT_FAIL_OPEN
        v = self._verdicts.get(server_key)
        if v is None:
            m.decisions_no_verdict += 1
            m.decisions_accept += 1
            return ACCEPT_UNKNOWN
        d = v.decide(now)
        if d.action == ACCEPT:
            m.decisions_accept += 1
        elif d.action == BLOCK:
            m.decisions_block += 1
        else:
            m.decisions_throttle += 1
        return d

    def get(self, server_key: str) -> CompiledVerdict | None:
        return self._verdicts.get(server_key)

    def __len__(self) -> int:
        return len(self._verdicts)

    def server_key_for_ip(self, ip: str) -> str | None:
        """The server key last seen for a client IP: from verdicts first, else learned locally."""
        key = self._ip_from_verdicts.get(ip)
        if key is None:
            key = self._ip_learned.get(ip)
        return key

    def learn_ip(self, ip: str, server_key: str) -> None:
        """Remember that ``ip`` sent mail classified as ``server_key`` (bounded; oldest dropped)."""
        learned = self._ip_learned
        if learned.get(ip) == server_key:
            return
        learned.pop(ip, None)
        learned[ip] = server_key
        self.metrics.ips_learned += 1
        if len(learned) > self._max_learned_ips:
            learned.pop(next(iter(learned)), None)

    def snapshot(self) -> list[dict[str, Any]]:
        """The raw records currently held, sorted by key (for ``cache-dump``)."""
        return [self._verdicts[k].raw for k in sorted(self._verdicts)]

    # -- writing -----------------------------------------------------------------------------

    def apply(self, verdict: CompiledVerdict) -> bool:
        """Store ``verdict`` unless an equal or newer sequence is held. True if stored."""
        old = self._verdicts.get(verdict.server_key)
        if old is not None:
            if verdict.sequence <= old.sequence:
                self.metrics.verdicts_stale_ignored += 1
                return False
            # Keep the old verdict in force until the new one takes effect; only one step back.
            old.previous = None
            verdict.previous = old
            for ip in old.client_ips:
                if self._ip_from_verdicts.get(ip) == old.server_key:
                    del self._ip_from_verdicts[ip]
        for ip in verdict.client_ips:
            self._ip_from_verdicts[ip] = verdict.server_key
        self._verdicts[verdict.server_key] = verdict
        self.metrics.verdicts_applied += 1
        return True

    def remove(self, server_key: str) -> None:
        old = self._verdicts.pop(server_key, None)
        self.metrics.tombstones_applied += 1
        if old is not None:
            for ip in old.client_ips:
                if self._ip_from_verdicts.get(ip) == server_key:
                    del self._ip_from_verdicts[ip]

    def apply_raw(self, key: bytes | None, value: bytes | None, tenant: str | None = None) -> bool:
        """Apply one Kafka record (tombstone when ``value`` is None). Bad input is counted, never raised.

        ``tenant``: the tenant the record's topic belongs to (per-tenant topic mode); a record whose key
        (or, without a key, whose ``server_key``) names another tenant is discarded and counted in
        ``verdicts_foreign_tenant``, whatever else it holds."""
        try:
            key_text = key.decode("utf-8") if key is not None else None
        except UnicodeDecodeError:
            self._bad("record key is not UTF-8", key)
            return False
        if tenant is not None and key_text is not None and not _of_tenant(key_text, tenant):
            return self._foreign(tenant, key)
        if value is None:
            if key_text is None:
                self._bad("tombstone without a key", key)
                return False
            self.remove(key_text)
            return True
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            self._bad(f"not JSON: {exc}", key)
            return False
        problems: list[str] = []
        try:
            verdict = compile_verdict(record, key=key_text, problems=problems)
        except BadVerdict as exc:
            self._bad(str(exc), key)
            return False
        if tenant is not None and not _of_tenant(verdict.server_key, tenant):  # keyless: the record names it
            return self._foreign(tenant, verdict.server_key.encode())
        if problems:
            self._skipped(problems, key)
        return self.apply(verdict)

    def _foreign(self, tenant: str, key: bytes | None) -> bool:
        self.metrics.verdicts_foreign_tenant += 1
        n = self.metrics.verdicts_foreign_tenant
        if n <= 10 or n % 1000 == 0:  # bounded, like bad records
            log.warning("verdict of another tenant discarded (#%d): key=%r on a topic of tenant %r", n,
                        (key or b"")[:120], tenant)
        return False

    def _skipped(self, problems: list[str], key: bytes | None) -> None:
        before = self.metrics.verdict_fields_skipped
        self.metrics.verdict_fields_skipped += len(problems)
        if before < 10 or before // 1000 != self.metrics.verdict_fields_skipped // 1000:
            log.warning("verdict for key=%r applied without %d bad field(s): %s", (key or b"")[:120],
                        len(problems), "; ".join(problems)[:500])

    def _bad(self, why: str, key: bytes | None) -> None:
        self.metrics.bad_records += 1
        n = self.metrics.bad_records
        # Log the first ten, then every 1000th, so a poisoned topic cannot flood the log.
        if n <= 10 or n % 1000 == 0:
            log.warning("verdict record ignored (bad record #%d, key=%r): %s", n, (key or b"")[:120], why)
