"""Received-header parsing: which server connected, and which build it wrote.

The header list is the message's header block as the edge received it, topmost first, *before* the
edge added its own ``Received``. So the topmost ``Received`` was written by the server that connected
to the edge; its ``by`` host is that server and its ``with Microsoft SMTP Server ... id <build>`` (or
``with mapi id <long build>``) is that server's build. Only this hop decides. Every hop below it can
be forged by anyone upstream, so lower hops are parsed for context only (``context_hops``) and can
never make a server look older or newer.

Parsing is a linear tokeniser (``str`` methods plus one regex that matches single characters), never
a backtracking pattern, and it reads a bounded amount of input:

* ``MAX_HEADER_FIELDS``: header fields scanned looking for ``Received`` (they sit at the top);
* ``MAX_CONTEXT_HOPS``: lower ``Received`` headers parsed for context;
* ``MAX_VALUE_CHARS``: characters of one header value read (real Received values are < 1 kB);
* ``MAX_TOKENS``: words of one value's clause part tokenised.

Nothing here raises on malformed input; the worst outcome is a hop with no fields.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from processors.classify.catalog import BuildTuple, parse_build

MAX_HEADER_FIELDS = 1000
MAX_CONTEXT_HOPS = 8
MAX_VALUE_CHARS = 4096
MAX_TOKENS = 64
MAX_COMMENTS = 16
MAX_HOST_CHARS = 255

_KEYWORDS = frozenset({"from", "by", "via", "with", "id", "for"})
_SPECIALS = re.compile(r"[()\\]")
_PARENS = re.compile(r"([()])")
#: a comment with at most one level of comments inside; what it captures is the comment's text
_FLAT_COMMENT = re.compile(r"\(([^()]*+(?:\([^()]*+\)[^()]*+)*+)\)")
_FOLD = re.compile(r"[\r\n\t]")
_MTA_COMMENTS = ("postfix", "exim", "qmail")
_SENDMAIL_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+/[0-9]+\.[0-9]+\.[0-9]+")

# Fast path for the usual single-line Exchange stamp, tried with re.match (anchored) on ASCII values
# without CR/LF/TAB. No nested quantifiers; every repeated class is disjoint from what follows it,
# so it runs in linear time. Anything it does not match exactly goes to the general tokeniser, and
# the tests check that both agree wherever the fast path matches. Every quantifier and optional
# group is possessive: what follows each one can never start inside it, so giving back characters
# could never lead to a match, and the engine does not keep what it would need to try (15 % faster).
# It is tried first as Exchange writes it (case-sensitive: a quarter faster), then case-insensitively;
# both capture the same groups.
_NOT_KEYWORD = r"(?!(?i:from|by|via|with|id|for) )"  # a clause keyword is never a host (as in the tokeniser)
_FAST_EXCHANGE_PATTERN = (
    rf"(?:from {_NOT_KEYWORD}(?P<frm>[^ ();\\]++) (?:\([^()\\]*+\) )?+)?+"
    rf"by {_NOT_KEYWORD}(?P<by>[^ ();\\]{{1,255}}+)(?: \([^()\\]*+\))?+ "
    r"with (?P<with>Microsoft SMTP Server|mapi)(?: \([^()\\]*+\))?+ "
    r"id (?P<id>[0-9]{1,6}+\.[0-9]{1,6}+\.[0-9]{1,6}+\.[0-9]{1,6}+)"
    r"(?: via (?P<via>[A-Za-z]++ Transport))?+;"
)
_FAST_EXCHANGE_EXACT = re.compile(_FAST_EXCHANGE_PATTERN)
_FAST_EXCHANGE = re.compile(_FAST_EXCHANGE_PATTERN, re.IGNORECASE)

#: Every spelling of the header name ``Received`` (all 256 ASCII case variants: no other character
#: lower-cases to one of its letters, so this is exactly ``len(name) == 8 and name.lower() == "received"``),
#: for one set look-up per header field instead of a comparison, a length and a lower-casing.
RECEIVED_SPELLINGS = frozenset(
    "".join(c.upper() if (mask >> i) & 1 else c for i, c in enumerate("received")) for mask in range(256)
)

#: What :func:`exchange_stamp` reads from a stamp: ``from`` text (``None`` when absent), ``by`` host,
#: ``with`` text, ``id`` token, ``via`` text (``None`` when absent) and the build.
ExchangeFields = tuple[str | None, str, str, str, str | None, BuildTuple]


class Hop(NamedTuple):
    """The clauses of one Received value. Text fields are as written (comments removed).

    ``build`` is the Exchange build of the ``id`` clause when the hop is an Exchange stamp
    (``with Microsoft SMTP Server`` / ``with mapi``), else ``None``.

    Built with keywords (through ``_new_hop``). It stays a NamedTuple, not a keyword-only frozen
    dataclass, because one is built per message on the classifier's hot path, where the dataclass's
    frozen ``__init__`` costs about 0.8 us more.
    """

    raw: str
    from_text: str | None
    by_host: str | None
    with_text: str | None
    id_token: str | None
    via: str | None
    comments: tuple[str, ...]
    is_exchange_stamp: bool
    build: BuildTuple | None

    @property
    def with_lower(self) -> str:
        return (self.with_text or "").lower()

    @property
    def is_pickup(self) -> bool:
        """A Pickup-folder (or replay) submission stamp: ``from mail pickup service by ...``."""
        return (self.from_text or "").lower().startswith("mail pickup service")


# One Hop is built per message. Calling the class with its nine keywords costs about 4,400 more
# machine instructions (~5 % of classify()) than calling its __new__ with them: type.__call__ packs
# the keywords into a dict that __new__ unpacks again. Same fields, same result as Hop(...).
_new_hop = Hop.__new__


def unfold(value: str) -> str:
    """Undo header folding and normalise whitespace runs to one space (bounded input assumed)."""
    return " ".join(_FOLD.sub(" ", value).split())


def _split_comments(text: str) -> tuple[str, tuple[str, ...]]:
    """Remove ``( ... )`` comments (nested, with ``\\`` quoted pairs). Returns text and top-level comments.

    Linear: one pass over the special characters. An unclosed comment swallows the rest. Text without
    quoted pairs (nearly all) takes :func:`_split_plain_comments`, which gives the same result.
    """
    if "\\" not in text:
        return _split_plain_comments(text)
    return _split_quoted_comments(text)


def _split_quoted_comments(text: str) -> tuple[str, tuple[str, ...]]:
    """:func:`_split_comments` for any text: one pass over the special characters."""
    depth = 0
    skip = -1
    last = 0
    start = 0
    parts: list[str] = []
    comments: list[str] = []
    for m in _SPECIALS.finditer(text):
        pos = m.start()
        if pos <= skip:
            continue
        ch = text[pos]
        if ch == "\\":
            if depth > 0:
                skip = pos + 1
            continue
        if ch == "(":
            if depth == 0:
                parts.append(text[last:pos])
                start = pos + 1
            depth += 1
        elif depth > 0:  # ')'
            depth -= 1
            if depth == 0:
                if len(comments) < MAX_COMMENTS:
                    comments.append(text[start:pos].strip())
                last = pos + 1
                parts.append(" ")
        # a stray ')' outside comments is ordinary text
    if depth == 0:
        parts.append(text[last:])
    elif len(comments) < MAX_COMMENTS:
        comments.append(text[start:].strip())
    return "".join(parts), tuple(comments)


def _split_plain_comments(text: str) -> tuple[str, tuple[str, ...]]:
    """:func:`_split_comments` for text without ``\\``.

    Usual comments nest at most once (``(using TLSv1.3 ... (256/256 bits))``): one split at such
    comments gives text and comments alternately. When a ``(`` is left in the text (deeper nesting,
    an unclosed comment), :func:`_split_nested_comments` reads it instead.
    """
    pieces = _FLAT_COMMENT.split(text)
    texts = pieces[0::2]
    joined = " ".join(texts)
    if "(" in joined:
        return _split_nested_comments(text)
    return joined, tuple([comment.strip() for comment in pieces[1 : 2 * MAX_COMMENTS : 2]])


def _split_nested_comments(text: str) -> tuple[str, tuple[str, ...]]:
    """:func:`_split_comments` for text without ``\\``: one split at the parentheses (no match
    object per parenthesis), then one pass over the pieces."""
    depth = 0
    parts: list[str] = []
    inside: list[str] = []  # the pieces of the top-level comment being read
    comments: list[str] = []
    for piece in _PARENS.split(text):
        if piece == "(":
            if depth:
                inside.append(piece)
            depth += 1
        elif piece == ")" and depth:
            depth -= 1
            if depth:
                inside.append(piece)
            else:
                if len(comments) < MAX_COMMENTS:
                    comments.append("".join(inside).strip())
                inside = []
                parts.append(" ")
        elif depth:
            inside.append(piece)
        else:  # text, or a stray ')' outside comments (ordinary text)
            parts.append(piece)
    if depth and len(comments) < MAX_COMMENTS:
        comments.append("".join(inside).strip())
    return "".join(parts), tuple(comments)


_BUILD_CACHE: dict[str, BuildTuple] = {}
_BUILD_CACHE_MAX = 4096


def _build_of(ident: str) -> BuildTuple:
    """The build tuple of a fast-path ``id`` (four dot-separated numbers, at most six digits each),
    via a small bounded cache (few distinct builds exist)."""
    hit = _BUILD_CACHE.get(ident)
    if hit is None:
        b1, b2, b3, b4 = ident.split(".")
        hit = (int(b1), int(b2), int(b3), int(b4))
        if len(_BUILD_CACHE) < _BUILD_CACHE_MAX:
            _BUILD_CACHE[ident] = hit
    return hit


def _is_exchange_with(with_text: str | None) -> bool:
    w = (with_text or "").lower()
    return w.startswith("microsoft smtp server") or w == "mapi"


def exchange_stamp(raw: str) -> ExchangeFields | None:
    """The fields of a usual single-line Exchange stamp (``[from X [(c)]] by Y [(c)] with Microsoft
    SMTP Server|mapi [(c)] id <build> [via Z Transport];``), or ``None`` for anything else.

    ``raw`` must already be capped at ``MAX_VALUE_CHARS``. Where it answers, :func:`parse_hop_general`
    reads the same fields (tests check this). Such a stamp is never a Pickup submission: its ``from``
    text is one word.
    """
    if not raw.isascii() or "\n" in raw or "\r" in raw or "\t" in raw:
        return None
    m = _FAST_EXCHANGE_EXACT.match(raw)
    if m is None:  # in another case? (the case-insensitive pattern only where it can match)
        low = raw.lower()
        if "microsoft smtp server" not in low and "mapi" not in low:
            return None
        m = _FAST_EXCHANGE.match(raw)
        if m is None:
            return None
    frm, by, with_text, ident, via = m.groups()  # the pattern's groups, in this order
    return frm, by, with_text, ident, via, _build_of(ident)


def parse_hop(value: str) -> Hop:
    """Parse one Received value (possibly folded). Never raises; reads at most ``MAX_VALUE_CHARS``."""
    raw = value[:MAX_VALUE_CHARS]
    fields = exchange_stamp(raw)
    if fields is None:
        return parse_hop_general(raw)
    frm, by, with_text, ident, via, build = fields
    return _new_hop(
        Hop,
        raw=raw,
        from_text=frm,
        by_host=by,
        with_text=with_text,
        id_token=ident,
        via=via,
        comments=(),
        is_exchange_stamp=True,
        build=build,
    )


def parse_hop_general(value: str) -> Hop:
    """The general tokeniser behind :func:`parse_hop` (no fast path). Never raises."""
    raw = value[:MAX_VALUE_CHARS]
    if "(" in raw or ")" in raw:
        text, comments = _split_comments(raw)
    else:
        text, comments = raw, ()
    # the date follows the first ';' outside comments
    semi = text.find(";")
    if semi >= 0:
        text = text[:semi]
    toks = text.split(None, MAX_TOKENS)
    if len(toks) > MAX_TOKENS:
        toks.pop()
    clauses: dict[str, list[str]] = {}
    current: list[str] | None = None
    for tok in toks:
        low = tok.lower()
        if low in _KEYWORDS:
            if low in clauses:
                current = None  # a repeated clause keyword: ignore what follows it
            else:
                current = clauses[low] = []
        elif current is not None:
            current.append(tok)
    by = clauses.get("by")
    by_host = by[0] if by else None
    if by_host is not None and len(by_host) > MAX_HOST_CHARS:
        by_host = None
    ident = clauses.get("id")
    frm = clauses.get("from")
    with_ = clauses.get("with")
    via = clauses.get("via")
    with_text = " ".join(with_) if with_ else None
    id_token = ident[0] if ident else None
    exchange = _is_exchange_with(with_text)
    return _new_hop(
        Hop,
        raw=raw,
        from_text=" ".join(frm) if frm else None,
        by_host=by_host,
        with_text=with_text,
        id_token=id_token,
        via=" ".join(via) if via else None,
        comments=comments,
        is_exchange_stamp=exchange,
        build=parse_build(id_token) if exchange and id_token is not None else None,
    )


def stamp_cache_key(value: str) -> str:
    """A key shared by Received values that differ only in their trailing date.

    Every message's stamp carries its own date after the last ``;``; what the classifier reads
    (from, by, with, id, via: the text before the first ``;`` outside comments) comes before it.
    A tail with comment characters could change that reading, so then the whole value is the key.
    """
    head, semi, tail = value.rpartition(";")
    if semi and "(" not in tail and ")" not in tail and "\\" not in tail:  # three scans: cheaper than a pattern
        return head
    return value


def normalise_host(host: str | None) -> str | None:
    """Lower-case, strip a trailing dot; ``None`` for empty or absurd names."""
    if not host:
        return None
    h = host.strip().rstrip(".").lower()
    if not h or len(h) > MAX_HOST_CHARS:
        return None
    return h


def is_cloud_host(host: str | None, suffixes: tuple[str, ...]) -> bool:
    """True for an Exchange Online host name (``*.outlook.com`` and the sovereign clouds).

    ``host`` must already be normalised (:func:`normalise_host`); suffixes start with a dot.
    """
    if not host:
        return False
    return host.endswith(suffixes) or ("." + host) in suffixes


def non_exchange_signature(hop: Hop) -> str | None:
    """Name the non-Exchange MTA that wrote ``hop``, or ``None`` if nothing identifies one.

    Recognises Postfix ``(Postfix)``, Sendmail ``(8.15.2/8.15.2)``, Exim ``with esmtps (Exim 4.96)``,
    the Windows SMTP service ``Microsoft SMTPSVC(10.0...)``, qmail, and, generically, any hop with a
    ``with`` protocol and an ``id`` that is not an Exchange build.
    """
    w = hop.with_lower
    if w.startswith("microsoft smtpsvc"):
        return "Microsoft SMTPSVC (Windows SMTP service)"
    for c in hop.comments:
        cl = c.lower()
        if cl.startswith(_MTA_COMMENTS):  # one test for the three names, then which one
            return "Postfix" if cl.startswith("postfix") else ("Exim" if cl.startswith("exim") else "qmail")
        if "0" <= c[:1] <= "9" and _SENDMAIL_VERSION.match(c):  # the pattern starts with a digit
            return "Sendmail"
    if "exim" in w:
        return "Exim"
    if "smtpsvc" in hop.raw.lower():
        return "Microsoft SMTPSVC (Windows SMTP service)"
    if hop.with_text and not hop.is_exchange_stamp:
        return f"MTA with {hop.with_text[:40]}"
    return None


@dataclass(frozen=True, slots=True)
class ReceivedBlock:
    """The Received headers found in a header list: the topmost one and a few below it."""

    top: str | None
    lower: tuple[str, ...]
    #: header fields read (only counted when no Received was found)
    fields_scanned: int


def collect_received(headers: Sequence[tuple[str, str]]) -> ReceivedBlock:
    """Find the topmost Received value and up to ``MAX_CONTEXT_HOPS`` below it. Never raises.

    Reads at most ``MAX_HEADER_FIELDS`` fields. Header names match case-insensitively; malformed
    items (not a (str, str) pair) are skipped.
    """
    top, lower, scanned = scan_received(headers)
    return ReceivedBlock(top, lower, scanned)


#: Sequences whose length is what iterating them yields (no ``islice`` needed when short enough).
_SIZED = (list, tuple)


def scan_received(headers: Sequence[tuple[str, str]]) -> tuple[str | None, tuple[str, ...], int]:
    """:func:`collect_received` as a plain tuple ``(top, lower, fields_scanned)``: the classifier's
    hot path (one comprehension over the fields, no record built). Never raises."""
    try:
        fields = headers if type(headers) in _SIZED and len(headers) <= MAX_HEADER_FIELDS else islice(
            headers, MAX_HEADER_FIELDS
        )
        found = [
            value[:MAX_VALUE_CHARS] for name, value in fields if name in RECEIVED_SPELLINGS and isinstance(value, str)
        ]
    except Exception:  # a malformed item or a hostile Sequence: redo it the careful way
        block = _collect_careful(headers)
        return block.top, block.lower, block.fields_scanned
    if not found:
        try:
            scanned = min(len(headers), MAX_HEADER_FIELDS + 1)
        except Exception:
            scanned = 0
        return None, (), scanned
    return found[0], tuple(found[1 : 1 + MAX_CONTEXT_HOPS]), 0


def _collect_careful(headers: Sequence[tuple[str, str]]) -> ReceivedBlock:
    top: str | None = None
    lower: list[str] = []
    n = 0
    try:
        for item in headers:
            n += 1
            if n > MAX_HEADER_FIELDS:
                break
            if not isinstance(item, tuple | list) or len(item) != 2:
                continue
            name, value = item
            if not isinstance(name, str) or not isinstance(value, str):
                continue
            if len(name) == 8 and name.lower() == "received":
                if top is None:
                    top = value[:MAX_VALUE_CHARS]
                else:
                    lower.append(value[:MAX_VALUE_CHARS])
                    if len(lower) >= MAX_CONTEXT_HOPS:
                        break
    except Exception:  # a hostile Sequence implementation; keep what was read
        pass
    return ReceivedBlock(top, tuple(lower), n)
