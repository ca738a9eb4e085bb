"""Per-server and per-tenant state: the only package that talks to Redis.

:mod:`.keys` (key schema, hash field names), :mod:`.model` (what goes in and out),
:mod:`.protocol` (the store's named operations), :mod:`.store` (Redis: pipelines and the versioned
server-side scripts ``scripts/*.lua``, key schema at the top of each), :mod:`.memory` (the same
operations in process memory, for tests), :mod:`.errors` (failure types for retry logic)."""
