"""What the reliability tests share: the window, a run, the stages end to end, a fake clock."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from moesif_segment_sync import sync
from moesif_segment_sync.moesif import MoesifClient
from moesif_segment_sync.pipeline import staging
from moesif_segment_sync.segment import SegmentSender
from moesif_segment_sync.settings import Endpoint
from moesif_segment_sync.sync import Run
from moesif_segment_sync.window import RunParams
from tests import support
from tests.support import DAG_ID, RUN_ID, WINDOW, wait_for  # noqa: F401 - the suite's names

WINDOW_END = "2026-11-25T01:00:00.000Z"
MOESIF_KEY, WRITE_KEY = "mk-reliability-5e0c", "wk-reliability-9a41"
USERS_SEARCH = "/v1/search/~/search/users"
# Waits short enough to record, not to sleep: the fake clock records them anyway.
# Waits short enough to record; a batch Segment refuses fails the load, unsplit (the split
# is tested in tests/pipeline/test_refused.py).
FAST = {"backoff_initial": 0.5, "backoff_max": 4.0, "rate_limit_jitter": 0.0,
        "max_refused_splits": 0}


class FakeTime:
    """A clock that moves only when something sleeps on it; remembers every sleep."""

    def __init__(self, start: float = 1_795_600_045.0) -> None:  # 25 s into a minute
        self.current = start
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None  # something that happens meanwhile

    def now(self) -> float:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.current += seconds
        if self.on_sleep is not None:
            self.on_sleep()


@contextmanager
def on_fake_time(clock: FakeTime) -> Iterator[FakeTime]:
    """The stages' HTTP clients wait on ``clock``: every wait is recorded, none is slept.

    The stages build their clients themselves, so the clients' ``sleep`` and
    ``clock`` parameters are given by swapping the classes ``sync`` calls.
    """
    classes = sync.MoesifClient, sync.SegmentSender
    sync.MoesifClient = partial(MoesifClient, sleep=clock.sleep, clock=clock.now)
    sync.SegmentSender = partial(SegmentSender, sleep=clock.sleep, clock=clock.now)
    try:
        yield clock
    finally:
        sync.MoesifClient, sync.SegmentSender = classes


def make_run(root: Path, run_id: str = RUN_ID, *, full_refresh: bool = False,
             **options: object) -> Run:
    """``tests.support.make_run`` with waits short enough to record (``FAST``)."""
    return support.make_run(root, run_id, params=RunParams(full_refresh=full_refresh),
                            **{**FAST, **options})


def users_in_window(count: int, **extra: object) -> list[dict]:
    """``count`` users, each changed at its own minute of WINDOW (so sorted by number)."""
    return [{"user_id": f"usr_{n:03d}", "email": f"u{n}@example.com",
             "modified_time": f"2026-11-25T00:{n // 60:02d}:{n % 60:02d}.000Z", **extra}
            for n in range(count)]


def extract(run: Run, moesif_url: str, key: str = MOESIF_KEY) -> dict[str, dict]:
    endpoint = Endpoint(moesif_url, key)
    return {"extract_users": sync.extract_users(run, endpoint),
            "extract_companies": sync.extract_companies(run, endpoint)}


def load_shards(run: Run, segment_url: str, shards: list[dict]) -> list[dict]:
    """Load every shard the transform built, one after the other, as the mapped tasks do."""
    return [sync.load(run, Endpoint(segment_url, WRITE_KEY), shard) for shard in shards]


def run_stages(run: Run, moesif_url: str, segment_url: str) -> dict[str, Any]:
    """Every stage in order, as the DAG runs them; the summaries, the audit report included."""
    summaries: dict[str, Any] = extract(run, moesif_url)
    summaries["shards"] = sync.transform(run)
    summaries["transform"] = summaries["shards"][0]
    summaries["loads"] = [sync.load(run, Endpoint(segment_url, WRITE_KEY), shard)
                          for shard in summaries["shards"]]
    summaries["audit"] = sync.audit(run, summaries["extract_users"],
                                    summaries["extract_companies"], summaries["shards"],
                                    summaries["loads"])
    return summaries


def staged(run: Run, name: str) -> list[Any]:
    """A staged file's records, read by the standard library (exact integers, NaN kept)."""
    return [json.loads(line) for line in run.staging().lines(name)]


def staged_messages(run: Run) -> list[dict]:
    """Every shard's messages, in order, exactly as staged (and so as sent)."""
    return [json.loads(line) for name in message_files(run) for line in run.staging().lines(name)]


def message_files(run: Run) -> list[str]:
    return sorted(path.name for path in run_dir(run).glob("messages-*.jsonl.gz"))


def staged_user_ids(run: Run, name: str = staging.USERS) -> list[str]:
    return [hit["_source"]["user_id"] for hit in staged(run, name)]


def run_dir(run: Run) -> Path:
    return Path(run.staging().dir)
