"""The window a run syncs, and the run parameters that choose it.

Plain Python with its own tests: no Airflow, no database, no clock (the one rule that
needs the time, a window must not end in the future, is given ``now``). A run works on
``[start, end)``, from (in order of precedence) explicit ``start`` and ``end`` params, the
run's data interval, or, for a manual run with neither, the last complete schedule
interval before the run started. A backfill run always syncs its own data interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from croniter import croniter

from .errors import ConfigError


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    source: str  # "params", "data_interval" or "last_complete_interval"
    # What a person should know about how the window was chosen (shown with the run).
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        return self.start, self.end


@dataclass(frozen=True)
class RunParams:
    """The trigger form's params, validated."""

    start: datetime | None = None
    end: datetime | None = None
    full_refresh: bool = False
    dry_run: bool = False
    force: bool = False
    doctor: bool = False
    allow_long_window: bool = False
    retry_rejects_of: str | None = None  # a run id: sync the users that run rejected

    @classmethod
    def from_params(cls, params: dict) -> RunParams:
        start = parse_moment(params.get("start"), "start")
        end = parse_moment(params.get("end"), "end")
        if (start is None) != (end is None):
            given, missing = ("start", "end") if start is not None else ("end", "start")
            raise ConfigError(f"param {given!r} is set but {missing!r} is not: an explicit "
                              "window needs both (or neither, to use the run's data interval)")
        if start is not None and end is not None and start >= end:
            raise ConfigError(f"param 'start' ({start.isoformat()}) must be before "
                              f"'end' ({end.isoformat()})")
        retry = params.get("retry_rejects_of")
        if retry is not None and (not isinstance(retry, str) or not retry.strip()):
            raise ConfigError(f"param 'retry_rejects_of' must be a run id, got {retry!r}")
        return cls(start, end, *(_flag(params, name) for name in (
            "full_refresh", "dry_run", "force", "doctor", "allow_long_window")),
            retry_rejects_of=retry.strip() if retry else None)

    def as_dict(self) -> dict:
        """The params as the run record keeps them (JSON)."""
        return {"start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat() if self.end else None,
                "full_refresh": self.full_refresh, "dry_run": self.dry_run,
                "force": self.force, "doctor": self.doctor,
                "allow_long_window": self.allow_long_window,
                **({"retry_rejects_of": self.retry_rejects_of} if self.retry_rejects_of else {})}


def _flag(params: dict, name: str) -> bool:
    value = params.get(name)
    if value is None:  # the form sends null for a switch never touched
        return False
    if not isinstance(value, bool):
        raise ConfigError(f"param {name!r} must be true or false, got {value!r}")
    return value


def parse_moment(value: object, name: str) -> datetime | None:
    """An ISO date (midnight UTC) or datetime (naive means UTC); None or blank means unset."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(f"{name}: expected an ISO date or datetime like "
                              f"2026-11-25T13:00Z, got {value[:40]!r}") from None
    else:
        raise ConfigError(f"{name}: expected an ISO date or datetime like 2026-11-25T13:00Z, "
                          f"got {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def resolve_window(params: RunParams, *, interval_start: datetime | None,
                   interval_end: datetime | None, run_after: datetime,
                   schedule: str, backfill: bool = False) -> Window:
    """The window the run syncs: the params' when both are set (but on a backfill run, which
    always syncs its own interval), else the data interval, else the last complete one."""
    has_interval = (interval_start is not None and interval_end is not None
                    and interval_start < interval_end)
    notes: tuple[str, ...] = ()
    if params.start is not None and params.end is not None:
        if not (backfill and has_interval):
            return Window(params.start, params.end, "params")
        notes = (f"params start/end ({params.start.isoformat()} to {params.end.isoformat()}) "
                 "ignored: a backfill run syncs its own data interval",)
    if has_interval:
        return Window(interval_start.astimezone(UTC), interval_end.astimezone(UTC),
                      "data_interval", notes)
    start, end = last_complete_interval(schedule, run_after)
    return Window(start, end, "last_complete_interval")


def check_window(window: Window, params: RunParams, *, now: datetime,
                 max_window: timedelta) -> None:
    """Refuse a window that cannot be what the person meant: one that ends in the future (it
    would miss what happens later and never be synced again), or one longer than
    ``max_window`` (a full-history pull in one task) unless ``full_refresh`` or
    ``allow_long_window`` says it is meant."""
    if window.end > now:
        raise ConfigError(
            f"window [{window.start.isoformat()}, {window.end.isoformat()}) ends in the future "
            f"(now is {now.replace(microsecond=0).isoformat()}): choose an end at or before now")
    if window.end - window.start > max_window and not (params.full_refresh
                                                       or params.allow_long_window):
        raise ConfigError(
            f"window [{window.start.isoformat()}, {window.end.isoformat()}) is "
            f"{_days(window.end - window.start)} long, over MOESIF_SEGMENT_MAX_WINDOW "
            f"({_days(max_window)}): set the param allow_long_window (or full_refresh) if "
            "that is meant, or split it into a backfill")


def _days(span: timedelta) -> str:
    days = span / timedelta(days=1)
    return f"{days:g} days" if days >= 1 else f"{span.total_seconds() / 3600:g} hours"


def last_complete_interval(schedule: str, before: datetime) -> tuple[datetime, datetime]:
    """The latest ``[tick, next tick)`` of ``schedule`` (UTC) that ends at or before ``before``."""
    before = before.astimezone(UTC)
    try:
        previous = croniter(schedule, before).get_prev(datetime)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"MOESIF_SEGMENT_SCHEDULE {schedule!r} is not a cron expression: "
                          f"{exc}") from None
    following = croniter(schedule, previous).get_next(datetime)
    end = following if following <= before else previous
    start = croniter(schedule, end).get_prev(datetime)
    return start.replace(fold=0), end.replace(fold=0)
