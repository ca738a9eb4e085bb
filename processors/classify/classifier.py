"""``classify()``: from a message's header block to a verdict about the server that sent it.

Decision order for the topmost Received hop (see :mod:`processors.classify.received` for why only
that hop counts):

* no Received header at all -> ``no_build`` / ``no_received``;
* ``by`` host is Exchange Online (``*.outlook.com`` ...) -> ``cloud`` / ``cloud_hop``;
* an Exchange stamp (``with Microsoft SMTP Server`` / ``with mapi``):

  - without a readable build id -> ``no_build`` / ``version_hidden``;
  - a 15.20+ build (Exchange Online only) -> ``cloud`` / ``cloud_build``;
  - a Pickup-folder submission (``from mail pickup service by EX01 ...``) -> ``no_build`` /
    ``pickup_stamp``. Exchange 2016 stamped an *old* build on such messages although the server was
    patched (a real false positive, fixed by Microsoft in Nov 2024), so this stamp is never taken
    as evidence of a server's build: report-only, the stamped build is named in ``reason`` but
    ``build`` is ``None``. The server's next normally relayed message decides;
  - otherwise the build is judged by :class:`processors.classify.decide.Evaluator`;

* another product's version stamp (Exim, Sendmail, Domino, SMTPSVC, MDaemon, Kerio, CommuniGate,
  IceWarp: :mod:`processors.classify.stamps`) -> judged by
  :class:`processors.classify.product_decide.ProductEvaluator` from the product catalog, with
  ``product``/``version`` set and ``enforced`` saying whether the product's policy enforces it;
* a look-alike or submission stamp, two products in one hop, or a product without a version ->
  ``no_build`` with the recogniser's reason as rule (``look_alike``, ``local_submission``,
  ``ambiguous_stamp``, ``version_unattributed``): never attributed, never enforced;
* a recognisable MTA that stamps no version (Postfix, qmail, any other ``with <protocol>`` stamp)
  -> ``not_exchange`` / ``not_exchange_mta``: a relay in front of an Exchange server hides it, and
  such senders are never enforced on;
* anything else (a Received with neither protocol nor build: stripped by a "header firewall" or
  written by something unidentifiable) -> ``no_build`` / ``version_hidden``.

Garbage never raises: an unexpected internal error becomes ``no_build`` / ``unparseable``.

The server is the topmost hop's ``by`` host (lower-case, no trailing dot) when that hop carries an
Exchange build or a product version (or is a cloud/pickup stamp naming its host); otherwise the
client's HELO name, then its IP address.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Generic, TypeVar

from processors.classify.catalog import BuildTuple, Catalog, format_long, format_short, load_catalog
from processors.classify.decide import (
    CLOUD,
    NO_BUILD,
    NOT_EXCHANGE,
    VULNERABLE_STATUSES,
    Evaluator,
    RecommendedBuild,
    Verdict,
)
from processors.classify.hop_cache import HOP_CACHE_SIZE, HopCache
from processors.classify.policy import ClassificationPolicy, load_policy
from processors.classify.product_decide import ProductEvaluator
from processors.classify.products import ProductCatalog, load_products
from processors.classify.received import (
    MAX_HEADER_FIELDS,
    Hop,
    exchange_stamp,
    is_cloud_host,
    non_exchange_signature,
    normalise_host,
    parse_hop,
    parse_hop_general,
    scan_received,
    stamp_cache_key,
)
from processors.classify.stamps import NO_STAMP, VERSIONED, Stamp, recognise

#: The product id of every Exchange classification.
EXCHANGE = "exchange"


@dataclass(frozen=True, slots=True)
class Connection:
    """The SMTP client as the edge saw it."""

    ip: str
    helo: str | None = None


@dataclass(frozen=True, slots=True)
class ContextHop:
    """A Received hop below the topmost one: context only, never decisive (it may be forged)."""

    by: str | None
    build: str | None
    kind: str  # exchange | pickup | cloud | not_exchange | no_build

    def to_json_dict(self) -> dict[str, Any]:
        return {"by": self.by, "build": self.build, "kind": self.kind}


@dataclass(frozen=True, kw_only=True, slots=True)
class Classification:
    """The verdict about the server that connected to the edge."""

    server: str
    server_source: str  # "by" | "helo" | "ip"
    build: str | None
    build_long: str | None
    #: stable lower-case product id of the software that wrote the deciding hop (``exchange``,
    #: ``exim``, ``sendmail``, ``domino``, ``smtpsvc``, ...), ``None`` when none can be attributed
    product: str | None
    #: the version that hop stamps, in the product's canonical form (Exchange: the short build)
    version: str | None
    #: the product line's name: ``Exchange Server 2016``, ``Exim``, ``HCL Domino``, ...
    product_name: str | None
    release_name: str | None
    status: str
    rule: str
    reason: str
    recommended_builds: tuple[RecommendedBuild, ...]
    hop: str | None
    #: False when the product's policy reports a vulnerable version without enforcing it
    enforced: bool = True
    #: the raw Received values below ``hop`` (at most ``MAX_CONTEXT_HOPS``); see ``context_hops``
    context_raw: tuple[str, ...] = ()
    cloud_host_suffixes: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def context_hops(self) -> tuple[ContextHop, ...]:
        """The hops below the topmost one, parsed on demand (context only, never decisive).

        Parsed lazily: the enforcement path never needs them, and parsing them eagerly would cost
        five times the classification itself.
        """
        return tuple(_context_hop(v, self.cloud_host_suffixes) for v in self.context_raw)

    @property
    def vulnerable(self) -> bool:
        """True for ``behind`` and ``unsupported``."""
        return self.status in VULNERABLE_STATUSES

    @property
    def enforceable(self) -> bool:
        """Vulnerable and its product's policy enforces it (report-only products never are)."""
        return self.enforced and self.status in VULNERABLE_STATUSES

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "server_source": self.server_source,
            "build": self.build,
            "build_long": self.build_long,
            "product": self.product,
            "version": self.version,
            "product_name": self.product_name,
            "release_name": self.release_name,
            "status": self.status,
            "rule": self.rule,
            "vulnerable": self.vulnerable,
            "enforced": self.enforced,
            "reason": self.reason,
            "recommended_builds": [r.to_json_dict() for r in self.recommended_builds],
            "hop": self.hop,
            "context_hops": [h.to_json_dict() for h in self.context_hops],
        }


# The classifier builds one Classification per message, so how it is built matters:
# * calling the class with keywords costs ~5,200 more machine instructions than calling __init__
#   with them: type.__call__ packs the keywords into a dict that __init__ unpacks again;
# * and a call with more than 14 keyword arguments (plus self) compiles to CALL_FUNCTION_EX, which
#   builds that dict anyway: with its 16 fields, calling __init__ with keywords costs ~12,000
#   instructions more than the 13-field record did (callgrind);
# * and a frozen dataclass's __init__ sets each field with object.__setattr__ (a frozen class refuses
#   plain assignment): 16 generic calls, ~13,000 instructions, 0.75 us.
# So the classifier fills a _DraftClassification, a plain class with exactly Classification's slots
# (same names, same order: the same memory layout), by plain assignment (the interpreter's fastest
# store, 0.26 us for all 16), then makes it a Classification by assigning __class__, which Python
# allows between classes of the same layout. The result is a Classification like any other (frozen
# from then on, equal to Classification(...) with the same fields); tests check the layout and the
# result against the class's fields.


class _DraftClassification:
    """A Classification being filled in (see the comment above); never seen outside this module."""

    __slots__ = Classification.__slots__  # type: ignore[attr-defined]  # dataclass(slots=True) sets it


_AS_CLASSIFICATION = Classification


def _build_classification(
    server: str, server_source: str, build: str | None, build_long: str | None, product: str | None,
    version: str | None, product_name: str | None, release_name: str | None, status: str, rule: str,
    reason: str, recommended_builds: tuple[RecommendedBuild, ...], hop: str | None, enforced: bool,
    context_raw: tuple[str, ...], cloud_host_suffixes: tuple[str, ...],
) -> Classification:
    """A Classification from every field, positionally in field order (see the comment above)."""
    c: Any = _DraftClassification()
    c.server = server
    c.server_source = server_source
    c.build = build
    c.build_long = build_long
    c.product = product
    c.version = version
    c.product_name = product_name
    c.release_name = release_name
    c.status = status
    c.rule = rule
    c.reason = reason
    c.recommended_builds = recommended_builds
    c.hop = hop
    c.enforced = enforced
    c.context_raw = context_raw
    c.cloud_host_suffixes = cloud_host_suffixes
    c.__class__ = _AS_CLASSIFICATION
    return c  # type: ignore[no-any-return]


def _with_hop(template: Classification, hop: str, context_raw: tuple[str, ...]) -> Classification:
    """``template`` (a cached classification) for another message: its own hop text and lower hops."""
    t = template
    return _build_classification(
        t.server, t.server_source, t.build, t.build_long, t.product, t.version, t.product_name, t.release_name,
        t.status, t.rule, t.reason, t.recommended_builds, hop, t.enforced, context_raw, t.cloud_host_suffixes,
    )


# ------------------------------------------------------------------------------------------ defaults


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The packaged catalog, loaded once."""
    return load_catalog()


@lru_cache(maxsize=1)
def default_policy() -> ClassificationPolicy:
    """The packaged policy's ``[classification]`` table, loaded once."""
    return load_policy()


@lru_cache(maxsize=1)
def default_products() -> ProductCatalog:
    """The packaged product catalog (``processors/data/products``), loaded once."""
    return load_products()


Source = TypeVar("Source")
Built = TypeVar("Built")


class EvaluatorCache(Generic[Source, Built]):
    """Evaluators per (catalog, policy) object pair: keyed by identity, the pair kept alive with its
    evaluator (so an id is never reused while cached), at most ``size`` of them (the oldest goes)."""

    def __init__(self, build: Callable[[Source, ClassificationPolicy], Built], size: int = 8) -> None:
        self._build = build
        self._size = size
        self._entries: dict[tuple[int, int], tuple[Source, ClassificationPolicy, Built]] = {}
        #: the pair asked for last (almost every call asks for the same one): checked first
        self._last: tuple[Source, ClassificationPolicy, Built] | None = None

    def get(self, source: Source, policy: ClassificationPolicy) -> Built:
        last = self._last
        if last is not None and last[0] is source and last[1] is policy:
            return last[2]
        key = (id(source), id(policy))
        hit = self._entries.get(key)
        if hit is None or hit[0] is not source or hit[1] is not policy:
            hit = (source, policy, self._build(source, policy))
            if len(self._entries) >= self._size:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = hit
        self._last = hit
        return hit[2]


_EVALUATORS: EvaluatorCache[Catalog, Evaluator] = EvaluatorCache(Evaluator)
_PRODUCT_EVALUATORS: EvaluatorCache[ProductCatalog, ProductEvaluator] = EvaluatorCache(ProductEvaluator)


def product_evaluator_for(products: ProductCatalog, policy: ClassificationPolicy) -> ProductEvaluator:
    """A cached :class:`ProductEvaluator` per (product catalog, policy) object pair (bounded)."""
    return _PRODUCT_EVALUATORS.get(products, policy)


def evaluator_for(catalog: Catalog, policy: ClassificationPolicy) -> Evaluator:
    """A cached :class:`Evaluator` per (catalog, policy) object pair (keeps them alive, bounded)."""
    return _EVALUATORS.get(catalog, policy)


class _Judge:
    """What :func:`classify` needs of one (catalog, policy) pair, found with one look-up per call:
    the build evaluator, the policy, its cloud host suffixes and the pair's :class:`HopCache`."""

    __slots__ = ("cloud_hosts", "evaluate", "hops", "policy", "suffixes")

    def __init__(self, catalog: Catalog, policy: ClassificationPolicy) -> None:
        self.evaluate = evaluator_for(catalog, policy).evaluate
        self.policy = policy
        self.suffixes = policy.cloud_host_suffixes
        #: the suffixes without their leading dot: hosts that are cloud hosts themselves
        self.cloud_hosts = frozenset(suffix[1:] for suffix in self.suffixes if suffix.startswith("."))
        self.hops: HopCache[Classification] = HopCache(HOP_CACHE_SIZE)


_JUDGES: EvaluatorCache[Catalog, _Judge] = EvaluatorCache(_Judge)


@lru_cache(maxsize=1)
def _default_judge() -> _Judge:
    """The judge of the packaged catalog and policy (both loaded once): one call instead of three."""
    return _JUDGES.get(default_catalog(), default_policy())


def _judge_for(catalog: Catalog | None, policy: ClassificationPolicy | None) -> _Judge:
    """The judge of a (catalog, policy) pair, ``None`` meaning the packaged one. The packaged pair
    always gets :func:`_default_judge`'s, also when named explicitly: a second judge for it (once
    the bounded cache of judges has dropped the first) would keep a second hop cache."""
    if catalog is None and policy is None:
        return _default_judge()
    catalog = catalog if catalog is not None else default_catalog()
    policy = policy if policy is not None else default_policy()
    if catalog is default_catalog() and policy is default_policy():
        return _default_judge()
    return _JUDGES.get(catalog, policy)


def hop_cache_for(
    catalog: Catalog | None = None, policy: ClassificationPolicy | None = None
) -> HopCache[Classification]:
    """The cache of classifications by topmost hop that :func:`classify` keeps for this (catalog,
    policy) pair (the packaged ones by default): its ``stats()`` give the hit rate."""
    return _judge_for(catalog, policy).hops


# ------------------------------------------------------------------------------------------- helpers


def _utc_day(at: datetime | date) -> date:
    if isinstance(at, datetime):
        if at.tzinfo is not None:
            at = at.astimezone(UTC)
        return at.date()
    return at


_BUILD_TEXTS: dict[BuildTuple, tuple[str, str]] = {}
_BUILD_TEXTS_MAX = 4096


def _build_texts(build: BuildTuple) -> tuple[str, str]:
    """A build's short and long text, via a small bounded table (few distinct builds exist)."""
    hit = _BUILD_TEXTS.get(build)
    if hit is None:
        hit = (format_short(build), format_long(build))
        if len(_BUILD_TEXTS) < _BUILD_TEXTS_MAX:
            _BUILD_TEXTS[build] = hit
    return hit


def _fallback_server(connection: Connection) -> tuple[str, str]:
    helo = normalise_host(connection.helo) if isinstance(connection.helo, str) else None
    if helo:
        return helo, "helo"
    ip = connection.ip.strip().lower() if isinstance(connection.ip, str) else ""
    return (ip[:64] or "unknown"), "ip"


def _context_hop(value: str, suffixes: tuple[str, ...]) -> ContextHop:
    hop = parse_hop(value)
    by = normalise_host(hop.by_host)
    build = hop.build
    short = format_short(build) if build is not None else None
    if is_cloud_host(by, suffixes) or (build is not None and build[0] == 15 and build[1] >= 20):
        kind = "cloud"
    elif hop.is_exchange_stamp:
        kind = "pickup" if hop.is_pickup else ("exchange" if build is not None else "no_build")
    elif non_exchange_signature(hop) is not None:
        kind = "not_exchange"
    else:
        kind = "no_build"
    return ContextHop(by=by, build=short, kind=kind)


def build_bearing_hop(headers: Sequence[tuple[str, str]]) -> str | None:
    """The raw topmost Received value (capped at ``MAX_VALUE_CHARS``), or ``None`` if there is none.

    This is the only hop that decides, so ``(hop, day)`` is a sound cache key for the verdict
    as long as the HELO/IP fallback for the server name is not needed (hops without a build).
    """
    return scan_received(headers)[0]


def server_key(tenant_id: str, classification: Classification, connection: Connection | None = None) -> str:
    """``"<tenant_id>/<server fqdn lower-case>"``: the identity enforcement state is kept under."""
    server = classification.server
    if not server and connection is not None:
        server = _fallback_server(connection)[0]
    return f"{tenant_id}/{server.lower()}"


# -------------------------------------------------------------------------------------------- classify


def classify(
    headers: Sequence[tuple[str, str]],
    connection: Connection,
    at: datetime | date,
    *,
    catalog: Catalog | None = None,
    policy: ClassificationPolicy | None = None,
    products: ProductCatalog | None = None,
    cached: bool = True,
) -> Classification:
    """Classify the server that connected to the edge from the message's header block.

    ``headers``: (name, value) pairs, topmost first, as received (before the edge's own Received).
    ``at``: observation time (tz-aware UTC; a naive datetime is taken as UTC).
    ``catalog``/``policy``/``products`` default to the packaged ones (loaded once).
    ``cached``: look the topmost hop up in (and add it to) the pair's :class:`HopCache` first; the
    result is the same either way (see :func:`_classify`), only the time it takes differs.
    """
    judge = _default_judge() if catalog is None and policy is None else _judge_for(catalog, policy)
    day = at.date() if type(at) is datetime and at.tzinfo is UTC else _utc_day(at)  # the usual case first
    try:
        return _classify(headers, connection, day, judge, products, cached)
    except Exception as exc:  # defensive: garbage must never raise
        server = ("unknown", "ip")
        if isinstance(connection, Connection):
            server = _fallback_server(connection)
        reason = f"The Received headers could not be interpreted ({type(exc).__name__})."
        return _unjudged(server, NO_BUILD, "unparseable", reason, hop=None, context=(), suffixes=())


def _unjudged(
    server: tuple[str, str],
    status: str,
    rule: str,
    reason: str,
    *,
    hop: str | None,
    context: tuple[str, ...],
    suffixes: tuple[str, ...],
    build: BuildTuple | None = None,
    product: str | None = None,
) -> Classification:
    """A classification whose build the evaluator did not judge: no version, nothing recommended.

    ``server`` is the (name, source) pair; ``build``, when given, is shown but not judged;
    ``product``, when given, names the software whose stamp was seen (never enforced here).
    """
    short, long = _build_texts(build) if build else (None, None)
    return _build_classification(
        server[0],  # server
        server[1],  # server_source
        short,  # build
        long,  # build_long
        product,  # product
        short if product else None,  # version
        None,  # product_name
        None,  # release_name
        status,  # status
        rule,  # rule
        reason,  # reason
        (),  # recommended_builds
        hop,  # hop
        False,  # enforced
        context,  # context_raw
        suffixes,  # cloud_host_suffixes
    )


def _classify(
    headers: Sequence[tuple[str, str]],
    connection: Connection,
    day: date,
    judge: _Judge,
    products: ProductCatalog | None,
    cached: bool,
) -> Classification:
    """Find the topmost hop; answer from the hop cache when allowed and it knows the hop, else decide.

    Cached are only results that the hop's text decided by itself: a cloud host or an Exchange
    stamp naming the server in its ``by`` clause. Both are read from the text before the hop's
    date, which :func:`stamp_cache_key` keeps. Never cached: a server named from the connection
    (HELO/IP), and other products' stamps (their recogniser reads the whole value).
    """
    top, context, scanned = scan_received(headers)
    if top is None:
        capped = scanned > MAX_HEADER_FIELDS
        limit = f" in the first {MAX_HEADER_FIELDS} header fields" if capped else ""
        reason = f"The message carries no Received header{limit}, so no server build is visible."
        server = _fallback_server(connection)
        return _unjudged(server, NO_BUILD, "no_received", reason, hop=None, context=context, suffixes=judge.suffixes)
    if not cached:
        return _decide(top, connection, day, judge, products, context)[0]
    key = (stamp_cache_key(top), day)
    hit = judge.hops.get(key)
    if hit is not None:
        return _with_hop(hit, top, context)
    result, cacheable = _decide(top, connection, day, judge, products, context)
    if cacheable and result.server_source == "by":
        judge.hops.put(key, result)
    return result


def _decide(
    top: str,
    connection: Connection,
    day: date,
    judge: _Judge,
    products: ProductCatalog | None,
    context: tuple[str, ...],
) -> tuple[Classification, bool]:
    """The classification the topmost hop ``top`` leads to, and whether its text alone decided it.

    The usual single-line Exchange stamp is read by :func:`exchange_stamp` alone (no :class:`Hop`
    record, never a Pickup stamp); anything else by the general tokeniser.
    """
    suffixes = judge.suffixes
    fields = exchange_stamp(top)
    if fields is not None:
        by = fields[1].strip().rstrip(".").lower() or None  # normalise_host: the pattern allows <= 255 chars
        if by is not None and (by.endswith(suffixes) or by in judge.cloud_hosts):  # is_cloud_host
            return _cloud_hop(top, by, fields[5], connection, context, suffixes), True
        return _classify_exchange_stamp(
            top, by, fields[5], False, connection, day, judge.evaluate, context, suffixes
        ), True
    hop = parse_hop_general(top)
    by = normalise_host(hop.by_host)
    if is_cloud_host(by, suffixes):
        return _cloud_hop(top, by, hop.build, connection, context, suffixes), True
    if hop.is_exchange_stamp:
        return _classify_exchange_stamp(
            top, by, hop.build, hop.is_pickup, connection, day, judge.evaluate, context, suffixes
        ), True
    other = _classify_other_stamp(hop, by, connection, day, (products, judge.policy), context, suffixes)
    return other, False


def _cloud_hop(
    text: str,
    by: str | None,
    build: BuildTuple | None,
    connection: Connection,
    context: tuple[str, ...],
    suffixes: tuple[str, ...],
) -> Classification:
    """The topmost hop was written by an Exchange Online host: never judged."""
    reason = f"The connecting hop {by} is an Exchange Online server, not an on-premises one."
    return _unjudged(
        _by_server(by, connection), CLOUD, "cloud_hop", reason, hop=text, context=context, suffixes=suffixes,
        build=build, product=EXCHANGE if build is not None else None,
    )


def _by_server(by: str | None, connection: Connection) -> tuple[str, str]:
    """The topmost hop's ``by`` host when it names one, else the HELO/IP fallback."""
    return (by, "by") if by else _fallback_server(connection)


def _classify_exchange_stamp(
    text: str,
    by: str | None,
    build: BuildTuple | None,
    pickup: bool,
    connection: Connection,
    day: date,
    evaluate: Callable[[BuildTuple, date], Verdict],
    context: tuple[str, ...],
    suffixes: tuple[str, ...],
) -> Classification:
    """The topmost hop ``text`` is an Exchange stamp (written by ``by`` with ``build``, a Pickup
    submission when ``pickup``): judge its build unless it is hidden, cloud or pickup."""
    if build is None:
        reason = "The topmost Received header is an Exchange stamp without a readable build id."
        server = _fallback_server(connection)
        return _unjudged(server, NO_BUILD, "version_hidden", reason, hop=text, context=context, suffixes=suffixes)
    server = (by, "by") if by else _fallback_server(connection)
    if build[0] == 15 and build[1] >= 20:
        reason = f"Build {format_short(build)} is an Exchange Online build that never shipped on-premises."
        return _unjudged(
            server, CLOUD, "cloud_build", reason, hop=text, context=context, suffixes=suffixes, build=build,
            product=EXCHANGE,
        )
    if pickup:
        reason = (
            "The topmost Received header is a Pickup-folder submission stamp "
            f"(build {format_short(build)}), "
            "which is not reliable evidence of the server's build."
        )
        return _unjudged(server, NO_BUILD, "pickup_stamp", reason, hop=text, context=context, suffixes=suffixes)
    verdict = evaluate(build, day)
    return _build_classification(
        server[0],  # server
        server[1],  # server_source
        verdict.build,  # build
        verdict.build_long,  # build_long
        EXCHANGE if verdict.product is not None else None,  # product
        verdict.build if verdict.product is not None else None,  # version
        verdict.product,  # product_name
        verdict.release_name,  # release_name
        verdict.status,  # status
        verdict.rule,  # rule
        verdict.reason,  # reason
        verdict.recommended_builds,  # recommended_builds
        text,  # hop
        True,  # enforced
        context,  # context_raw
        suffixes,  # cloud_host_suffixes
    )


def _classify_other_stamp(
    hop: Hop,
    by: str | None,
    connection: Connection,
    day: date,
    judged_by: tuple[ProductCatalog | None, ClassificationPolicy],
    context: tuple[str, ...],
    suffixes: tuple[str, ...],
) -> Classification:
    """The topmost hop is not an Exchange stamp: another product's version stamp, a look-alike or a
    submission hop (never attributed), a named MTA that stamps no version, or nothing readable."""
    stamp = recognise(hop.raw)
    if stamp.kind == VERSIONED and stamp.product is not None and stamp.version is not None:
        products, pol = judged_by  # the product evaluator is looked up only here, off the Exchange path
        pev = product_evaluator_for(products if products is not None else default_products(), pol)
        return _product_classification(hop, _by_server(by, connection), stamp, day, pev, context, suffixes)
    server = _fallback_server(connection)
    if stamp.kind != NO_STAMP.kind:
        reason = f"The topmost Received header's version is not attributed: {stamp.detail}."
        return _unjudged(server, NO_BUILD, stamp.kind, reason, hop=hop.raw, context=context, suffixes=suffixes)
    signature = non_exchange_signature(hop)
    if signature is not None:
        reason = f"The connecting server is not Exchange ({signature}); any Exchange behind it is hidden."
        return _unjudged(
            server, NOT_EXCHANGE, "not_exchange_mta", reason, hop=hop.raw, context=context, suffixes=suffixes
        )
    reason = "The topmost Received header names no protocol and no build (stripped or never written)."
    return _unjudged(server, NO_BUILD, "version_hidden", reason, hop=hop.raw, context=context, suffixes=suffixes)


def _product_classification(
    hop: Hop,
    server: tuple[str, str],
    stamp: Stamp,
    day: date,
    pev: ProductEvaluator,
    context: tuple[str, ...],
    suffixes: tuple[str, ...],
) -> Classification:
    """A confidently attributed version stamp of a product other than Exchange, judged by its policy."""
    product, version = stamp.product or "", stamp.version or ""
    verdict = pev.evaluate(product, version, day)
    return _build_classification(
        server[0],  # server
        server[1],  # server_source
        None,  # build
        None,  # build_long
        product,  # product
        version,  # version
        verdict.product_name,  # product_name
        verdict.release_name,  # release_name
        verdict.status,  # status
        verdict.rule,  # rule
        verdict.reason,  # reason
        verdict.recommended,  # recommended_builds
        hop.raw,  # hop
        verdict.enforced,  # enforced
        context,  # context_raw
        suffixes,  # cloud_host_suffixes
    )
