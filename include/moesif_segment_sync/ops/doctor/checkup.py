"""The whole checkup: settings, then each connection and its API."""

from __future__ import annotations

from collections.abc import Callable

from ...errors import ConfigError
from ...moesif import AS_INFERRED, FieldNames
from ...settings import Endpoint, SyncSettings, load_settings
from .findings import Finding, Report, Status
from .moesif_checks import check_moesif
from .segment_checks import check_segment


def run(*, resolve_moesif: Callable[[], Endpoint], resolve_segment: Callable[[], Endpoint],
        send_test: bool = False, budget: int | None = None) -> Report:
    """Every check, in the order a person fixes things: settings, Moesif, Segment.

    ``resolve_*`` read the Airflow connections (the ``airflow`` room); a
    connection that cannot be read is a FAIL, and the other API is still
    checked. ``budget`` caps the requests sent to Moesif (default: the
    ``doctor_budget`` setting).
    """
    settings, names, findings = read_settings()
    if budget is None:
        budget = settings.doctor_budget
    secrets: list[str] = []

    moesif_finding, moesif = connection("moesif", "moesif_default", resolve_moesif)
    findings.append(moesif_finding)
    if moesif is not None:
        secrets.append(moesif.secret)
        findings += check_moesif(moesif, settings, names, budget)

    segment_finding, segment = connection("segment", "segment_default", resolve_segment)
    findings.append(segment_finding)
    if segment is not None:
        secrets.append(segment.secret)
        findings += check_segment(segment, settings, send_test=send_test)
    return Report(findings, tuple(secrets))


def read_settings() -> tuple[SyncSettings, FieldNames, list[Finding]]:
    """The settings and field renames; a bad one is a FAIL, and the defaults stand in for it."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return SyncSettings.model_construct(), AS_INFERRED, [Finding(
            "settings", Status.FAIL, str(exc),
            "correct the variable; the checks below ran with the defaults")]
    try:
        names = FieldNames.from_overrides(settings.field_names)
    except ConfigError as exc:
        return settings, AS_INFERRED, [Finding(
            "settings", Status.FAIL, str(exc),
            "correct MOESIF_SEGMENT_FIELD_NAMES; the checks below read the inferred names")]
    renames = ", ".join(f"{entity}.{name} -> {actual}"
                        for entity, pairs in names.renames.items()
                        for name, actual in pairs.items()) or "none"
    return settings, names, [Finding(
        "settings", Status.OK,
        f"MOESIF_SEGMENT_* settings are valid: page size {settings.page_size}, "
        f"field renames {renames}",
        data={"page_size": settings.page_size, "field_names": settings.field_names})]


def connection(api: str, conn_id: str,
               resolve: Callable[[], Endpoint]) -> tuple[Finding, Endpoint | None]:
    """The endpoint of one Airflow connection, or a FAIL that says how to set it."""
    check = f"{api}.connection"
    try:
        endpoint = resolve()
    except ConfigError as exc:
        return Finding(check, Status.FAIL, str(exc),
                       "the doctor reads connections as the DAG does: AIRFLOW_CONN_* "
                       "variables, secrets backends, and Admin > Connections when it runs "
                       "where Airflow's metadata database is configured"), None
    except Exception as exc:
        # Only the type: the text of an unexpected error from Airflow could quote the key.
        return Finding(check, Status.FAIL,
                       f"Airflow could not read connection {conn_id!r} ({type(exc).__name__})",
                       f"check AIRFLOW_CONN_{conn_id.upper()} or the connection in "
                       "Admin > Connections"), None
    return Finding(check, Status.OK, f"{conn_id} points at {endpoint.url}",
                   data={"conn_id": conn_id, "url": endpoint.url}), endpoint


def _probe_settings(settings: SyncSettings) -> SyncSettings:
    """One attempt per request: the budget counts requests, and a doctor reports an outage
    rather than waiting it out."""
    return settings.model_copy(update={"max_attempts": 1,
                                       "http_timeout": min(settings.http_timeout, 30.0)})
