"""What every part of the benchmark agrees on: the window, the keys, the environment."""

from __future__ import annotations

import os
from pathlib import Path

from moesif_segment_sync.window import Window
from sandbox.environment import DEMO_WINDOW

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "moesif_to_segment"
# The demo's hour. Every generated user is changed or seen in it, so each
# extract stages all N users, and `airflow dags test` at its end runs it.
WINDOW = Window(DEMO_WINDOW[0], DEMO_WINDOW[1], "params")
MOESIF_KEY = "bench-moesif-key"
WRITE_KEY = "bench-segment-write-key"
PAGE_SIZE = 1000
SETTINGS_PREFIX = "MOESIF_SEGMENT_"


def forget_settings_env() -> list[str]:
    """Drop ``MOESIF_SEGMENT_*`` from this process's environment; return what was dropped.

    A developer's shell may set a send rate or a page size. Every stage of
    the benchmark gets the settings it means explicitly (defaults otherwise),
    and its children inherit this environment, so figures stay comparable.
    """
    dropped = sorted(name for name in os.environ if name.startswith(SETTINGS_PREFIX))
    for name in dropped:
        del os.environ[name]
    return dropped
