"""What each stage reports, typed: small records of paths and counts, never data.

They travel between Airflow tasks as JSON (``model_dump(mode="json")``) and are checked
again where they are read, so a summary from another release fails loudly, not by a
missing key deep inside the audit.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_serializer

from .codec import format_utc

# A moment in UTC, written as everywhere else in the project: 2026-11-25T01:00:00.000Z.
UtcTime = Annotated[datetime, PlainSerializer(format_utc, when_used="json")]


def diff_summed(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Diff previews (``pipeline.diff.Preview.summary``) as one: users by status, and trait
    changes by how many users they concern, the most common first; empty when there was
    nothing to compare."""
    users: Counter = Counter()
    traits: Counter = Counter()
    for summary in summaries:
        users.update(summary.get("users", {}))
        traits.update(summary.get("traits", {}))
    if not users:
        return {}
    return {"users": dict(sorted(users.items())),
            "traits": dict(sorted(traits.items(), key=lambda item: (-item[1], item[0])))}


class StageSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seconds: float = 0.0
    started_at: UtcTime | None = None  # set by sync when the stage starts


class ExtractedUsers(StageSummary):
    """``extract_users``: users by the route that found them, and their other companies."""

    users_in_window: int
    users_via_company: int
    users_in_lookback: int = 0  # of users_in_window: found only in the lookback before it
    user_companies: int
    file: str
    requests: int


class ExtractedCompanies(StageSummary):
    """``extract_companies``: the companies changed or seen in the window."""

    companies: int
    file: str
    requests: int


class Built(StageSummary):
    """``transform``: what was considered, built and rejected, and into how many shards."""

    # Names this transform's output, so a retried load can tell its own plan from a plan
    # made for an earlier transform of the same run.
    transform_id: str
    considered: int
    messages: int
    groups: int = 0  # group calls built (MOESIF_SEGMENT_GROUP_CALLS), beside the messages
    rejected: int
    rejected_by_kind: dict[str, int]
    warnings: dict[str, int]
    routes: dict[str, int]
    companies: int
    companies_rejected: int
    shards: int
    workers: int
    files: dict[str, str]


class Shard(Built):
    """One shard of the built messages: what one mapped ``load`` task is given."""

    shard: int


class Loaded(StageSummary):
    """``load`` of one shard, or of all shards summed (``shards`` of them)."""

    shard: int | None = None  # None when summed
    shards: int = 1
    batches: int
    sent: int
    refused: int = 0  # refused by Segment one by one: rejects of kind segment_refused
    would_send: int
    unchanged: int
    planned: int
    resumed_batches: int
    attempts: int
    bytes: int
    # Group calls, counted apart from the identify messages above.
    group_sent: int = 0
    group_refused: int = 0
    group_would_send: int = 0
    group_unchanged: int = 0
    traits_nulled: int = 0  # messages sent with removed traits as null
    diff: dict[str, Any] = {}  # a dry run's diff preview, summed (pipeline.diff)

    @classmethod
    def summed(cls, loads: list[Loaded]) -> Loaded:
        """The shards' loads as one: counts add up, the slowest shard is the load's time."""
        counts = {name: sum(getattr(load, name) for load in loads) for name in (
            "batches", "sent", "refused", "would_send", "unchanged", "planned",
            "resumed_batches", "attempts", "bytes", "group_sent", "group_refused",
            "group_would_send", "group_unchanged", "traits_nulled")}
        starts = [load.started_at for load in loads if load.started_at is not None]
        return cls(**counts, shards=len(loads), seconds=max(load.seconds for load in loads),
                   started_at=min(starts, default=None),
                   diff=diff_summed([load.diff for load in loads]))


class RunCounts(BaseModel):
    """The run record's ``counts``: where the users came from and what became of them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    routes: dict[str, int]
    rejected_by_kind: dict[str, int]
    warnings: dict[str, int]
    companies: int
    companies_rejected: int
    users_in_window: int
    users_via_company: int
    companies_in_window: int
    user_companies: int
    moesif_requests: int
    shards: int
    resumed_batches: int
    # Users found only by the lookback, and those of them no earlier run had sent.
    users_in_lookback: int = 0
    users_found_late: int = 0
    # What the run kept out of staging and Segment, so its page can say so.
    privacy: dict[str, list[str]] = Field(default_factory=dict)
    # Group calls (MOESIF_SEGMENT_GROUP_CALLS): built, sent, would_send, unchanged, refused;
    # empty when the run made none.
    groups: dict[str, int] = Field(default_factory=dict)
    # Users whose message carried removed traits as null (MOESIF_SEGMENT_REMOVED_TRAITS).
    traits_nulled: int = 0
    # A dry run's diff preview: users by status, trait changes by how many users they concern.
    diff: dict[str, Any] = Field(default_factory=dict)
    send_attempts: int
    bytes: int


class RunFigures(BaseModel):
    """What every view of a run shows: its window, mode, status and counts."""

    mode: str  # scheduled, backfill or manual
    status: str  # success or failed
    window_start: datetime
    window_end: datetime
    window_source: str
    dry_run: bool
    considered: int
    sent: int
    would_send: int
    unchanged: int
    rejected: int
    batches: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None = None  # one line, never a trace: the trace stays in the task log
    failed_task: str | None = None
    notes: list[str] = []  # what a person should know: a window with nothing in it, ...


class RunRecord(RunFigures):
    """One row of the audit store's ``sync_runs``: what a run did, and its verdict."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    params: dict[str, Any]
    counts: RunCounts | None  # None for a run that failed before its audit
    timings: dict[str, float | None]
    staging: str

    @field_serializer("window_start", "window_end", "started_at", "finished_at",
                      when_used="json")
    def _utc(self, moment: datetime | None) -> str | None:
        return format_utc(moment) if moment is not None else None
