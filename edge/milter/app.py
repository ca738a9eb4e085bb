"""The patchgate milter application: classify at end-of-headers, publish metadata, apply the verdict.

At CONNECT: when no connector can match the client (its IP is in no connector's ranges and no
connector is matched by TLS certificate), ACCEPT: Postfix then leaves the milter out of the whole
connection, so unrelated senders cost no milter work per message (counted as ``skipped_connections``).

At end-of-headers (which Postfix delivers after the whole message arrived, so the reply answers the
final dot of DATA):

1. Find the connector: client IP and/or ``{cert_subject}`` against the edge config. No connector:
   accept, count ``unmatched``, publish nothing (we do not know the tenant).
2. Drop the topmost Received header if this edge wrote it (its ``by`` host is the ``j`` macro,
   ``myhostname``): Sendmail passes the Received header it adds to milters; Postfix does not (its
   milters see the client's headers, tested through real Postfix), so there nothing is dropped.
   The client address is normalised first (:func:`edge.config.normalise_ip`: ``[192.0.2.10]``,
   ``IPv6:...``, IPv4-mapped); one that does not parse is unknown: accepted, not published, counted
   as ``client_address_unparseable`` (``client.ip`` is required in a metadata record). Classify the rest with
   :func:`processors.classify.classify`; the server key is :func:`processors.classify.server_key`
   (``<tenant>/<server>``).
3. Publish a ``patchgate.metadata/1`` record (non-blocking; drops are counted by the publisher).
4. Connector type not in the enforcement scope (e.g. ``Partner``): accept.
5. The message's own build is acceptable (status ``current``): accept, even if the cached verdict
   enforces: patching lifts enforcement with the first message that shows it.
6. Otherwise ask the verdict cache. When the headers did not name the server (HELO/IP fallback) and
   no verdict exists for that key, the client IP → server key hint (from verdicts' ``client_ips`` or
   learned from earlier messages of this edge) of the same tenant is used. Throttle/block: the
   verdict's reply line goes out verbatim as ``SMFIR_REPLYCODE``; else ACCEPT. A verdict in shadow
   mode accepts and the withheld reply is counted and logged (:mod:`edge.shadow`).

Any exception is answered with ACCEPT by the server (fail open) and counted there.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from edge.config import EdgeConfig, normalise_ip
from edge.milter.codec import ACCEPT_PACKET, CONTINUE_PACKET, encode_replycode
from edge.milter.server import Session
from edge.publisher import build_metadata_record
from edge.verdicts import (
    ACCEPT_CURRENT_BUILD,
    ACCEPT_OUT_OF_SCOPE,
    ACCEPT_UNKNOWN,
    Decision,
    VerdictIndex,
    message_decision,
)
from processors.events.metadata import MetadataRecord

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, server_key: str, record: MetadataRecord) -> bool: ...


Classifier = Callable[[Sequence[tuple[str, str]], Any, datetime], Any]


@dataclass(slots=True)
class MilterMetrics:
    skipped_connections: int = 0
    messages: int = 0
    unmatched: int = 0
    out_of_scope: int = 0
    accepted_current_build: int = 0
    accepted: int = 0
    throttled: int = 0
    blocked: int = 0
    ip_hint_used: int = 0
    published: int = 0
    publish_dropped: int = 0
    client_address_unparseable: int = 0


_BY = re.compile(r"\bby\s+([^\s;()]+)", re.IGNORECASE)


def strip_own_received(headers: list[tuple[str, str]], own_hostname: str | None) -> list[tuple[str, str]]:
    """``headers`` without a topmost Received header whose ``by`` host is ``own_hostname``."""
    if own_hostname and headers and headers[0][0].lower() == "received":
        m = _BY.search(headers[0][1])
        if m and m.group(1).rstrip(".").lower() == own_hostname.rstrip(".").lower():
            return headers[1:]
    return headers


def _default_classify() -> tuple[Classifier, Callable[..., str], type]:
    from processors.classify import Connection, classify, server_key

    return classify, server_key, Connection


class PatchgateMilter:
    """:class:`~edge.milter.server.MilterApplication` applying cached verdicts; see module docs."""

    def __init__(self, config: EdgeConfig, cache: VerdictIndex, publisher: Publisher | None = None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.cache = cache
        self.publisher = publisher
        self.clock = clock
        self.metrics = MilterMetrics()
        self._classify, self._server_key, self._connection = _default_classify()
        self._replies: dict[str, bytes] = {}  # reply line -> encoded packet (few distinct lines)

    def client_ip(self, session: Session) -> str | None:
        """The session's client address, normalised (:func:`edge.config.normalise_ip`); an address
        that does not parse is unknown (None) and counted."""
        raw = session.client_ip
        if raw is None:
            return None
        ip = normalise_ip(raw)
        if ip is None:
            self.metrics.client_address_unparseable += 1
        return ip

    def connect(self, session: Session) -> bytes:
        if self.config.rules_out(self.client_ip(session)):
            self.metrics.skipped_connections += 1
            return ACCEPT_PACKET
        return CONTINUE_PACKET

    def end_of_message(self, session: Session) -> bytes:
        return CONTINUE_PACKET

    def end_of_headers(self, session: Session) -> bytes:
        m = self.metrics
        m.messages += 1
        ip = self.client_ip(session)
        subject = session.macros.get("{cert_subject}")
        connector = self.config.match(ip, subject)
        if connector is None or ip is None:
            m.unmatched += 1
            return ACCEPT_PACKET
        now = self.clock()
        at = datetime.fromtimestamp(now, UTC)
        conn = self._connection(ip=ip, helo=session.helo)
        headers = strip_own_received(session.headers, session.macros.get("j"))
        classification = self._classify(headers, conn, at)
        key = self._server_key(connector.tenant_id, classification, conn)
        named_by_header = classification.server_source == "by"
        if named_by_header and (classification.build is not None or classification.version is not None):
            self.cache.learn_ip(ip, key)

        if self.publisher is not None:
            self._publish(session, headers, connector, ip, key, at)

        decision = message_decision(self.cache, key, now, in_scope=self.config.in_scope(connector),
                                    status=classification.status)
        if decision is ACCEPT_OUT_OF_SCOPE:
            m.out_of_scope += 1
            return ACCEPT_PACKET
        if decision is ACCEPT_CURRENT_BUILD:
            m.accepted_current_build += 1
            return ACCEPT_PACKET
        if decision is ACCEPT_UNKNOWN and not named_by_header:
            hint = self.cache.server_key_for_ip(ip)
            if hint is not None and hint != key and hint.startswith(connector.tenant_id + "/"):
                m.ip_hint_used += 1
                decision = self.cache.decide(hint, now)
        return self._reply(decision, session, key)

    def _reply(self, decision: Decision, session: Session, key: str) -> bytes:
        m = self.metrics
        if not decision.enforced or not decision.reply:
            if decision.shadow_reply is not None:  # shadow mode: count and log what the reply would have been
                self.cache.shadow.record(decision, client=session.client_ip, queue_id=session.queue_id)
            m.accepted += 1
            return ACCEPT_PACKET
        if decision.action == "block":
            m.blocked += 1
        else:
            m.throttled += 1
        log.info("%s %s (queue %s, client %s, verdict seq %s): %s", decision.action, key,
                 session.queue_id, session.client_ip, decision.sequence, decision.reply)
        packet = self._replies.get(decision.reply)
        if packet is None:
            packet = encode_replycode(decision.reply)
            if len(self._replies) < 1024:
                self._replies[decision.reply] = packet
        return packet

    def _publish(self, session: Session, headers: list[tuple[str, str]], connector: Any, ip: str, key: str,
                 at: datetime) -> None:
        macros = session.macros
        tls = None
        if macros.get("{tls_version}") or macros.get("{cert_subject}"):
            tls = {"protocol": macros.get("{tls_version}"), "cipher": macros.get("{cipher}"),
                   "cert_subject": macros.get("{cert_subject}")}
        ptr = session.hostname
        if ptr is not None and (ptr == "unknown" or ptr.startswith("[")):
            ptr = None
        size = session.declared_size
        record = build_metadata_record(
            edge=self.config.name, tenant_id=connector.tenant_id, connector_id=connector.id,
            connector_type=connector.type, client_ip=ip, helo=session.helo, headers=headers,
            queue_id=session.queue_id, ptr=ptr, tls=tls,
            size=size if size is not None else session.header_bytes,
            recipients=session.rcpt_count, observed_at=at,
            dropped_before=(session.headers_dropped, session.headers_dropped_bytes),
        )
        assert self.publisher is not None
        if self.publisher.publish(key, record):
            self.metrics.published += 1
        else:
            self.metrics.publish_dropped += 1
