"""patchgate stream-processing side.

Edge MTAs publish message-metadata events; this package classifies the sending server's build,
keeps per-server state in Redis and emits verdicts and notifications. The command line entry point
is :mod:`processors.cli` (``patchgate``).
"""
