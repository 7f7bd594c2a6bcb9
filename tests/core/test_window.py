"""Which window a run syncs, and the params that choose it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from moesif_segment_sync.errors import ConfigError
from moesif_segment_sync.window import RunParams, last_complete_interval, resolve_window

HOURLY = "0 * * * *"


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_explicit_params_win_over_the_data_interval():
    params = RunParams.from_params({"start": "2026-11-01", "end": "2026-11-02T06:30:00+01:00"})
    window = resolve_window(params, interval_start=at(2026, 11, 25), interval_end=at(2026, 11, 26),
                            run_after=at(2026, 11, 26), schedule=HOURLY)
    assert (window.start, window.end, window.source) == (
        at(2026, 11, 1), at(2026, 11, 2, 5, 30), "params")


def test_a_scheduled_run_syncs_its_data_interval():
    window = resolve_window(RunParams(), interval_start=at(2026, 11, 25, 3),
                            interval_end=at(2026, 11, 25, 4), run_after=at(2026, 11, 25, 4),
                            schedule=HOURLY)
    assert (window.start, window.end, window.source) == (
        at(2026, 11, 25, 3), at(2026, 11, 25, 4), "data_interval")


def test_a_manual_run_without_window_syncs_the_last_complete_interval():
    window = resolve_window(RunParams(), interval_start=None, interval_end=None,
                            run_after=at(2026, 11, 25, 10, 17, 3), schedule=HOURLY)
    assert (window.start, window.end, window.source) == (
        at(2026, 11, 25, 9), at(2026, 11, 25, 10), "last_complete_interval")


def test_an_interval_ending_exactly_at_run_after_is_complete():
    assert last_complete_interval(HOURLY, at(2026, 11, 25, 10)) == (
        at(2026, 11, 25, 9), at(2026, 11, 25, 10))


def test_a_daily_schedule_gives_yesterday():
    assert last_complete_interval("0 0 * * *", at(2026, 11, 25, 9, 59)) == (
        at(2026, 11, 24), at(2026, 11, 25))


@pytest.mark.parametrize(("params", "message"), [
    ({"start": "2026-11-01"}, "'start' is set but 'end' is not"),
    ({"end": "2026-11-01"}, "'end' is set but 'start' is not"),
    ({"start": "2026-11-02", "end": "2026-11-01"}, "'start' .* must be before 'end'"),
    ({"start": "2026-11-01", "end": "2026-11-01"}, "must be before"),
    ({"start": "yesterday", "end": "2026-11-01"}, "'start' is not an ISO date or datetime"),
    ({"dry_run": "yes"}, "'dry_run' must be true or false"),
])
def test_bad_params_fail_with_a_message_naming_them(params, message):
    with pytest.raises(ConfigError, match=message):
        RunParams.from_params(params)


def test_blank_params_mean_unset():
    assert RunParams.from_params({"start": "", "end": None}) == RunParams()


def test_a_bad_schedule_names_the_setting():
    with pytest.raises(ConfigError, match="MOESIF_SEGMENT_SCHEDULE"):
        last_complete_interval("every hour", at(2026, 11, 25))
