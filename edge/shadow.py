"""Shadow mode at the edge: count and log the replies a shadowed tenant's verdicts withheld.

A verdict that says ``"shadow": true`` decides like any other, but its throttle and block decisions
accept and carry the reply they stand for (:attr:`edge.verdicts.Decision.shadow_reply`). The milter
and the policy service hand such a decision to :meth:`ShadowReplies.record`, which counts it by
reply code (``patchgate_edge_shadow_replies_total{code}``, exported by :mod:`edge.prometheus`) and
logs one line naming the tenant, the server and the reply.

The log is bounded so that a busy server cannot flood it: at most one line per server key per
``interval`` (the next line says how many of that server's replies went unlogged meanwhile), and at
most ``max_lines`` lines per ``interval`` in all; lines left out are counted
(``patchgate_edge_shadow_log_suppressed_total``). The servers remembered for the per-server limit are
bounded too (``max_servers``, the least recently logged forgotten first). Everything runs on the
event loop's thread, like the decisions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # edge.verdicts owns a ShadowReplies: no import at run time
    from edge.verdicts import Decision

log = logging.getLogger(__name__)

#: The reply codes a shadowed verdict withholds (throttle, block): exported at 0 before the first one.
CODES = ("450", "550")


class ShadowReplies:
    """Counters and the bounded log of withheld replies; see the module docstring."""

    def __init__(self, *, interval: float = 60.0, max_lines: int = 100, max_servers: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.max_lines = max_lines
        self.max_servers = max_servers
        self.clock = clock
        self.replies: dict[str, int] = dict.fromkeys(CODES, 0)  # reply code -> replies withheld
        self.log_lines = 0
        self.log_suppressed = 0
        self._servers: dict[str, tuple[float, int]] = {}  # server key -> (last line at, replies since)
        self._window_start = clock()
        self._window_lines = 0

    def record(self, decision: Decision, *, client: str | None = None, queue_id: str | None = None) -> None:
        """Count ``decision``'s withheld reply (if it has one) and log it unless the bounds say not to."""
        reply = decision.shadow_reply
        if reply is None:
            return
        code = reply[:3]
        self.replies[code] = self.replies.get(code, 0) + 1
        server_key = decision.server_key or ""
        now = self.clock()
        if now - self._window_start >= self.interval:
            self._window_start, self._window_lines = now, 0
        last = self._servers.get(server_key)
        if last is not None and now - last[0] < self.interval:
            self._servers[server_key] = (last[0], last[1] + 1)
            self.log_suppressed += 1
            return
        if self._window_lines >= self.max_lines:
            self.log_suppressed += 1
            return
        self._window_lines += 1
        self.log_lines += 1
        self._remember(server_key, now)
        self._log(server_key, reply, decision.sequence, client, queue_id, last[1] if last is not None else 0)

    def _remember(self, server_key: str, now: float) -> None:
        self._servers.pop(server_key, None)  # re-inserted last: the dict's order is least recently logged first
        self._servers[server_key] = (now, 0)
        if len(self._servers) > self.max_servers:
            del self._servers[next(iter(self._servers))]

    def _log(self, server_key: str, reply: str, sequence: int | None, client: str | None,
             queue_id: str | None, unlogged: int) -> None:
        tenant, _, server = server_key.partition("/")
        more = f"; {unlogged} more from this server since its last line" if unlogged else ""
        log.info("shadow mode: accepted instead of replying %r (tenant %s, server %s, client %s, queue %s, "
                 "verdict seq %s%s)", reply, tenant, server, client, queue_id, sequence, more,
                 extra={"tenant": tenant, "server": server})
