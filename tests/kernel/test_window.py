"""Which window a run syncs, and the params that choose it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from moesif_segment_sync.errors import ConfigError
from moesif_segment_sync.window import (
    RunParams,
    Window,
    check_window,
    last_complete_interval,
    resolve_window,
)

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
    ({"start": "yesterday", "end": "2026-11-01"}, "start: expected an ISO date or datetime"),
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


# ---------------------------------------------------------------- the rules check_window applies

NOW = at(2026, 11, 25, 12, 30)
MONTH = timedelta(days=31)


def window(start: datetime, end: datetime) -> Window:
    return Window(start, end, "params")


def test_a_malformed_moment_names_the_param_and_shows_the_format():
    with pytest.raises(ConfigError) as caught:
        RunParams.from_params({"start": "yesterday", "end": "2026-11-25"})
    assert str(caught.value) == ("start: expected an ISO date or datetime like "
                                 "2026-11-25T13:00Z, got 'yesterday'")


def test_an_end_before_the_start_is_refused():
    with pytest.raises(ConfigError, match=r"param 'start' \(2026-11-25T00:00:00\+00:00\) must "
                                          r"be before 'end' \(2026-11-24T00:00:00\+00:00\)"):
        RunParams.from_params({"start": "2026-11-25", "end": "2026-11-24"})


def test_a_window_ending_in_the_future_is_refused():
    with pytest.raises(ConfigError, match=r"ends in the future \(now is 2026-11-25T12:30:00"):
        check_window(window(at(2026, 11, 25, 12), at(2026, 11, 25, 13)), RunParams(), now=NOW,
                     max_window=MONTH)


def test_a_window_ending_now_is_fine():
    check_window(window(at(2026, 11, 25, 12), NOW), RunParams(), now=NOW, max_window=MONTH)


def test_a_window_longer_than_max_window_is_refused_naming_the_setting_and_the_param():
    eleven_years = window(at(2015, 11, 25), at(2026, 11, 25))
    with pytest.raises(ConfigError, match=r"is 4018 days long, over MOESIF_SEGMENT_MAX_WINDOW "
                                          r"\(31 days\): set the param allow_long_window"):
        check_window(eleven_years, RunParams(), now=NOW, max_window=MONTH)


@pytest.mark.parametrize("params", [RunParams(allow_long_window=True),
                                    RunParams(full_refresh=True)])
def test_a_long_window_runs_when_a_param_says_it_is_meant(params):
    check_window(window(at(2015, 11, 25), at(2026, 11, 25)), params, now=NOW, max_window=MONTH)


def test_a_window_exactly_max_window_long_is_fine():
    check_window(window(at(2026, 10, 25), at(2026, 11, 25)), RunParams(), now=NOW,
                 max_window=MONTH)


def test_a_backfill_run_ignores_explicit_params_and_says_so():
    params = RunParams.from_params({"start": "2026-11-01", "end": "2026-11-02"})
    chosen = resolve_window(params, interval_start=at(2026, 11, 25, 3),
                            interval_end=at(2026, 11, 25, 4), run_after=at(2026, 11, 25, 4),
                            schedule=HOURLY, backfill=True)
    assert (chosen.start, chosen.end, chosen.source) == (
        at(2026, 11, 25, 3), at(2026, 11, 25, 4), "data_interval")
    assert chosen.notes == ("params start/end (2026-11-01T00:00:00+00:00 to "
                            "2026-11-02T00:00:00+00:00) ignored: a backfill run syncs its own "
                            "data interval",)


def test_a_switch_left_unset_by_the_form_is_off():
    assert RunParams.from_params({"dry_run": None, "force": None}) == RunParams()
