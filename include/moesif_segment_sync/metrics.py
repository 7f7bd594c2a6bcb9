"""Counters and timers of a run, under the prefix ``moesif_segment``.

Plain Python calls them; the ``airflow`` room points them at Airflow's ``Stats`` when a task
starts, so they reach StatsD or OpenTelemetry as Airflow's own metrics do (with Airflow's
``[metrics]`` prefix in front). Without a sink they cost nothing.
"""

from __future__ import annotations

from typing import Protocol

PREFIX = "moesif_segment"


class Sink(Protocol):
    def incr(self, stat: str, count: int = 1) -> None: ...

    def timing(self, stat: str, dt: float) -> None: ...


_sink: Sink | None = None


def use(sink: Sink | None) -> None:
    global _sink
    _sink = sink


def incr(name: str, count: int = 1) -> None:
    if _sink is not None and count:
        _sink.incr(f"{PREFIX}.{name}", count)


def timing(name: str, seconds: float) -> None:
    """A duration; StatsD takes milliseconds."""
    if _sink is not None:
        _sink.timing(f"{PREFIX}.{name}", seconds * 1000.0)
