"""The store's failure types, for callers' retry logic (they never import the Redis client).

``StoreUnavailable``: the store failed (connection, timeout, server error): retry later.
``ScriptsLost``: Redis lost its scripts (a restart): load them again, then retry.
"""

from redis.exceptions import NoScriptError as ScriptsLost
from redis.exceptions import RedisError as StoreUnavailable

__all__ = ["ScriptsLost", "StoreUnavailable"]
