"""Typed events: one builder and one parser per contract of ``schemas/``, the only place its fields are spelled.

- :mod:`processors.events.metadata`: ``patchgate.metadata/1`` records, ``patchgate.metadata-batch/1`` envelopes
- :mod:`processors.events.verdict`: ``patchgate.verdict/1``
- :mod:`processors.events.notification`: ``patchgate.notification/1``
- :mod:`processors.events.command`: ``patchgate.command/1``
- :mod:`processors.events.deadletter`: ``patchgate.deadletter/1``

Events are plain dicts typed by ``TypedDict``: builders are keyword-only functions returning the
wire dict, parsers return the decoded dict once it passed its contract (:mod:`processors.contracts`).
That keeps the hot paths (the worker's decoding, the edge's milter) free of per-record objects.
Pure: nothing here does I/O beyond reading the schemas.
"""

from processors.contracts import ContractError

__all__ = ["ContractError"]
