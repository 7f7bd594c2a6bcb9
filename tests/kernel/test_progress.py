"""Progress lines: at most one per interval, with rate and time to go, and always the last."""

from __future__ import annotations

import logging

from moesif_segment_sync.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_at_most_once_per_interval_with_rate_and_time_to_go(caplog):
    clock, log = Clock(), logging.getLogger("test.progress")
    progress = Progress(log, "load shard 0", "messages", every=5, total=10_000, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for second in range(1, 11):  # 1,000 messages a second, a batch every 0.5 s
            for half in (0.5, 1.0):
                clock.now = 100 + second - 1 + half
                progress.advance(500, f"batch {int(2 * (second - 1 + half))}")
        progress.finish("20 batches")

    assert [record.getMessage() for record in caplog.records] == [
        "load shard 0: 5,000 of 10,000 messages, batch 10, 1,000 messages/s, about 5 s to go",
        "load shard 0: 10,000 of 10,000 messages, batch 20, 1,000 messages/s",
        "load shard 0: 10,000 of 10,000 messages, 20 batches, 1,000 messages/s, done in 10.0 s",
    ]


def test_an_unknown_total_gives_no_time_to_go(caplog):
    clock = Clock()
    progress = Progress(logging.getLogger("test.progress"), "transform", "users", every=0,
                        clock=clock)
    clock.now += 2
    with caplog.at_level(logging.INFO, logger="test.progress"):
        progress.advance(5_000, "4,990 messages built")

    assert caplog.records[0].getMessage() == (
        "transform: 5,000 users, 4,990 messages built, 2,500 users/s")
