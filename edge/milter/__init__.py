"""A small asyncio milter for Postfix ``smtpd_milters``: our own codec, no C dependencies.

Decision (2026-11, evaluated by installing each candidate into a scratch venv):

- **pymilter 1.0.5** (C extension over Sendmail's libmilter): the build fails without
  ``libmilter-dev`` headers (``libmilter/mfapi.h: No such file``) and there are no wheels; its model is
  one OS thread per connection with libmilter's own socket loop, which does not mix with our asyncio
  edge (verdict cache, publisher). Last PyPI release 2021-12.
- **purepythonmilter 0.0.1** (pure asyncio, attrs): alpha, one release (2023-02), last commit
  2023-10; listens on TCP only (``asyncio.start_server(host, port)``, no Unix socket), no cross-stage
  session state API; a reply-code connection-reset issue was reported (#14). Good design notes, but
  we would be maintaining it.
- **kilter.service 0.3.1** (anyio, coroutine per session): classifier "Planning", adds anyio and
  kilter.protocol as dependencies and a task per session; TCP listener only in its runner.

What we need is small and fixed: negotiate, collect CONNECT/HELO/MAIL/RCPT/macros/headers, answer at
end-of-headers with ACCEPT or ``SMFIR_REPLYCODE``, and be fast. So: **our own codec**
(:mod:`edge.milter.codec`, ~250 lines, incremental decoder safe against split reads, packet-size
limit) and **server** (:mod:`edge.milter.server`: ``asyncio.Protocol``, synchronous handling inside
``data_received``, one write per read, Unix socket and TCP with ``TCP_NODELAY``). The protocol
negotiation asks Postfix not to wait for replies between CONNECT and end-of-headers
(``SMFIP_NR_HELO/MAIL/RCPT/HDR``) and not to send the body (``SMFIP_NOBODY``), so one message costs
one round trip; CONNECT is answered once per connection, with ACCEPT when no connector can match the
client (Postfix then leaves the milter out of that connection).

Application logic lives in :mod:`edge.milter.app` (:class:`~edge.milter.app.PatchgateMilter`).
"""

from edge.milter.codec import MilterDecoder, MilterProtocolError
from edge.milter.server import AcceptAll, MilterApplication, MilterServer, Session

__all__ = ["AcceptAll", "MilterApplication", "MilterDecoder", "MilterProtocolError", "MilterServer",
           "Session"]
