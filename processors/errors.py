"""The root of patchgate's own exceptions.

Every error patchgate raises on purpose (invalid policy, catalog, settings or contract, unreadable
input) derives from :class:`PatchgateError`, so a caller can tell "patchgate refused this input or
configuration" from a programming error or a library's failure with one ``except`` clause. Each
exception keeps the builtin base it had before (``class PolicyError(PatchgateError, ValueError)``),
so existing ``except ValueError`` handlers still catch it.
"""

from __future__ import annotations


class PatchgateError(Exception):
    """Base class of every exception patchgate defines; never raised by itself."""
