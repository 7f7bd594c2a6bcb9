"""The window a run syncs, and the run parameters that choose it.

Plain Python with its own tests: no Airflow, no database, no clock. A run
works on ``[start, end)``, from (in order of precedence) explicit ``start``
and ``end`` params, the run's data interval, or, for a manual run with
neither, the last complete schedule interval before the run started.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from croniter import croniter

from .errors import ConfigError


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    source: str  # "params", "data_interval" or "last_complete_interval"

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
        return cls(start, end, *(_flag(params, name)
                                 for name in ("full_refresh", "dry_run", "force", "doctor")))

    def as_dict(self) -> dict:
        """The params as the run record keeps them (JSON)."""
        return {"start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat() if self.end else None,
                "full_refresh": self.full_refresh, "dry_run": self.dry_run,
                "force": self.force, "doctor": self.doctor}


def _flag(params: dict, name: str) -> bool:
    value = params.get(name, False)
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
            raise ConfigError(f"param {name!r} is not an ISO date or datetime: {value!r} "
                              "(try 2026-11-25 or 2026-11-25T13:00:00Z)") from None
    else:
        raise ConfigError(f"param {name!r} must be an ISO date or datetime, got {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def resolve_window(params: RunParams, *, interval_start: datetime | None,
                   interval_end: datetime | None, run_after: datetime,
                   schedule: str) -> Window:
    if params.start is not None and params.end is not None:
        return Window(params.start, params.end, "params")
    if interval_start is not None and interval_end is not None and interval_start < interval_end:
        return Window(interval_start.astimezone(UTC), interval_end.astimezone(UTC),
                      "data_interval")
    start, end = last_complete_interval(schedule, run_after)
    return Window(start, end, "last_complete_interval")


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
