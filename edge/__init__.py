"""patchgate edge: applies verdicts at the edge MTA and publishes message metadata.

Pieces (each importable on its own):

- :mod:`edge.verdicts`: parse a ``patchgate.verdict/1`` record once into a precomputed
  :class:`~edge.verdicts.CompiledVerdict`; :class:`~edge.verdicts.VerdictIndex` answers
  ``decide(server_key, now)`` in well under a microsecond, without I/O.
- :mod:`edge.verdict_cache`: :class:`~edge.verdict_cache.VerdictCache`, a ``VerdictIndex`` kept
  up to date from the compacted ``patchgate.verdicts`` topic by a background consumer thread.
- :mod:`edge.config`: the edge configuration file (TOML): connectors, enforcement scope.
- :mod:`edge.milter`: a small asyncio milter (Postfix ``smtpd_milters``) that classifies each message's
  headers, publishes metadata and answers ``450 4.7.230``/``550 5.7.230`` verbatim.
- :mod:`edge.policy`: a Postfix ``check_policy_service`` / Exim ``${readsocket}`` server.
- :mod:`edge.publisher`: non-blocking metadata publisher (bounded buffer, batches per server key).
- :mod:`edge.cli`: ``patchgate edge milter|policy|cache-dump``.
"""
