"""``python -m bench.worker SPEC RESULT``: one measured stage in a process of its own.

A fresh process per stage makes its peak RSS its own (``VmHWM``, read at
the end) and gives it a core of its own beside the stand-ins. The
clock runs around the stage call only: interpreter start, imports and, for
the peer, building its input are outside it.

Stages: ``extract_users``, ``extract_companies``, ``transform`` and ``load``
call the very functions of ``moesif_segment_sync.sync`` that the DAG's
tasks call (the load once per shard, in turn, as the mapped load tasks run
with the default single ``segment_api`` pool slot); ``peer`` sends the
staged messages through segment-analytics-python instead (``bench.peer``).
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from moesif_segment_sync import sync
from moesif_segment_sync.settings import Endpoint, load_settings
from moesif_segment_sync.summaries import Loaded
from moesif_segment_sync.sync import Run
from moesif_segment_sync.window import RunParams

from . import staged
from .config import DAG_ID, MOESIF_KEY, WINDOW, WRITE_KEY
from .process import peak_rss_mb


@dataclass(frozen=True)
class StageSpec:
    """Everything a worker needs, written by the parent as JSON."""

    stage: str
    run_id: str
    staging_root: str
    audit_url: str
    settings: dict[str, Any] = field(default_factory=dict)
    moesif_url: str = ""
    segment_url: str = ""
    shards: list[dict[str, Any]] = field(default_factory=list)  # what transform returned
    peer_options: dict[str, Any] = field(default_factory=dict)  # segment Client kwargs
    profile: str = ""  # when set, a pyinstrument text profile of the stage is written here
    full_refresh: bool = False  # the run's full_refresh param (the large runs on a store)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> StageSpec:
        return cls(**json.loads(path.read_text()))

    def run(self) -> Run:
        return Run(DAG_ID, self.run_id, "manual", WINDOW,
                   RunParams(full_refresh=self.full_refresh), load_settings(**self.settings),
                   self.staging_root, self.audit_url)


def prepare(spec: StageSpec) -> Callable[[], Any]:
    """The stage as a call with no arguments; anything not to be timed happens here."""
    run = spec.run()
    moesif = Endpoint(spec.moesif_url, MOESIF_KEY)
    segment = Endpoint(spec.segment_url, WRITE_KEY)
    if spec.stage == "extract_users":
        return lambda: sync.extract_users(run, moesif)
    if spec.stage == "extract_companies":
        return lambda: sync.extract_companies(run, moesif)
    if spec.stage == "transform":
        return lambda: sync.transform(run)
    if spec.stage == "load":
        return lambda: load_every_shard(run, segment, spec.shards)
    if spec.stage == "peer":
        from .peer import PeerSend  # only this stage needs segment-analytics-python

        return PeerSend(staged.messages(run.staging()), segment, spec.peer_options)
    raise SystemExit(f"unknown stage {spec.stage!r}")


def load_every_shard(run: Run, segment: Endpoint, shards: list[dict[str, Any]]) -> Loaded:
    """Each shard's load in turn; the counts of the shards summed."""
    return Loaded.summed([sync.load(run, segment, shard) for shard in shards])


def as_json(summary: Any) -> Any:
    """A stage's summary (typed, or a list of them) as JSON."""
    if isinstance(summary, list):
        return [as_json(item) for item in summary]
    return summary.model_dump(mode="json") if hasattr(summary, "model_dump") else summary


class ChildrenRss:
    """The largest sum of the RSS of this process's children (the transform's worker
    processes), sampled every 50 ms while the stage runs."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ChildrenRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.05):
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:  # gone between listing and reading
                    pass
            self.peak_mb = max(self.peak_mb, total / 2**20)


def _children_cpu() -> float:
    """CPU seconds of this process's children that have ended (the transform's workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    spec_path, result_path = map(Path, argv)
    spec = StageSpec.read(spec_path)
    stage = prepare(spec)
    rss_before_mb = psutil.Process().memory_info().rss / 2**20
    profiler = None
    if spec.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
    children = ChildrenRss()
    started, cpu_started = time.perf_counter(), time.process_time()
    children_cpu_started = _children_cpu()
    with children:
        summary = stage()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    children_cpu_seconds = _children_cpu() - children_cpu_started
    if profiler is not None:
        profiler.stop()
        Path(spec.profile).write_text(profiler.output_text(unicode=False, color=False))
    result_path.write_text(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds,
                                       "rss_before_mb": rss_before_mb,
                                       "peak_rss_mb": peak_rss_mb(),
                                       "children_peak_rss_mb": children.peak_mb,
                                       "children_cpu_seconds": children_cpu_seconds,
                                       "summary": as_json(summary)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
