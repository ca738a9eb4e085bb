"""The worker's Faust app: its group consumer takes the configured fetch wait; its local directory."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from processors.settings import Settings
from processors.worker.app import create_app


def test_group_consumer_uses_the_configured_fetch_wait() -> None:
    async def build() -> int:
        settings = Settings.from_env({}, fetch_max_wait_ms=37, web_port=0, metrics_port=0)
        app, _ = create_app(settings)
        consumer: Any = app.consumer  # Faust's consumer; its thread builds the aiokafka consumer
        client = consumer._thread._create_worker_consumer(app.transport)
        try:
            return int(client._fetch_max_wait_ms)
        finally:
            await client.stop()
    assert asyncio.run(build()) == 37  # Faust alone would give 1500


def test_faust_local_directory_is_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.from_env({"PATCHGATE_DATA_DIR": str(tmp_path / "state")}, consumer_group="g-7",
                                 web_port=0, metrics_port=0)
    app, _ = create_app(settings)
    assert app.conf.datadir == tmp_path / "state" / "g-7-data"  # not the working directory
    assert Settings.from_env({}).faust_data_dir.parent == Path(tempfile.gettempdir())
