"""Postfix ``check_policy_service`` / Exim ``${readsocket}`` policy server answering from the verdict cache.

See :mod:`edge.policy.server` for the decision rules and ``edge/README.md`` for Postfix and Exim
configuration snippets.
"""

from edge.policy.codec import PolicyDecoder, PolicyProtocolError, encode_action, encode_request
from edge.policy.server import PolicyServer, PolicyService

__all__ = ["PolicyDecoder", "PolicyProtocolError", "PolicyServer", "PolicyService", "encode_action",
           "encode_request"]
