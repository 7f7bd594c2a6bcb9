"""What many test modules share: the DAG's id, the demo window and its run, a run of the
stages without Airflow, and a bounded wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from moesif_segment_sync.settings import load_settings
from moesif_segment_sync.sync import Run
from moesif_segment_sync.window import RunParams, Window

DAG_ID = "moesif_to_segment"
WINDOW = Window(datetime(2026, 11, 25, 0, tzinfo=UTC), datetime(2026, 11, 25, 1, tzinfo=UTC),
                "data_interval")
RUN_ID = "scheduled__2026-11-25T01:00:00+00:00"


def make_run(root: Path, run_id: str = RUN_ID, *, window: Window = WINDOW,
             params: RunParams | None = None, mode: str = "scheduled",
             audit_url: str | None = None, **settings: object) -> Run:
    """A run of the stages with its staging and SQLite audit store under ``root``."""
    return Run(DAG_ID, run_id, mode, window, params or RunParams(), load_settings(**settings),
               root.as_uri() + "/staging", audit_url or f"sqlite:///{root / 'audit.db'}")


def wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)
