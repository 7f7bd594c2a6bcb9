"""What every part of the benchmark agrees on: the window, the keys, a clean environment."""

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


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``MOESIF_SEGMENT_*`` settings, plus ``extra``.

    A developer's shell may set a send rate or a page size; the benchmark
    passes the settings it means explicitly, so figures stay comparable.
    """
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(SETTINGS_PREFIX)}
    env.update(extra)
    return env
