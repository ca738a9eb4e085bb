"""Version stamps of mail servers other than Exchange, read from the topmost Received value.

:func:`recognise` unfolds the value (RFC 5322: CRLF + whitespace is whitespace), keeps only the part
from its ``by`` clause on (the ``from`` clause quotes the client's HELO and reverse DNS, which the
client chooses), and runs one combined pattern over it. Every product's stamp is one alternative:

* Exim ``(Exim 4.92)``, ``(Exim 4.92 #3)``, ``(Exim 4.89_1)`` -> ``4.92`` / ``4.89``;
* Sendmail ``(8.14.4/8.14.4)``, ``(8.14.4/8.14.4/Debian-4)``, ``Sendmail 8.12.11``;
* Domino ``Lotus|IBM|HCL Domino Release 9.0.1FP10 HF383`` -> ``9.0.1FP10`` (hotfixes dropped);
* ``Microsoft SMTPSVC(6.0.3790.4675)`` -> ``6.0.3790`` (the Windows version the service ships with);
* ``MDaemon PRO v10.1.2``; ``Kerio Connect 9.2.1`` (and ``Kerio MailServer``); ``CommuniGate Pro
  SMTP 6.1.7``; ``IceWarp 12.0.3.1`` and its former name ``Merak 9.4.2``.

Look-alikes are named, never attributed: Proofpoint's Sendmail-shaped ``8.16.0.42/8.16.0.42`` (four
numbers, or a ``pphosted.com`` host), Sendmail's ``/Submit`` and Exim's ``with local`` submissions,
webmail submissions (``with HTTP``, an authenticated submission from the host itself, CommuniGate's
non-SMTP modules), a hop naming two different products, and a product named without a version (an
admin stripped or replaced it). The pattern has no nested quantifiers and reads a bounded value,
so it runs in linear time. It is case-sensitive (products write their names one way; a
case-insensitive pattern costs seven times as much, as no alternative then starts with a fixed
character); a hop that names a product in another case is ``version_unattributed``, never
enforced. Hops that name no product at all skip the pattern, and results are cached per stamp.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from processors.classify.received import MAX_VALUE_CHARS, stamp_cache_key

VERSIONED = "versioned"
LOCAL = "local_submission"
LOOK_ALIKE = "look_alike"
AMBIGUOUS = "ambiguous_stamp"
UNVERSIONED = "version_unattributed"
NONE = "none"

_STAMP = re.compile(
    r"\((?:Exim|EXIM|exim)\s+(?P<exim>\d{1,2}\.\d{1,3}(?:\.\d{1,3})?)(?![.\d])[^()]{0,40}(?:\([^()]{0,30}\)\s?)?\)"
    r"|(?:Lotus|IBM|HCL)\s+Domino\s+Release\s+(?P<domino>\d{1,2}\.\d{1,2}(?:\.\d{1,2})?)(?:\s?FP(?P<fp>\d{1,2}))?"
    r"|Microsoft\s+SMTPSVC\s?\(\s?(?P<smtpsvc>\d{1,2}\.\d{1,2}\.\d{4,5})(?:\.\d{1,6}){0,3}\s?\)"
    r"|MDaemon(?:\s+(?:PRO|Pro|Standard|Std))?\s+v?(?P<mdaemon>\d{1,2}\.\d{1,2}\.\d{1,2}[a-z]?)\b"
    r"|Kerio\s+(?:Connect|MailServer)\s+(?P<kerio>\d{1,2}\.\d{1,2}\.\d{1,2})(?:\s+patch\s+(?P<patch>\d{1,2}))?"
    r"|CommuniGate\s+Pro\s+(?P<cgmodule>[A-Za-z]{1,12})\s+(?P<communigate>\d{1,2}\.\d{1,2}(?:\.\d{1,3})?)\b"
    r"|(?:IceWarp|Merak)\s+(?P<icewarp>\d{1,2}\.\d{1,2}(?:\.\d{1,3}){0,2})\b"
    r"|\((?P<sendmail>8\.\d{1,2}\.\d{1,2})(?P<sm4>\.\d{1,8})?(?:\s[^()/]{1,40})?/(?P<smcf>[^()]{1,60})\)"
    r"|Sendmail\s+(?P<sendmail2>\d\.\d{1,2}\.\d{1,2})\b"
)
_OTHER_MTA = re.compile(r"\((?:Postfix|postfix|qmail|Courier|OpenSMTPD)\b")
_NAMES = re.compile(
    r"\([^()]{0,60}?(?<![\w.-])(?:exim|sendmail|domino|mdaemon|kerio|communigate|icewarp|merak)\b(?![.-])[^()]{0,60}\)"
    r"|microsoft\s+smtpsvc",
    re.IGNORECASE,
)
_TRIGGERS = ("exim", "sendmail", "domino", "smtpsvc", "mdaemon", "kerio", "communigate", "icewarp", "merak")
_BY = re.compile(r"[()\\]|(?:^|(?<=\s))by\s", re.IGNORECASE)
_WITH = re.compile(r"\swith\s+(?P<proto>[A-Za-z-]{1,20})", re.IGNORECASE)
_WEBMAIL_PROTOCOLS = frozenset({"http", "https"})
_AUTH_PROTOCOLS = frozenset({"esmtpa", "esmtpsa", "smtpa"})
_PRODUCT_GROUPS = ("exim", "domino", "smtpsvc", "mdaemon", "kerio", "communigate", "icewarp", "sendmail", "sendmail2")


class Stamp(NamedTuple):
    """What the topmost hop says about its writer's software: ``kind`` says how sure that is.

    ``product``/``version`` are set only for ``kind == "versioned"`` (a confident attribution);
    other kinds name why nothing is attributed (``product`` may then name what the hop looked like).
    """

    kind: str
    product: str | None
    version: str | None
    detail: str


NO_STAMP = Stamp(NONE, None, None, "")

_CACHE: dict[tuple[bool, str], Stamp] = {}
_CACHE_MAX = 4096


def recognise(value: str) -> Stamp:
    """The software stamp of one Received value (the topmost hop). Never raises.

    A hop naming none of the products (Postfix, qmail, most relays) is answered from a substring
    check, without the pattern. Otherwise the result is cached per stamp: the ``by`` clause without
    its trailing date and, when nothing parenthesised follows it, without the per-message ``id``.
    """
    raw = value[:MAX_VALUE_CHARS]
    if not _may_stamp(raw):
        return NO_STAMP
    text = unfold_value(raw)
    tail = by_clause(text)
    low = tail.lower()
    loopback = _from_loopback(text[: len(text) - len(tail)])
    key = (loopback, _stamp_key(tail, low))
    hit = _CACHE.get(key)
    if hit is None:
        hit = _recognise(tail, loopback)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = hit
    return hit


def _may_stamp(raw: str) -> bool:
    """Whether ``raw`` names any product at all (substring checks, no pattern: most relays do not)."""
    if "(8." in raw:
        return True
    low = raw.lower()
    return (  # _TRIGGERS, spelt out: a generator over them costs more than the checks
        "exim" in low or "sendmail" in low or "domino" in low or "smtpsvc" in low or "mdaemon" in low
        or "kerio" in low or "communigate" in low or "icewarp" in low or "merak" in low
    )


def _stamp_key(tail: str, low: str) -> str:
    """What the pattern reads of ``tail``: the per-message ``id``, recipient and date cut off when
    nothing after the ``id`` could hold a stamp (stamps are in comments or before the ``id``)."""
    at = low.find(" id ")
    if at >= 0 and "(" not in tail[at:] and "smtpsvc" not in low[at:]:
        return tail[:at]
    return stamp_cache_key(tail)


def unfold_value(value: str) -> str:
    """RFC 5322 unfolding plus whitespace runs (tabs, CR, LF) collapsed to one space."""
    return " ".join(value.split())


def by_clause(text: str) -> str:
    """``text`` (unfolded) from its first ``by`` keyword outside comments on; ``""`` when there is none."""
    if "\\" in text:
        return _by_clause_quoted(text)
    low = text.lower()
    if low.startswith("by "):
        return text
    at = low.find(" by ")
    while at >= 0:
        if text.count("(", 0, at) <= text.count(")", 0, at):
            return text[at + 1 :]
        at = low.find(" by ", at + 1)
    return ""


def _by_clause_quoted(text: str) -> str:
    """:func:`by_clause` for text with ``\\`` quoted pairs: one pass over the special characters."""
    depth = 0
    skip = -1
    for m in _BY.finditer(text):
        pos = m.start()
        if pos <= skip:
            continue
        ch = text[pos]
        if ch == "\\":
            skip = pos + 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif depth == 0:
            return text[pos:]
    return ""


def _recognise(tail: str, loopback: bool) -> Stamp:
    found: dict[str, tuple[str, re.Match[str]]] = {}
    for m in _STAMP.finditer(tail):
        product, version = _attribution(m)
        found.setdefault(product, (version, m))
    if not found:
        named = _NAMES.search(tail)
        if named is not None:
            return Stamp(UNVERSIONED, None, None, f"{named.group(0)[:80]} names a product without a version")
        return NO_STAMP
    if len(found) > 1:
        return Stamp(AMBIGUOUS, None, None, f"stamps of {', '.join(sorted(found))} in one hop")
    other = _OTHER_MTA.search(tail)
    if other is not None:
        return Stamp(AMBIGUOUS, None, None, f"a version stamp beside {other.group(0)[1:]} in one hop")
    product, (version, match) = next(iter(found.items()))
    return _judge_submission(tail, loopback, product, version, match)


def _attribution(m: re.Match[str]) -> tuple[str, str]:
    """The product and canonical version of one match of the combined pattern."""
    group = next(g for g in _PRODUCT_GROUPS if m.group(g) is not None)
    version = m.group(group)
    if group == "domino":
        fp = m.group("fp")
        return "domino", f"{version}FP{int(fp)}" if fp else version
    if group == "kerio":
        patch = m.group("patch")
        return "kerio", f"{version} patch {int(patch)}" if patch else version
    if group == "sendmail2":
        return "sendmail", version
    return group, version


def _judge_submission(tail: str, loopback: bool, product: str, version: str, match: re.Match[str]) -> Stamp:
    """A versioned stamp, unless it is a look-alike or a submission hop rather than a relay."""
    look_alike = _look_alike(tail, product, match)
    if look_alike:
        return Stamp(LOOK_ALIKE, product, None, look_alike)
    local = _submission(tail, loopback, product, match)
    if local:
        return Stamp(LOCAL, product, None, local)
    return Stamp(VERSIONED, product, version, match.group(0))


def _look_alike(tail: str, product: str, match: re.Match[str]) -> str:
    if product != "sendmail":
        return ""
    extra = match.group("sm4")
    if extra is not None and len(extra) != 9:  # a 4th number that is not a YYYYMMDD patch date
        return f"Sendmail-shaped version {match.group(0)} (Proofpoint and other derivatives), not Sendmail"
    if "pphosted.com" in tail.lower():
        return "Proofpoint host with a Sendmail-shaped stamp"
    return ""


def _submission(tail: str, loopback: bool, product: str, match: re.Match[str]) -> str:
    """Why the hop is a local or webmail submission rather than a relay (``""`` when it is a relay)."""
    cf = match.group("smcf") if product == "sendmail" else None
    if cf is not None and cf.lower().rsplit("/", 1)[-1] == "submit":
        return "Sendmail /Submit stamp: a local submission"
    if product == "communigate" and match.group("cgmodule").upper() != "SMTP":
        return f"CommuniGate Pro {match.group('cgmodule')} module: not an SMTP relay"
    w = _WITH.search(tail)
    proto = w.group("proto").lower() if w is not None else ""
    if proto.startswith("local") or proto in {"pipe", "bsmtp"}:
        return f"with {w.group('proto') if w else proto}: a local submission"
    if proto in _WEBMAIL_PROTOCOLS:
        return f"with {proto.upper()}: a webmail submission"
    if product == "exim" and proto in _AUTH_PROTOCOLS and loopback:
        return "authenticated submission from the host itself: a webmail submission"
    return ""


def _from_loopback(from_part: str) -> bool:
    """The ``from`` clause names the host itself (``localhost``, ``[127.0.0.1]``, ``[::1]``)."""
    low = from_part.lower()
    return "[127.0.0.1]" in low or "[::1]" in low or low.startswith("from localhost ")
