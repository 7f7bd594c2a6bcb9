"""Soak: 20 consecutive hourly windows through every stage, with random faults at both stand-ins.

Before each window, a tenth of the good users change (a new ``modified_time``
in that window and a new trait), so every window has new content to send.
Every API request each stand-in receives fails, at a 5% rate drawn from a
seeded generator, with one of the faults the issue lists (429 with and
without Retry-After, 5xx, a reset connection, a broken body, an answer
slower than the client waits). A stage that still fails is run again, as
Airflow would (the DAG's 2 retries). The same 20 windows run once more with
no faults as the reference. Afterwards the Segment stand-in's de-duplicated
received set must equal the reference's exactly, every window's accounting
must add up and equal the reference's, and the users delivered must be the
users the windows select from the generated data.

Run with ``make soak`` (``pytest -m soak tests/reliability``); it writes its
figures into docs/RELIABILITY.md between the soak markers.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from moesif_segment_sync import sync
from moesif_segment_sync.errors import TransientHTTPError
from moesif_segment_sync.settings import Endpoint
from moesif_segment_sync.window import Window
from sandbox._http import Fault, FaultQueue
from sandbox.datagen import Dataset, generate
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.conftest import REPO
from tests.reliability.support import MOESIF_KEY, WRITE_KEY, FakeTime, make_run, on_fake_time

pytestmark = [pytest.mark.soak, pytest.mark.timeout(900)]

SEED = 20261125
FAULT_RATE = 0.05
START = datetime(2026, 11, 25, 0, tzinfo=UTC)
WINDOWS = [Window(START + timedelta(hours=h), START + timedelta(hours=h + 1), "data_interval")
           for h in range(20)]
USERS = 3000
CHANGED_PER_WINDOW = 0.1
# Small pages, batches and shards: many requests, so that many of them fail.
SETTINGS = {"page_size": 50, "id_chunk_size": 20, "max_batch_messages": 20, "shard_size": 60,
            "http_timeout": 0.3, "max_rejected_share": 1.0}
TASK_TRIES = 3  # the first try and the DAG's 2 retries
MOESIF_FAULTS = ({"status": 429, "retry_after": 1}, {"status": 429}, {"status": 502},
                 {"status": 503}, {"status": 504}, {"reset": True}, {"truncate": True},
                 {"delay": 0.6})
SEGMENT_FAULTS = ({"status": 429, "retry_after": 1}, {"status": 500}, {"status": 502},
                  {"status": 503}, {"reset": True}, {"delay": 0.6})
REPORT = REPO / "docs" / "RELIABILITY.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"


class RandomFaults(FaultQueue):
    """A stand-in's fault queue that also fails each request at ``rate``, seeded."""

    def __init__(self, rng: random.Random, rate: float, kinds: tuple[dict, ...]) -> None:
        super().__init__()
        self.rng, self.rate, self.kinds = rng, rate, kinds
        self.requests = 0
        self.injected: Counter = Counter()
        self._draw = threading.Lock()

    def take(self, path: str) -> Fault | None:
        with self._draw:
            self.requests += 1
            if self.rng.random() >= self.rate:
                return super().take(path)
            fault = Fault(**self.rng.choice(self.kinds))
            self.injected[str(fault.status) if fault.kind == "status" else fault.kind] += 1
            return fault


@dataclass
class Figures:
    """What one window's run did, under faults: tallies taken before and after it."""

    window: Window
    before: tuple[int, ...]
    after: tuple[int, ...] = ()
    task_retries: int = 0    # stages run again, as Airflow would

    def close(self, after: tuple[int, ...]) -> None:
        self.after = after

    @property
    def counts(self) -> dict[str, int]:
        names = ("moesif_requests", "moesif_faults", "segment_requests", "segment_faults",
                 "waits")  # waits: the clients' retries, each waited on the fake clock
        return {name: b - a for name, a, b in zip(names, self.before, self.after, strict=True)}


def as_task(stage: Callable[..., Any], *args: Any, figures: Figures | None = None) -> Any:
    """Run a stage as an Airflow task with retries: what the client gave up on is tried again."""
    for attempt in range(1, TASK_TRIES + 1):
        try:
            return stage(*args)
        except (TransientHTTPError, requests.RequestException):
            if attempt == TASK_TRIES:
                raise
            if figures is not None:
                figures.task_retries += 1
    raise AssertionError("unreachable")


def sync_window(root: Path, window: Window, moesif: MoesifStandIn, segment: SegmentStandIn,
                figures: Figures | None = None) -> dict:
    """One scheduled run of ``window``: every stage, in the DAG's order; the audit report."""
    run = make_run(root, f"scheduled__{window.end.isoformat()}", window=window, **SETTINGS)
    to_moesif, to_segment = Endpoint(moesif.url, MOESIF_KEY), Endpoint(segment.url, WRITE_KEY)
    users = as_task(sync.extract_users, run, to_moesif, figures=figures)
    companies = as_task(sync.extract_companies, run, to_moesif, figures=figures)
    shards = as_task(sync.transform, run, figures=figures)
    loads = [as_task(sync.load, run, to_segment, shard, figures=figures) for shard in shards]
    return sync.audit(run, users, companies, shards, loads)


def changes(dataset: Dataset) -> list[list[dict]]:
    """For each window, the users that change just before it runs (seeded, so both passes
    see the same history)."""
    rng = random.Random(SEED + 1)
    good = [user for index, user in enumerate(dataset.users)
            if index not in dataset.expected_rejects]
    history = []
    for number, window in enumerate(WINDOWS):
        changed = []
        for user in rng.sample(good, int(len(good) * CHANGED_PER_WINDOW)):
            moment = window.start + timedelta(seconds=rng.randrange(3600))
            changed.append({**user, "modified_time": moment.isoformat().replace("+00:00", "Z"),
                            "metadata": {**(user.get("metadata") or {}), "soak_revision": number}})
        history.append(changed)
    return history


def sync_windows(root: Path, history: list[list[dict]], moesif: MoesifStandIn,
                 segment: SegmentStandIn, measure: Callable[[Window], Figures] | None = None,
                 ) -> list[dict]:
    """The 20 windows in order, each after its users changed; the audit reports."""
    reports = []
    for window, changed in zip(WINDOWS, history, strict=True):
        for user in changed:
            moesif.upsert_user(user)
        figures = measure(window) if measure else None
        reports.append(sync_window(root, window, moesif, segment, figures))
    return reports


def selected_user_ids(dataset: Dataset, history: list[list[dict]]) -> set[str]:
    """Every user some window selects (changed or seen in it, or of a company that was),
    except the ones the generator made bad; and every user that changed."""
    selected = {user["user_id"] for changed in history for user in changed}
    for window in WINDOWS:
        selected |= dataset.expected_user_ids(*window.bounds)
    return selected


def accounting(report: dict) -> tuple[int, int, int, int]:
    return report["considered"], report["sent"], report["unchanged"], report["rejected"]


def test_twenty_windows_under_random_faults_deliver_exactly_the_fault_free_set(tmp_path):
    started = time.monotonic()
    dataset = generate(USERS, seed=SEED, start=START, end=WINDOWS[-1].end)
    history = changes(dataset)

    with MoesifStandIn(dataset.users, dataset.companies, api_key=MOESIF_KEY).start() as moesif, \
            SegmentStandIn(WRITE_KEY).start() as reference_segment:
        reference = sync_windows(tmp_path / "reference", history, moesif, reference_segment)
        expected = set(reference_segment.delivered)

    rng = random.Random(SEED)
    figures: list[Figures] = []
    with MoesifStandIn(dataset.users, dataset.companies, api_key=MOESIF_KEY).start() as moesif, \
            SegmentStandIn(WRITE_KEY).start() as segment, on_fake_time(FakeTime()) as clock:
        moesif.faults = RandomFaults(rng, FAULT_RATE, MOESIF_FAULTS)
        segment.faults = RandomFaults(rng, FAULT_RATE, SEGMENT_FAULTS)

        def tally() -> tuple[int, ...]:
            return (moesif.faults.requests, sum(moesif.faults.injected.values()),
                    segment.faults.requests, sum(segment.faults.injected.values()),
                    len(clock.sleeps))

        def measure(window: Window) -> Figures:
            """The window's figures: counted from here until the next window is measured."""
            if figures:
                figures[-1].close(tally())
            figures.append(Figures(window, tally()))
            return figures[-1]

        reports = sync_windows(tmp_path / "faulted", history, moesif, segment, measure)
        figures[-1].close(tally())
        time.sleep(0.7)  # answers that came too late are received all the same
        received = set(segment.delivered)
        delivered_users = {message["userId"] for message in segment.delivered.values()}
        stats = segment.stats()
        injected = {"Moesif": dict(moesif.faults.injected),
                    "Segment": dict(segment.faults.injected)}

    checks = {
        "the de-duplicated received set equals the fault-free run's": received == expected,
        "every window's accounting adds up (considered = sent + unchanged + rejected)": all(
            report["considered"] == report["sent"] + report["unchanged"] + report["rejected"]
            and report["status"] == "success" for report in reports),
        "every window's counts equal the fault-free run's": [
            accounting(report) for report in reports] == [accounting(r) for r in reference],
        "the users delivered are the users the windows select": (
            delivered_users == selected_user_ids(dataset, history)),
        "Segment dropped nothing": stats["dropped"] == 0,
    }
    seconds = time.monotonic() - started
    write_report(figures, reports, injected, stats, checks, len(expected), seconds)

    assert checks == dict.fromkeys(checks, True)
    assert min(sum(kinds.values()) for kinds in injected.values()) >= 10  # faults did happen


def write_report(figures: list[Figures], reports: list[dict], injected: dict, stats: dict,
                 checks: dict, expected: int, seconds: float) -> None:
    """The soak's figures as Markdown, between the soak markers of docs/RELIABILITY.md."""
    rows = ["| window (UTC) | considered | sent | unchanged | rejected | Moesif requests "
            "(faults) | Segment requests (faults) | client retries | task retries |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for f, report in zip(figures, reports, strict=True):
        c = f.counts
        rows.append(
            f"| {f.window.start:%m-%d %H:%M}–{f.window.end:%H:%M} | {report['considered']} | "
            f"{report['sent']} | {report['unchanged']} | {report['rejected']} | "
            f"{c['moesif_requests']} ({c['moesif_faults']}) | {c['segment_requests']} "
            f"({c['segment_faults']}) | {c['waits']} | {f.task_retries} |")
    total = Counter()
    for f, report in zip(figures, reports, strict=True):
        total.update({**f.counts, "task_retries": f.task_retries,
                      **{name: report[name] for name in
                         ("considered", "sent", "unchanged", "rejected")}})
    rows.append(
        f"| **total** | {total['considered']} | {total['sent']} | {total['unchanged']} | "
        f"{total['rejected']} | {total['moesif_requests']} ({total['moesif_faults']}) | "
        f"{total['segment_requests']} ({total['segment_faults']}) | {total['waits']} | "
        f"{total['task_retries']} |")
    kinds = "; ".join(f"{api}: " + ", ".join(f"{kind} ×{n}" for kind, n in sorted(found.items()))
                      for api, found in injected.items())
    held = "\n".join(f"- {'held' if ok else '**FAILED**'}: {check}"
                     for check, ok in checks.items())
    text = "\n".join([
        BEGIN,
        f"Generated by `make soak` (tests/reliability/test_soak.py): seed {SEED}, "
        f"{USERS:,} generated users, {len(WINDOWS)} hourly windows from "
        f"{WINDOWS[0].start:%Y-%m-%d %H:%M} UTC, {CHANGED_PER_WINDOW:.0%} of the good users "
        f"changing before each window, faults at {FAULT_RATE:.0%} of the requests of each "
        f"stand-in; {seconds:.0f} s on this machine (both passes).",
        "",
        *rows,
        "",
        f"Faults injected: {kinds}.",
        "",
        f"Segment stand-in: {stats['batches']} batches accepted, {stats['messages_received']} "
        f"messages received, {stats['delivered']} distinct messageIds (the fault-free run: "
        f"{expected}), {stats['duplicates']} duplicates de-duplicated by messageId, "
        f"{stats['dropped']} dropped.",
        "",
        held,
        END,
    ])
    document = REPORT.read_text()
    assert BEGIN in document and END in document, f"{REPORT} lacks the soak markers"
    head, rest = document.split(BEGIN, 1)
    REPORT.write_text(head + text + rest.split(END, 1)[1])
