"""``python -m bench.run --users N [--rate-check] [--out bench/results.json]``: issue 7's benchmark.

In order, each step printed as it goes:

1. generate N users and N/20 companies with the project's generator (seed 0);
2. start the Moesif and Segment stand-ins, each in a process of its own, and
   measure the Moesif one's ceiling (which also warms its query cache); the
   Moesif one is stopped after the extract and started again for step 7, as
   at a million users it holds 8 GB that the load and the peer need;
3. time ``extract_users``, ``extract_companies`` and ``transform``, each in a
   process of its own (``bench.worker``);
4. check the staged messages against ``mapping.identify`` on a sample; no
   figure is written unless every sampled message is byte-identical;
5. measure the Segment stand-in's ceiling, then time our load against
   segment-analytics-python with default and tuned settings, alternating
   ours, default, tuned for ``--rounds`` rounds and taking medians;
6. with ``--rate-check``, check that a configured send rate holds for 60 s;
7. run the whole DAG once through ``airflow dags test``;
8. write the results JSON and print the table.

``--profile DIR`` instead runs extract_users, transform and one load under
pyinstrument and writes their profiles to DIR (figures under a profiler are
not comparable, so no results are written).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from itertools import islice
from pathlib import Path
from typing import Any

import psutil

import moesif_segment_sync
from moesif_segment_sync.pipeline.staging import Staging
from moesif_segment_sync.settings import load_settings

from . import account, rate, report, staged
from .ceilings import moesif_ceiling, segment_ceiling
from .checks import check_delivery, check_identity, check_identity_store
from .config import DAG_ID, MOESIF_KEY, PAGE_SIZE, REPO, WINDOW, WRITE_KEY, forget_settings_env
from .end_to_end import dags_test
from .process import BenchError, SegmentStandIn, StandIn, log_tail, run_measured
from .worker import StageSpec

DEFAULT_OUT = REPO / "bench" / "results.json"
STORE_ABOVE = 1_000_000  # users: above, the large-account mode (Options.store)
SOURCE_RUN = "bench"  # the run whose extract and transform are timed; the loads copy its messages
# Users of the Moesif ceiling's pass over a store: its first page sorts them all (and fills the
# result cache the extract then reads), the rest is a steady rate; a full pass over ten
# million took 2.3 minutes of the hour for the same figure.
STORE_CEILING_USERS = 1_000_000
SEGMENT_PROBE_MESSAGES = 100_000  # enough batches for a steady ceiling, bounded memory at 1M
TUNED_UPLOAD_SIZE = 1000
# Comparing every delivered message parses all of them at once, beside the Segment
# stand-in's own copy: about 10 GB at a million. Above this, the check is on the
# stand-in's counts (every messageId delivered once, none dropped).
FULL_DELIVERY_CHECK_MAX = 200_000
VERSIONS = ("moesif-segment-sync", "apache-airflow", "pandas", "pydantic", "orjson", "requests",
            "SQLAlchemy", "segment-analytics-python", "pyinstrument")


@dataclass(frozen=True)
class Options:
    users: int
    rounds: int
    sample: int
    rate_check: bool
    send_rate: float
    rate_seconds: float
    rss_reference: dict[str, Any] | None
    profile: Path | None
    # Above a million users the Moesif stand-in serves a store on disk (sandbox.datagen
    # --account): the stages run as a first, full-refresh sync of that account, the
    # transform once (the default, in worker processes), the load once and without the peer.
    store: bool = False
    data: Path | None = None


@dataclass(frozen=True)
class StageResult:
    seconds: float  # the stage call alone, measured inside its process
    # The worker process's CPU time during the call, every thread of it: steadier than the
    # wall time on a machine shared with other work, and above it when threads overlap.
    cpu_seconds: float
    peak_rss_mb: float  # the whole worker process (VmHWM), imports included
    rss_before_mb: float  # after imports, before the stage
    summary: dict[str, Any]
    children_peak_rss_mb: float = 0.0  # the largest sum of its child processes' RSS
    children_cpu_seconds: float = 0.0  # CPU time of its child processes (transform workers)

    def figures(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3), "cpu_seconds": round(self.cpu_seconds, 3),
                "peak_rss_mb": round(self.peak_rss_mb, 1),
                "children_peak_rss_mb": round(self.children_peak_rss_mb, 1),
                "children_cpu_seconds": round(self.children_cpu_seconds, 3),
                "rss_before_mb": round(self.rss_before_mb, 1)}


class Workspace:
    """The folders of one benchmark: generated data, staging, audit stores, specs and logs."""

    def __init__(self, root: Path, data: Path | None = None) -> None:
        self.root = root
        self.data = data or root / "data"
        self.logs = root / "logs"
        self.staging_root = (root / "staging").as_uri()
        for folder in (self.data, self.logs, root / "audit", root / "specs"):
            folder.mkdir(parents=True, exist_ok=True)
        self.full_refresh = False

    def staging(self, run_id: str) -> Staging:
        return Staging(self.staging_root, DAG_ID, run_id)

    def stage(self, stage: str, run_id: str, *, profile: Path | None = None,
              audit_url: str | None = None, **spec: Any) -> StageResult:
        """Run one stage in a fresh worker process; fail with its log when it fails."""
        name = f"{run_id}-{stage}"
        spec_path = self.root / "specs" / f"{name}.json"
        result_path = self.root / "specs" / f"{name}.result.json"
        log = self.logs / f"{name}.log"
        StageSpec(stage=stage, run_id=run_id, staging_root=self.staging_root,
                  full_refresh=self.full_refresh,
                  audit_url=audit_url or f"sqlite:///{self.root / 'audit' / f'{run_id}.db'}",
                  profile=str(profile or ""), **spec).write(spec_path)
        measured = run_measured([sys.executable, "-m", "bench.worker", str(spec_path),
                                 str(result_path)], log=log)
        if measured.returncode != 0:
            raise BenchError(f"stage {name} failed (exit {measured.returncode}); log {log}:\n"
                             f"{log_tail(log)}")
        result = json.loads(result_path.read_text())
        return StageResult(result["seconds"], result["cpu_seconds"], result["peak_rss_mb"],
                           result["rss_before_mb"], result["summary"],
                           result["children_peak_rss_mb"],
                           result.get("children_cpu_seconds", 0.0))

    def copy_messages(self, run_id: str) -> None:
        """Give ``run_id`` the source run's staged messages, as if its transform had run."""
        staged.copy_messages(self.staging(SOURCE_RUN), self.staging(run_id))


class Benchmark:
    """One benchmark run; each step adds to ``results``."""

    def __init__(self, options: Options, work: Workspace) -> None:
        self.options = options
        self.work = work
        self.settings = load_settings()  # defaults: the environment's settings were dropped
        self.results: dict[str, Any] = {"n_users": options.users}
        self.started = time.perf_counter()
        # Other work on the machine skews every figure; the load average shows it.
        self.load_average_before = os.getloadavg()

    def say(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:7.1f} s] {message}", flush=True)

    # ------------------------------------------------------------ the steps

    def run(self) -> dict[str, Any]:
        self.generate()
        # Its copy of every message is needed only by the full delivery check; at ten million
        # it would not fit in memory.
        with SegmentStandIn(self.work.logs / "segment.log", WRITE_KEY, keep_messages=(
                self.expected_messages <= FULL_DELIVERY_CHECK_MAX)) as segment:
            with self.moesif_stand_in("extract") as moesif:
                self.probe_moesif(moesif)
                if self.options.profile is not None:
                    self.profile(moesif, segment, self.options.profile)
                    return {}
                self.extract(moesif)
            self.transform()
            self.check_identity()
            self.probe_segment(segment)
            self.compare_loads(segment)
            if self.options.rate_check:
                self.check_rate(segment)
            if not self.options.store:
                with self.moesif_stand_in("end-to-end") as moesif:
                    moesif_ceiling(moesif.url, self.options.users)  # warms it, as for extract
                    self.end_to_end(moesif, segment)
        return self.finish()

    def moesif_stand_in(self, purpose: str) -> StandIn:
        if self.options.store:
            return StandIn("moesif", ["--store", str(self.work.data / "store.sqlite"),
                                      "--key", MOESIF_KEY],
                           self.work.logs / f"moesif-{purpose}.log")
        return StandIn("moesif", ["--users", str(self.work.data / "users.jsonl"),
                                  "--companies", str(self.work.data / "companies.jsonl"),
                                  "--key", MOESIF_KEY], self.work.logs / f"moesif-{purpose}.log")

    def generate(self) -> None:
        if self.options.store:
            self.generate_account()
            return
        started = time.perf_counter()
        command = [sys.executable, "-m", "sandbox.datagen", "--users", str(self.options.users),
                   "--seed", "0", "--start", WINDOW.start.isoformat(),
                   "--end", WINDOW.end.isoformat(), "--out", str(self.work.data)]
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        expected = json.loads((self.work.data / "expected.json").read_text())
        self.n_companies = expected["companies"]
        self.expected_messages = expected["users"] - len(expected["expected_rejects"])
        self.results.update(n_companies=self.n_companies, messages=self.expected_messages)
        self.say(f"generated {self.options.users:,} users and {self.n_companies:,} companies "
                 f"in {time.perf_counter() - started:.1f} s")

    def generate_account(self) -> None:
        """The large account on disk (reused when ``--data`` holds one of N users); its
        first sync is a full refresh, so every user and company is staged."""
        started = time.perf_counter()
        expected = account.generate(self.work.data, self.options.users)
        self.work.full_refresh = True
        self.n_companies = expected["companies"]
        self.expected_messages = expected["users"] - expected["bad"]
        self.results.update(n_companies=self.n_companies, messages=self.expected_messages,
                            mode="store (full refresh of a generated account)")
        self.say(f"account of {self.options.users:,} users and {self.n_companies:,} companies "
                 f"ready in {time.perf_counter() - started:.1f} s")

    def probe_moesif(self, moesif: StandIn) -> None:
        self.say(f"Moesif stand-in up in {moesif.startup_s:.1f} s")
        full = self.options.store
        # A store's pass over ten million users takes minutes: there, one pass over the first
        # STORE_CEILING_USERS is the only one. Its first page sorts all N (and warms the result
        # cache for the extract), so its ceiling is the rate after that page.
        users = min(self.options.users, STORE_CEILING_USERS) if full else self.options.users
        cold, after_first_page = moesif_ceiling(moesif.url, users, full_refresh=full)
        warm = after_first_page if full else moesif_ceiling(moesif.url, users)[0]
        self.moesif_ceilings = {"moesif_users_per_s": round(warm),
                                "moesif_first_pass_users_per_s": round(cold),
                                "moesif_ceiling_users": users,
                                "moesif_startup_s": round(moesif.startup_s, 1)}
        self.say(f"Moesif stand-in ceiling {warm:,.0f} users/s (first pass, which sorts: "
                 f"{cold:,.0f}; over {users:,} users)")

    def extract(self, moesif: StandIn) -> None:
        settings = {"page_size": PAGE_SIZE}
        cpu_before = moesif.cpu_seconds()
        users = self.work.stage("extract_users", SOURCE_RUN, moesif_url=moesif.url,
                                settings=settings)
        self.moesif_busy = (moesif.cpu_seconds() - cpu_before) / users.seconds
        companies = self.work.stage("extract_companies", SOURCE_RUN, moesif_url=moesif.url,
                                    settings=settings)
        staged = users.summary["users_in_window"] + users.summary["users_via_company"]
        if staged != self.options.users:
            raise BenchError(f"extract_users staged {staged:,} users, not {self.options.users:,}")
        self.stages = {"extract_users": users, "extract_companies": companies}
        self.results["extract_users_per_s"] = round(staged / users.seconds)
        self.say(f"extract_users {users.seconds:.2f} s ({users.cpu_seconds:.2f} s CPU) = "
                 f"{self.results['extract_users_per_s']:,} users/s, peak RSS "
                 f"{users.peak_rss_mb:,.0f} MB; extract_companies {companies.seconds:.2f} s")

    def transform(self) -> None:
        """Twice: in one process (the issue's figure), then as the DAG runs it by default, in
        worker processes (``transform_workers`` 0: one per core); both stage the same bytes."""
        runs = (("transform", 1), ("transform_workers", 0))
        for name, workers in runs[1:] if self.options.store else runs:
            result = self.work.stage("transform", SOURCE_RUN,
                                     settings={"transform_workers": workers})
            # One summary per message shard, each with the whole transform's counts.
            self.shards = result.summary
            result = replace(result, summary=self.shards[0])
            if result.summary["messages"] != self.expected_messages:
                raise BenchError(f"transform built {result.summary['messages']:,} messages, "
                                 f"not {self.expected_messages:,}")
            self.stages[name] = result
            self.results[f"{name}_users_per_s"] = round(result.summary["considered"]
                                                        / result.seconds)
            self.say(f"{name} ({result.summary['workers']} worker process(es)) "
                     f"{result.seconds:.2f} s ({result.cpu_seconds:.2f} s CPU) = "
                     f"{self.results[f'{name}_users_per_s']:,} users/s, peak RSS "
                     f"{result.peak_rss_mb:,.0f} MB, its workers' together "
                     f"{result.children_peak_rss_mb:,.0f} MB")
        self.results["transform_workers"] = self.stages["transform_workers"].summary["workers"]

    def check_identity(self) -> None:
        if self.options.store:
            check = check_identity_store(self.work.data / "store.sqlite",
                                         self.work.staging(SOURCE_RUN),
                                         n_users=self.options.users, sample=self.options.sample)
        else:
            check = check_identity(self.work.data / "users.jsonl",
                                   self.work.data / "companies.jsonl",
                                   self.work.staging(SOURCE_RUN), n_users=self.options.users,
                                   sample=self.options.sample)
        self.results["identity_check"] = check
        if not check["passed"]:
            raise BenchError(f"staged messages differ from mapping.identify: {check}")
        self.say(f"identity check passed: {check['identical']:,} sampled messages identical, "
                 f"{check['rejected_as_expected']:,} rejected as expected")

    def probe_segment(self, segment: SegmentStandIn) -> None:
        messages = list(islice(staged.messages(self.work.staging(SOURCE_RUN)),
                               SEGMENT_PROBE_MESSAGES))
        segment.clear()
        ceiling = segment_ceiling(segment.url, messages, self.settings)
        segment.clear()
        self.segment_ceiling = round(ceiling)
        self.say(f"Segment stand-in ceiling {ceiling:,.0f} events/s")

    def compare_loads(self, segment: SegmentStandIn) -> None:
        """Ours, peer default, peer tuned, in turn, ``rounds`` times: drift hits all alike."""
        configurations = {"default": {},
                          "tuned": {"upload_size": TUNED_UPLOAD_SIZE,
                                    "max_queue_size": self.expected_messages + 1}}
        if self.options.store:  # the peer's comparison stays at 100,000 and a million
            configurations = {}
        ours: list[dict[str, Any]] = []
        peers: dict[str, list[dict[str, Any]]] = {name: [] for name in configurations}
        for number in range(1, 2 if self.options.store else self.options.rounds + 1):
            ours.append(self.our_load(segment, number))
            for name, options in configurations.items():
                peers[name].append(self.peer_load(segment, name, options, number))
        our_rate = statistics.median(run["events_per_s"] for run in ours)
        self.results["load_events_per_s"] = round(our_rate)
        self.results["dropped"] = sum(run["dropped"] for run in ours)
        self.results["peer"] = {}
        for name, runs in peers.items():
            peer_rate = statistics.median(run["events_per_s"] for run in runs)
            median_run = min(runs, key=lambda run: abs(run["events_per_s"] - peer_rate))
            self.results["peer"][name] = {
                "events_per_s": round(peer_rate), "delivered": median_run["delivered"],
                "dropped": median_run["dropped"], "options": configurations[name],
                "runs": runs}
            self.results[f"ratio_vs_peer_{name}"] = round(our_rate / peer_rate, 2)
        self.results["load_runs"] = ours

    def our_load(self, segment: SegmentStandIn, number: int) -> dict[str, Any]:
        run_id = f"load-ours-{number}"
        self.work.copy_messages(run_id)
        segment.clear()
        cpu_before = segment.cpu_seconds()
        result = self.work.stage("load", run_id, segment_url=segment.url, shards=self.shards,
                                 settings={"send_rate": None})
        stand_in_cpu = segment.cpu_seconds() - cpu_before
        received = segment.stats()
        if number == 1:
            self.results["state_store_mb"] = _sqlite_mb(self.work.root / "audit" / f"{run_id}.db")
        figures = {**result.figures(), "sent": result.summary["sent"],
                   "batches": result.summary["batches"], **self._received(received),
                   "events_per_s": round(received["delivered"] / result.seconds),
                   "stand_in_busy": round(stand_in_cpu / result.seconds, 3)}
        if number == 1:
            self.results["delivery_check"] = (
                check_delivery(segment.delivered_body(), self.work.staging(run_id))
                if self.expected_messages <= FULL_DELIVERY_CHECK_MAX else
                {"mode": "counts", "checked": 0,
                 "passed": figures["dropped"] == 0 and figures["duplicates"] == 0})
        self.stages.setdefault("load", result)
        if result.peak_rss_mb > self.stages["load"].peak_rss_mb:
            self.stages["load"] = result
        self.say(f"round {number}: our load {result.seconds:.2f} s "
                 f"({result.cpu_seconds:.2f} s CPU) = "
                 f"{figures['events_per_s']:,} events/s, dropped {figures['dropped']:,}, "
                 f"peak RSS {result.peak_rss_mb:,.0f} MB")
        return figures

    def peer_load(self, segment: SegmentStandIn, name: str, options: dict[str, Any],
                  number: int) -> dict[str, Any]:
        segment.clear()
        cpu_before = segment.cpu_seconds()
        result = self.work.stage("peer", SOURCE_RUN, segment_url=segment.url,
                                 peer_options=options)
        stand_in_cpu = segment.cpu_seconds() - cpu_before
        received = segment.stats()
        figures = {**result.figures(), **result.summary, **self._received(received),
                   "events_per_s": round(received["delivered"] / result.seconds),
                   "stand_in_busy": round(stand_in_cpu / result.seconds, 3)}
        self.say(f"round {number}: peer {name} {result.seconds:.2f} s = "
                 f"{figures['events_per_s']:,} events/s, dropped {figures['dropped']:,}")
        return figures

    def _received(self, stats: dict[str, int]) -> dict[str, int]:
        """What the stand-in kept; every message it did not deliver counts as dropped."""
        return {"delivered": stats["delivered"], "duplicates": stats["duplicates"],
                "dropped": self.expected_messages - stats["delivered"],
                "dropped_by_stand_in": stats["dropped"]}

    def check_rate(self, segment: SegmentStandIn) -> None:
        run_id = "rate-check"
        needed = rate.messages_needed(self.options.send_rate, self.options.rate_seconds,
                                      self.settings.max_batch_messages)
        if needed > self.expected_messages:
            raise BenchError(f"--rate-check at {self.options.send_rate:g}/s for "
                             f"{self.options.rate_seconds:g} s needs {needed:,} messages; "
                             f"this run has {self.expected_messages:,}: raise --users")
        copied = rate.copy_first(self.work.staging(SOURCE_RUN), self.work.staging(run_id), needed)
        self.say(f"rate check: {copied:,} messages at {self.options.send_rate:g} events/s "
                 f"(about {copied / self.options.send_rate:.0f} s)")
        segment.clear()
        result = self.work.stage("load", run_id, segment_url=segment.url,
                                 shards=[{**self.shards[0], "shard": 0}],
                                 settings={"send_rate": self.options.send_rate})
        check = {**rate.analyse(segment.requests(), self.options.send_rate),
                 "load_seconds": round(result.seconds, 3)}
        segment.clear()
        self.results["rate_check"] = check
        self.say(f"rate check: {check['achieved_events_per_s']:,} events/s over "
                 f"{check['span_s']} s (error {check['error']:+.2%}); at most "
                 f"{check['most_events_in_one_second']:,} events in one second")

    def end_to_end(self, moesif: StandIn, segment: SegmentStandIn) -> None:
        self.say("airflow dags test ...")
        figures = dags_test(self.work.root / "airflow", self.work.logs / "dags-test.log",
                            moesif, segment, expected_messages=self.expected_messages)
        self.results["end_to_end_s"] = figures["seconds"]
        self.results["end_to_end"] = figures
        self.say(f"airflow dags test {figures['seconds']:.1f} s (db migrate before it, "
                 f"untimed: {figures['airflow_db_migrate_s']:.1f} s)")

    def profile(self, moesif: StandIn, segment: SegmentStandIn, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        n = self.options.users
        paths = [folder / f"{name}-{n}.txt" for name in ("extract_users", "transform", "load")]
        self.work.stage("extract_users", SOURCE_RUN, moesif_url=moesif.url, profile=paths[0],
                        settings={"page_size": PAGE_SIZE})
        self.work.stage("extract_companies", SOURCE_RUN, moesif_url=moesif.url,
                        settings={"page_size": PAGE_SIZE})
        shards = self.work.stage("transform", SOURCE_RUN, profile=paths[1],
                                 settings={"transform_workers": 1}).summary
        self.work.copy_messages("load-profile")
        segment.clear()
        self.work.stage("load", "load-profile", segment_url=segment.url, shards=shards,
                        profile=paths[2], settings={"send_rate": None})
        self.say("profiles written: " + ", ".join(str(path) for path in paths))

    # ------------------------------------------------------------ the report

    def finish(self) -> dict[str, Any]:
        results = self.results
        results["peak_rss_mb"] = {name: round(result.peak_rss_mb, 1)
                                  for name, result in self.stages.items()}
        results["per_core"] = per_core(self.stages, self.options.users)
        # The transform in worker processes: the task's process and its workers together.
        parallel = self.stages["transform_workers"]
        results["peak_rss_mb"]["transform_workers"] = round(
            parallel.peak_rss_mb + parallel.children_peak_rss_mb, 1)
        # The workers' share of the task's memory, on its own: a worker is a process of its own.
        results["transform_worker_peak_rss_mb"] = round(
            parallel.children_peak_rss_mb / max(parallel.summary["workers"], 1), 1)
        results["stages"] = {name: {**result.figures(), "summary": _brief(result.summary)}
                             for name, result in self.stages.items()}
        results["stand_ins"] = {
            **self.moesif_ceilings, "segment_events_per_s": self.segment_ceiling,
            # A client waits for each answer, so 1/ceiling of each record's time is the
            # stand-in's; "busy" is the stand-in's CPU time over the stage's (1.0: a full core).
            "moesif_share_of_extract": round(results["extract_users_per_s"]
                                             / self.moesif_ceilings["moesif_users_per_s"], 3),
            "moesif_busy_during_extract": round(self.moesif_busy, 3),
            "segment_share_of_load": round(results["load_events_per_s"]
                                           / self.segment_ceiling, 3),
            "segment_busy_during_load": statistics.median(
                run["stand_in_busy"] for run in results["load_runs"])}
        results["machine"] = {**machine(), "load_average_before": self.load_average_before,
                              "load_average_after": os.getloadavg()}
        results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["duration_s"] = round(time.perf_counter() - self.started, 1)
        results["targets"] = report.targets(results, self.options.rss_reference)
        return results


def per_core(stages: dict[str, StageResult], n_users: int) -> dict[str, Any]:
    """Users (the load: events) per CPU second of each stage, its worker processes included,
    and the CPU seconds a million users cost end to end (extracts, the default transform,
    the load)."""
    def cpu(name: str) -> float:
        return stages[name].cpu_seconds + stages[name].children_cpu_seconds

    counts = {"extract_users": n_users, "extract_companies": n_users,
              "transform": stages["transform_workers"].summary["considered"],
              "transform_workers": stages["transform_workers"].summary["considered"],
              "load": stages["load"].summary["sent"]}
    figures = {f"{name}_per_cpu_s": round(counts[name] / cpu(name)) for name in stages
               if name in counts and cpu(name) > 0}
    total = sum(cpu(name) for name in ("extract_users", "extract_companies",
                                       "transform_workers", "load"))
    figures["cpu_seconds_per_million_users"] = round(total / n_users * 1e6, 1)
    figures["us_per_user"] = {name: round(cpu(name) / counts[name] * 1e6, 2)
                              for name in stages if name in counts and counts[name]}
    return figures


def _sqlite_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6, 1)


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    """A stage summary without its file URLs, which name a deleted temporary folder."""
    return {key: value for key, value in summary.items() if key not in ("file", "files")}


def machine() -> dict[str, Any]:
    """Where the figures were measured, so that two results files can be compared."""
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)), "cpu": cpu,
            "package": str(Path(moesif_segment_sync.__file__).parent),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "versions": {name: _version(name) for name in VERSIONS}, **_commit()}


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _commit() -> dict[str, Any]:
    """The commit measured, and whether the tree had changes (read-only git commands)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=REPO,
                              capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None,
            "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no"))}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000, help="N (default 100,000)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="results JSON (default bench/results.json)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of ours / peer default / peer tuned (default 3)")
    parser.add_argument("--sample", type=int, default=2000,
                        help="users in the message identity check (default 2,000)")
    parser.add_argument("--rate-check", action="store_true",
                        help="also check that a configured send rate holds (adds ~65 s)")
    parser.add_argument("--send-rate", type=float, default=1000.0,
                        help="events/s for --rate-check (default 1000)")
    parser.add_argument("--rate-seconds", type=float, default=60.0,
                        help="how long --rate-check lasts (default 60)")
    parser.add_argument("--rss-reference", type=Path,
                        help="a results JSON of another N (e.g. 100,000) to judge RSS growth by")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="only profile extract_users, transform and load into DIR")
    parser.add_argument("--store", action=argparse.BooleanOptionalAction, default=None,
                        help=f"serve a generated account from disk, as a full refresh (default: "
                             f"above {STORE_ABOVE:,} users)")
    parser.add_argument("--data", type=Path,
                        help="with --store: the account's folder, reused when it holds N users")
    parser.add_argument("--work", type=Path,
                        help="work folder (default: a temporary one, removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    if args.users < 1 or args.rounds < 1 or args.sample < 1:
        parser.error("--users, --rounds and --sample must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dropped = forget_settings_env()
    if dropped:
        print(f"ignoring {', '.join(dropped)}: the benchmark sets what it measures", flush=True)
    options = Options(args.users, args.rounds, args.sample, args.rate_check, args.send_rate,
                      args.rate_seconds,
                      json.loads(args.rss_reference.read_text()) if args.rss_reference else None,
                      args.profile,
                      args.users > STORE_ABOVE if args.store is None else args.store, args.data)
    root = args.work or Path(tempfile.mkdtemp(prefix="mss-bench-"))
    print(f"work folder {root}", flush=True)
    try:
        results = Benchmark(options, Workspace(root, options.data)).run()
    except BenchError as exc:
        print(f"benchmark failed: {exc}\n(work folder kept: {root})", file=sys.stderr)
        return 1
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    if not results:  # --profile
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + report.table(results) + f"\n\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
