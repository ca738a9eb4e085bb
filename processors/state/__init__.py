"""Per-server and per-tenant state in Redis: key schema (:mod:`.keys`), server-side scripts
(``scripts/*.lua``, versioned, key schema at the top of each) and the async store that runs them."""
