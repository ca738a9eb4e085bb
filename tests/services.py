"""A dev service for a fixture: started, yielded, and closed again however the fixture ends.

A start that raises :class:`processors.devservices.ServiceUnavailable` closes what the service had
already started (processes, temporary files); the conftest hooks then fail the test with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar


class Startable(Protocol):
    def start(self) -> None: ...

    def close(self) -> None: ...


Service = TypeVar("Service", bound=Startable)


@contextmanager
def started(service: Service) -> Iterator[Service]:
    """``service`` started; closed when the block ends or the start fails."""
    try:
        service.start()
        yield service
    finally:
        service.close()
