"""The store's failure types, for callers' retry logic (they never import the Redis client).

``StoreUnavailable``: the store failed (connection, timeout, server error): retry later.
``ScriptsLost``: Redis lost its scripts (a restart): load them again, then retry.
``ReplicationBehind``: fewer replicas than asked acknowledged a batch's writes in time (a
``StoreUnavailable``): retry; the batch is processed again, which changes nothing it already did.
"""

from redis.exceptions import NoScriptError as ScriptsLost
from redis.exceptions import RedisError as StoreUnavailable

from processors.errors import PatchgateError


class ReplicationBehind(PatchgateError, StoreUnavailable):
    """Redis ``WAIT`` returned fewer replica acknowledgements than ``wait_replicas``."""


__all__ = ["ReplicationBehind", "ScriptsLost", "StoreUnavailable"]
