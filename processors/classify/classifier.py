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
)
from processors.classify.policy import ClassificationPolicy, load_policy
from processors.classify.product_decide import ProductEvaluator
from processors.classify.products import ProductCatalog, load_products
from processors.classify.received import (
    MAX_HEADER_FIELDS,
    Hop,
    collect_received,
    is_cloud_host,
    non_exchange_signature,
    normalise_host,
    parse_hop,
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
#   instructions more than the 13-field record did (callgrind).
# So the classifier allocates the object and sets the fields itself, passed positionally to
# _build_classification, exactly as the dataclass __init__ does (object.__setattr__, field by field):
# same fields, same result as Classification(...). A test checks both against the class's fields.
_new_object = object.__new__
_set = object.__setattr__


def _build_classification(
    server: str, server_source: str, build: str | None, build_long: str | None, product: str | None,
    version: str | None, product_name: str | None, release_name: str | None, status: str, rule: str,
    reason: str, recommended_builds: tuple[RecommendedBuild, ...], hop: str | None, enforced: bool,
    context_raw: tuple[str, ...], cloud_host_suffixes: tuple[str, ...],
) -> Classification:
    """A Classification from every field, positionally in field order (see the comment above)."""
    c = _new_object(Classification)
    _set(c, "server", server)
    _set(c, "server_source", server_source)
    _set(c, "build", build)
    _set(c, "build_long", build_long)
    _set(c, "product", product)
    _set(c, "version", version)
    _set(c, "product_name", product_name)
    _set(c, "release_name", release_name)
    _set(c, "status", status)
    _set(c, "rule", rule)
    _set(c, "reason", reason)
    _set(c, "recommended_builds", recommended_builds)
    _set(c, "hop", hop)
    _set(c, "enforced", enforced)
    _set(c, "context_raw", context_raw)
    _set(c, "cloud_host_suffixes", cloud_host_suffixes)
    return c


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

    def get(self, source: Source, policy: ClassificationPolicy) -> Built:
        key = (id(source), id(policy))
        hit = self._entries.get(key)
        if hit is not None and hit[0] is source and hit[1] is policy:
            return hit[2]
        built = self._build(source, policy)
        if len(self._entries) >= self._size:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (source, policy, built)
        return built


_EVALUATORS: EvaluatorCache[Catalog, Evaluator] = EvaluatorCache(Evaluator)
_PRODUCT_EVALUATORS: EvaluatorCache[ProductCatalog, ProductEvaluator] = EvaluatorCache(ProductEvaluator)


def product_evaluator_for(products: ProductCatalog, policy: ClassificationPolicy) -> ProductEvaluator:
    """A cached :class:`ProductEvaluator` per (product catalog, policy) object pair (bounded)."""
    return _PRODUCT_EVALUATORS.get(products, policy)


def evaluator_for(catalog: Catalog, policy: ClassificationPolicy) -> Evaluator:
    """A cached :class:`Evaluator` per (catalog, policy) object pair (keeps them alive, bounded)."""
    return _EVALUATORS.get(catalog, policy)


# ------------------------------------------------------------------------------------------- helpers


def _utc_day(at: datetime | date) -> date:
    if isinstance(at, datetime):
        if at.tzinfo is not None:
            at = at.astimezone(UTC)
        return at.date()
    return at


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
    return collect_received(headers).top


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
) -> Classification:
    """Classify the server that connected to the edge from the message's header block.

    ``headers``: (name, value) pairs, topmost first, as received (before the edge's own Received).
    ``at``: observation time (tz-aware UTC; a naive datetime is taken as UTC).
    ``catalog``/``policy``/``products`` default to the packaged ones (loaded once).
    """
    cat = catalog if catalog is not None else default_catalog()
    pol = policy if policy is not None else default_policy()
    ev = evaluator_for(cat, pol)
    day = _utc_day(at)
    try:
        return _classify(headers, connection, day, ev, products, pol)
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
    return _build_classification(
        server[0],  # server
        server[1],  # server_source
        format_short(build) if build else None,  # build
        format_long(build) if build else None,  # build_long
        product,  # product
        format_short(build) if build and product else None,  # version
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
    ev: Evaluator,
    products: ProductCatalog | None,
    pol: ClassificationPolicy,
) -> Classification:
    suffixes = pol.cloud_host_suffixes
    block = collect_received(headers)
    context = block.lower
    if block.top is None:
        capped = block.fields_scanned > MAX_HEADER_FIELDS
        limit = f" in the first {MAX_HEADER_FIELDS} header fields" if capped else ""
        reason = f"The message carries no Received header{limit}, so no server build is visible."
        server = _fallback_server(connection)
        return _unjudged(server, NO_BUILD, "no_received", reason, hop=None, context=context, suffixes=suffixes)
    hop = parse_hop(block.top)
    by = normalise_host(hop.by_host)
    if is_cloud_host(by, suffixes):
        reason = f"The connecting hop {by} is an Exchange Online server, not an on-premises one."
        server = _by_server(by, connection)
        return _unjudged(
            server, CLOUD, "cloud_hop", reason, hop=hop.raw, context=context, suffixes=suffixes, build=hop.build,
            product=EXCHANGE if hop.build is not None else None,
        )
    if hop.is_exchange_stamp:
        return _classify_exchange_stamp(hop, by, connection, day, ev, context, suffixes)
    return _classify_other_stamp(hop, by, connection, day, (products, pol), context, suffixes)


def _by_server(by: str | None, connection: Connection) -> tuple[str, str]:
    """The topmost hop's ``by`` host when it names one, else the HELO/IP fallback."""
    return (by, "by") if by else _fallback_server(connection)


def _classify_exchange_stamp(
    hop: Hop,
    by: str | None,
    connection: Connection,
    day: date,
    ev: Evaluator,
    context: tuple[str, ...],
    suffixes: tuple[str, ...],
) -> Classification:
    """The topmost hop is an Exchange stamp: judge its build unless it is hidden, cloud or pickup."""
    build = hop.build
    text = hop.raw
    if build is None:
        reason = "The topmost Received header is an Exchange stamp without a readable build id."
        server = _fallback_server(connection)
        return _unjudged(server, NO_BUILD, "version_hidden", reason, hop=text, context=context, suffixes=suffixes)
    server = _by_server(by, connection)
    if build[0] == 15 and build[1] >= 20:
        reason = f"Build {format_short(build)} is an Exchange Online build that never shipped on-premises."
        return _unjudged(
            server, CLOUD, "cloud_build", reason, hop=text, context=context, suffixes=suffixes, build=build,
            product=EXCHANGE,
        )
    if hop.is_pickup:
        reason = (
            "The topmost Received header is a Pickup-folder submission stamp "
            f"(build {format_short(build)}), "
            "which is not reliable evidence of the server's build."
        )
        return _unjudged(server, NO_BUILD, "pickup_stamp", reason, hop=text, context=context, suffixes=suffixes)
    verdict = ev.evaluate(build, day)
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
