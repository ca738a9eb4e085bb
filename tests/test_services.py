"""tests.services.started: the service is closed after the block and after a failed start."""

from __future__ import annotations

import pytest

from processors.devservices import ServiceUnavailable
from tests.services import started


class FakeService:
    def __init__(self, *, fails: bool = False) -> None:
        self.fails = fails
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")
        if self.fails:
            raise ServiceUnavailable("redis-server is not installed")

    def close(self) -> None:
        self.events.append("close")


def test_the_service_runs_inside_the_block_and_is_closed_after_it() -> None:
    service = FakeService()
    with started(service) as running:
        assert running is service and service.events == ["start"]
    assert service.events == ["start", "close"]


def test_a_failed_start_closes_the_service_and_raises_its_reason() -> None:
    service = FakeService(fails=True)
    with pytest.raises(ServiceUnavailable, match="not installed"), started(service):
        pytest.fail("the block must not run")
    assert service.events == ["start", "close"]
