"""``python -m moesif_segment_sync doctor``: check the connections against the real accounts.

Why a doctor: moesif-api.md marks several facts *(inferred)* — three field
names, the largest page size, the form of ``hits.total``, the shape of a
GET by id — and Segment answers 200 to almost anything. Before the first
run on a new account, the doctor asks each API the few questions that
settle these, within a small budget of requests, and says for each check
OK, WARN, FAIL or INFO, why, and which setting fixes it. A differing field
name is answered through the one seam, ``MOESIF_SEGMENT_FIELD_NAMES``
(``fields.py``).

Checks return ``Finding`` objects and never print; ``render_text`` and
``render_json`` make the report and redact every key on the way out. This
module does not import Airflow: the CLI hands it the connection resolvers
of ``airflow_bridge``, the same the DAG uses.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import requests

from .errors import ConfigError, MoesifError, SegmentError, TransientHTTPError
from .fields import AS_INFERRED, INFERRED, FieldNames
from .models import MoesifCompany, MoesifUser
from .moesif import SEARCH_PATH, Entity, MoesifClient, SearchAfterPaginator, everything, redact
from .segment import ENVELOPE_BYTES, Batch, SegmentSender
from .settings import SyncSettings, load_settings

if TYPE_CHECKING:
    from .sync import Endpoint

ENTITIES: tuple[Entity, ...] = ("users", "companies")
SCOPES: dict[Entity, str] = {"users": "read:users", "companies": "read:companies"}
ID_FIELDS: dict[Entity, str] = {"users": "user_id", "companies": "company_id"}
MAPPING_PATH = "/v1/search/~/mappings/{entity}/properties"
ENTITY_PATH = "/v1/search/~/{entity}/{id}"

MOESIF_HOST = "https://api.moesif.com"
# segment-api.md: since April 2025 a write key sent to the other region's host is rejected.
SEGMENT_HOSTS = {"api.segment.io": "US", "events.eu1.segmentapis.com": "EU"}
SEGMENT_URLS = {region: f"https://{host}" for host, region in SEGMENT_HOSTS.items()}

# What each field the mapping reads becomes in Segment (trait-mapping.md), so a
# warning can say what a missing field costs. The keys are the input models'
# fields: a test keeps the two lists equal.
FEEDS: dict[Entity, dict[str, str]] = {
    "users": {
        "user_id": "userId (required)", "company_id": "traits.company (the join)",
        "email": "traits.email", "name": "traits.name", "first_name": "traits.name",
        "last_name": "traits.name", "user_name": "traits.username",
        "metadata": "traits.metadata and the name/email fallbacks",
        "campaign": "traits.campaign", "ip_address": "context.ip",
        "geo_ip": "context.location and context.timezone", "user_agent": "traits.userAgent",
        "user_agent_string": "context.userAgent", "created": "traits.createdAt",
        "first_seen_time": "traits.firstSeenTime",
        "last_seen_time": "traits.lastSeenTime and the run's window",
        "modified_time": "timestamp, traits.modifiedTime and the run's window",
        "clearbit": "traits.clearbit", "last_24h_agg_results": "traits.last24HourAggResults",
    },
    "companies": {
        "company_id": "traits.company.id (required)",
        "company_domain": "traits.company.companyDomain",
        "domain_name": "traits.company.companyDomain", "metadata": "traits.company.metadata",
        "ip_address": "traits.company.ipAddress", "created": "traits.company.created",
        "modified_time": "traits.company.modifiedTime and the run's window",
        "first_seen_time": "traits.company.firstSeenTime",
        "last_seen_time": "traits.company.lastSeenTime and the run's window",
        "ttfhw": "traits.company.ttfhw_s",
    },
}
MAPPED: dict[Entity, tuple[str, ...]] = {
    "users": tuple(MoesifUser.model_fields), "companies": tuple(MoesifCompany.model_fields)}
# Fields read as "this, else that": the account needs only one of them.
EITHER: dict[Entity, tuple[tuple[str, ...], ...]] = {
    "companies": (("company_domain", "domain_name"),)}
# Parts of a field name that make it a likely account name for an inferred field.
HINTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("users", "created"): ("created", "signup", "sign_up", "registered"),
    ("users", "clearbit"): ("clearbit", "enrich"),
    ("users", "last_24h_agg_results"): ("24h", "24_h", "last_day", "rollup", "agg"),
    ("companies", "ttfhw"): ("ttfhw", "hello_world", "first_hello", "time_to_first"),
}


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    INFO = "INFO"


@dataclass(frozen=True)
class Finding:
    """The outcome of one check: what was found, why it matters, and what to change."""

    check: str
    status: Status
    message: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """All findings, and the secrets no rendering of them may show."""

    findings: list[Finding]
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def failed(self) -> bool:
        return any(finding.status is Status.FAIL for finding in self.findings)

    def counts(self) -> dict[str, int]:
        counted = Counter(finding.status for finding in self.findings)
        return {status.value: counted[status] for status in Status}


# ---------------------------------------------------------------- the whole run

def run(*, resolve_moesif: Callable[[], Endpoint], resolve_segment: Callable[[], Endpoint],
        send_test: bool = False, budget: int | None = None) -> Report:
    """Every check, in the order a person fixes things: settings, Moesif, Segment.

    ``resolve_*`` read the Airflow connections (``airflow_bridge``); a
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
                       "outside a task, Airflow 3 reads connections from AIRFLOW_CONN_* "
                       "variables and secrets backends only, not from its metadata database: "
                       "export the variable to run the doctor"), None
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


# ---------------------------------------------------------------- Moesif

@dataclass(frozen=True)
class Answer:
    """What one request got: a JSON document, an error, or nothing (budget used up)."""

    document: Any = None
    error: Exception | None = None
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return not self.skipped and self.error is None

    @property
    def status(self) -> int | None:
        return getattr(self.error, "status", None)

    def reason(self) -> str:
        if self.skipped:
            return "not asked: the request budget is used up"
        if isinstance(self.error, requests.RequestException):
            return f"no answer: {type(self.error).__name__}: {str(self.error)[:300]}"
        return str(self.error)


class MoesifProbe:
    """Questions to Moesif through the sync's own client, counted against a budget."""

    def __init__(self, client: MoesifClient, budget: int) -> None:
        self.client = client
        self.budget = budget
        self.unasked = 0  # questions the budget left out

    @property
    def used(self) -> int:
        return self.client.requests_made

    def ask(self, method: str, path: str, body: dict | None = None) -> Answer:
        if self.used >= self.budget:
            self.unasked += 1
            return Answer(skipped=True)
        try:
            if method == "GET":
                return Answer(self.client.get_json(path))
            return Answer(self.client.post_json(path, body or {}))
        except (MoesifError, TransientHTTPError, requests.RequestException) as exc:
            return Answer(error=exc)

    def search(self, entity: Entity, size: int) -> Answer:
        """The sync's own first-page request (sort and all), for ``size`` records."""
        body = SearchAfterPaginator(size).body(everything())
        return self.ask("POST", SEARCH_PATH.format(entity=entity), body)


def check_moesif(endpoint: Endpoint, settings: SyncSettings, names: FieldNames,
                 budget: int) -> list[Finding]:
    """Key and scopes, search, fields, GET by id and page size, in at most ``budget`` requests.

    The essential questions come first (two searches, two mappings, two
    lookups); the page-size search gets what is left of the budget.
    """
    findings = [moesif_host_finding(endpoint.url)]
    with MoesifClient(endpoint.url, endpoint.secret, _probe_settings(settings)) as client:
        probe = MoesifProbe(client, budget)
        samples = {entity: probe.search(entity, 1) for entity in ENTITIES}
        findings += access_findings(samples)
        readable = [entity for entity in ENTITIES if samples[entity].ok]
        for entity in readable:
            findings += [search_finding(entity, samples[entity].document),
                         hits_total_finding(entity, samples[entity].document)]
        for entity in readable:
            findings += _field_checks(probe, entity, samples[entity].document, names)
        renames = field_names_finding(findings, settings.field_names)
        if renames is not None:
            findings.append(renames)
        for entity in readable:
            findings.append(_get_by_id_check(probe, entity, samples[entity].document))
        if readable:
            findings.append(_page_size_check(probe, readable[0], settings.page_size))
        findings.append(Finding(
            "moesif.budget", Status.INFO, f"{probe.used} of {budget} Moesif requests used"
            + (f"; {probe.unasked} question(s) left out" if probe.unasked else ""),
            "raise MOESIF_SEGMENT_DOCTOR_BUDGET to ask them" if probe.unasked else "",
            data={"used": probe.used, "budget": budget, "unasked": probe.unasked}))
    return findings


def moesif_host_finding(url: str) -> Finding:
    """The Management API's documented host, not the write-only Collector API."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host == "api.moesif.net" or host.endswith(".moesif.net"):
        return Finding("moesif.host", Status.FAIL,
                       f"{url} is Moesif's Collector API (write-only), not the Management API",
                       f"set the host of moesif_default to {MOESIF_HOST}")
    if parts.path.strip("/"):
        return Finding("moesif.host", Status.WARN,
                       f"{url} has a path; the client appends /v1/search/... to the host",
                       f"set the host of moesif_default without a path, e.g. {MOESIF_HOST}")
    if host == "api.moesif.com":
        return Finding("moesif.host", Status.OK, f"{url} is the documented Management API host")
    return Finding("moesif.host", Status.INFO,
                   f"{url} is not the documented {MOESIF_HOST} (fine for a proxy or a "
                   "stand-in)")


def access_findings(samples: dict[Entity, Answer]) -> list[Finding]:
    """Whether the key reads each entity; a 401 names the scope that entity needs.

    Users and companies are asked separately because Moesif answers 401 both
    for a wrong key and for a missing scope: one entity refused means a
    scope, both refused most likely the key itself.
    """
    refused = [entity for entity in ENTITIES if samples[entity].status == 401]
    findings = []
    for entity in ENTITIES:
        answer, check, scope = samples[entity], f"moesif.access.{entity}", SCOPES[entity]
        if answer.ok:
            findings.append(Finding(check, Status.OK,
                                    f"the key is accepted for {entity} ({scope})"))
        elif answer.skipped:
            findings.append(Finding(check, Status.INFO, answer.reason(),
                                    "raise MOESIF_SEGMENT_DOCTOR_BUDGET"))
        elif answer.status == 401:
            if len(refused) == len(ENTITIES):
                fix = ("check that moesif_default's password is a current Management API key "
                       "(not the Collector Application Id) with the scopes read:users and "
                       "read:companies")
            else:
                fix = (f"give the key the {scope} scope (Moesif: Settings > API Keys), or "
                       "create a key with read:users and read:companies and put it in "
                       "moesif_default's password")
            said = getattr(answer.error, "moesif_message", "") or "no message"
            findings.append(Finding(
                check, Status.FAIL, f"Moesif refused the key for {entity} (401: {said}): "
                f"it lacks the {scope} scope, or the key is wrong", fix,
                data={"status": 401, "missing_scope": scope}))
        else:
            findings.append(_error_finding(check, answer, entity))
    return findings


def _error_finding(check: str, answer: Answer, entity: Entity) -> Finding:
    status = answer.status
    if status == 429:
        return Finding(check, Status.WARN, f"rate limited before {entity} could be checked",
                       "run the doctor again in a minute (500 queries per calendar minute)")
    if status == 404:
        fix = f"check the host of moesif_default: the Management API is {MOESIF_HOST}"
    elif status == 402:
        fix = "reactivate the Moesif subscription"
    elif status is None or status >= 500:
        fix = "check the host and the network, then run the doctor again"
    else:
        fix = ""
    return Finding(check, Status.FAIL, answer.reason(), fix, data={"status": status})


def search_finding(entity: Entity, document: Any) -> Finding:
    """A one-record search answers hits the sync can page through."""
    check = f"moesif.search.{entity}"
    hits = _hits(document)
    if hits is None:
        return Finding(check, Status.FAIL,
                       f"the {entity} search answered without a hits.hits list",
                       "check the host of moesif_default; the sync cannot read this answer")
    if not hits:
        return Finding(check, Status.WARN, f"the {entity} search works but found no {entity}",
                       f"the field checks need at least one {entity[:-1]} in the account")
    hit = hits[0]
    shaped = isinstance(hit, dict) and isinstance(hit.get("_source"), dict) and "sort" in hit
    if not shaped:
        return Finding(check, Status.FAIL,
                       f"the {entity} search answered a hit without _source and sort",
                       "the sync pages with search_after on sort values; report this shape")
    return Finding(check, Status.OK, f"a one-record search of {entity} answered 1 hit "
                   "with _source and sort values")


def hits_total_finding(entity: Entity, document: Any) -> Finding:
    """``hits.total`` is documented as an integer; only the progress log reads it."""
    check = f"moesif.hits_total.{entity}"
    total = (document.get("hits") or {}).get("total") if isinstance(document, dict) else None
    if isinstance(total, int) and not isinstance(total, bool):
        return Finding(check, Status.OK, f"hits.total is an integer ({total})",
                       data={"form": "integer", "total": total})
    if isinstance(total, dict) and isinstance(total.get("value"), int):
        return Finding(check, Status.WARN,
                       f"hits.total is an object {json.dumps(total)}, not the documented "
                       "integer; the client reads its value", data={"form": "object"})
    return Finding(check, Status.WARN,
                   f"hits.total is {json.dumps(total)}, not an integer; progress logs show "
                   "'?' for the total, nothing else depends on it", data={"form": "other"})


def _hits(document: Any) -> list | None:
    hits = document.get("hits") if isinstance(document, dict) else None
    inner = hits.get("hits") if isinstance(hits, dict) else None
    return inner if isinstance(inner, list) else None


def _sample(document: Any) -> dict | None:
    """The first hit of a search answer, when it is an object."""
    hits = _hits(document) or [None]
    return hits[0] if isinstance(hits[0], dict) else None


# ---------------------------------------------------------------- fields

def mapping_fields(document: Any) -> list[str] | None:
    """The top-level field names in a mapping answer, or None when it is not one.

    The stand-in answers ``{field: {"type": ...}}``; Elasticsearch wraps the
    same in ``properties`` (and an index's in ``mappings``). Moesif does not
    document which, so each is read.
    """
    while isinstance(document, dict):
        inner = next((document[key] for key in ("mappings", "properties")
                      if _is_field_map(document.get(key))), None)
        if inner is None:
            return sorted(document)
        document = inner
    return None


def _is_field_map(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(item, dict) for item in value.values())


def _field_checks(probe: MoesifProbe, entity: Entity, search: Any,
                  names: FieldNames) -> list[Finding]:
    """The account's fields, from the mapping endpoint or else one sample record."""
    check = f"moesif.mapping.{entity}"
    path = MAPPING_PATH.format(entity=entity)
    answer = probe.ask("GET", path)
    fields = mapping_fields(answer.document) if answer.ok else None
    sample = _sample(search)
    if fields is not None:
        if not fields:
            return [Finding(check, Status.WARN, f"GET {path} lists no fields",
                            f"the field checks need at least one {entity[:-1]} in the account")]
        found = Finding(check, Status.OK, f"GET {path} lists {len(fields)} fields",
                        data={"fields": fields})
    elif sample is not None and isinstance(sample.get("_source"), dict):
        fields = sorted(sample["_source"])
        why = answer.reason() if not answer.ok else "its answer is not a field mapping"
        found = Finding(check, Status.WARN, f"GET {path} did not list the fields ({why}); "
                        "the field checks read one sample record instead, so a field that "
                        "record lacks may still exist", data={"fields": fields})
    else:
        return [Finding(check, Status.WARN,
                        f"the {entity} fields could not be read: {answer.reason()}")]
    return [found, *field_findings(entity, fields, names)]


def field_findings(entity: Entity, account: Collection[str],
                   names: FieldNames) -> list[Finding]:
    """One finding per field the mapping reads, then the account's fields it ignores."""
    account = set(account)
    groups: list[tuple[str, ...]] = []
    for name in MAPPED[entity]:
        group = next((g for g in EITHER.get(entity, ()) if name in g), (name,))
        if group not in groups:
            groups.append(group)
    findings = [_field_finding(entity, group, account, names) for group in groups]
    read = {names.actual(entity, name) for name in MAPPED[entity]} | set(MAPPED[entity])
    ignored = sorted(account - read)
    findings.append(Finding(
        f"moesif.ignored.{entity}", Status.INFO,
        f"the mapping does not read {len(ignored)} of the account's {entity} fields"
        + (f": {', '.join(ignored)}" if ignored else ""), data={"fields": ignored}))
    return findings


def _field_finding(entity: Entity, group: tuple[str, ...], account: set[str],
                   names: FieldNames) -> Finding:
    check = f"moesif.field.{entity}.{'/'.join(group)}"
    feeds = FEEDS[entity][group[0]]
    for name in group:
        actual = names.actual(entity, name)
        if actual in account:
            if actual != name:
                return Finding(check, Status.OK, f"{entity}.{name} is read from the account's "
                               f"field {actual!r} (MOESIF_SEGMENT_FIELD_NAMES)",
                               data={"field": actual})
            inferred = " (an inferred name, confirmed)" if name in INFERRED.get(entity, ()) else ""
            return Finding(check, Status.OK, f"the account's {entity} have {name!r}{inferred}",
                           data={"field": name})
    label = " or ".join(repr(names.actual(entity, name)) for name in group)
    missing = f"the account's {entity} have no field {label}: {feeds} will be absent"
    name = group[0]
    if name == ID_FIELDS[entity]:
        return Finding(check, Status.FAIL, f"{missing}; every {entity[:-1]} would be rejected",
                       "check that moesif_default points at the right Moesif application")
    if name not in INFERRED.get(entity, ()):
        return Finding(check, Status.WARN, missing,
                       f"nothing to set if no {entity[:-1]} has it yet; this name is documented, "
                       "so the mapping has no rename for it", data={"missing": name})
    return _inferred_missing(entity, name, check, missing, account, names)


def _inferred_missing(entity: Entity, name: str, check: str, missing: str, account: set[str],
                      names: FieldNames) -> Finding:
    """An inferred name the account lacks: say which setting renames it, and to what."""
    key = f"{entity}.{name}"
    if names.actual(entity, name) != name and name in account:
        return Finding(check, Status.WARN, f"{missing}, but the account has {name!r}",
                       f"remove {key!r} from MOESIF_SEGMENT_FIELD_NAMES",
                       data={"missing": names.actual(entity, name)})
    found = candidates(entity, name, account)
    message = f"{missing} ({name!r} is an inferred name, moesif-api.md)"
    if found:
        others = f" (other candidates: {', '.join(found[1:])})" if found[1:] else ""
        return Finding(check, Status.WARN, f"{message}; the account has {found[0]!r}",
                       f"if {found[0]!r} is it, set "
                       f"MOESIF_SEGMENT_FIELD_NAMES='{json.dumps({key: found[0]})}'{others}",
                       data={"missing": name, "candidates": found, "suggest": {key: found[0]}})
    return Finding(check, Status.WARN, message,
                   f"if the account keeps it under another name, set "
                   f"MOESIF_SEGMENT_FIELD_NAMES='{json.dumps({key: '<your field>'})}'; "
                   "if the account has no such data, nothing to do",
                   data={"missing": name, "candidates": []})


def candidates(entity: Entity, name: str, account: Iterable[str]) -> list[str]:
    """Account fields the mapping does not read whose name suggests the inferred ``name``."""
    hints = HINTS[(entity, name)]
    return sorted(field_name for field_name in account
                  if field_name not in MAPPED[entity]
                  and any(hint in field_name.lower() for hint in hints))


def field_names_finding(findings: Iterable[Finding], current: dict[str, str]) -> Finding | None:
    """Every suggested rename in one setting: the variable is one JSON object, not one each."""
    suggested: dict[str, str] = {}
    for finding in findings:
        suggested.update(finding.data.get("suggest", {}))
    if not suggested:
        return None
    value = json.dumps({**current, **suggested}, sort_keys=True)
    return Finding("moesif.field_names", Status.WARN,
                   f"the account seems to name {len(suggested)} inferred field(s) differently: "
                   + ", ".join(f"{key} -> {actual}" for key, actual in suggested.items()),
                   f"after checking them, set MOESIF_SEGMENT_FIELD_NAMES='{value}'",
                   data={"suggested": suggested, "value": value})


# ---------------------------------------------------------------- GET by id, page size

def _get_by_id_check(probe: MoesifProbe, entity: Entity, search: Any) -> Finding:
    check = f"moesif.get_by_id.{entity}"
    sample = _sample(search)
    doc_id = sample.get("_id") if sample is not None else None
    if not isinstance(doc_id, str):
        return Finding(check, Status.INFO, f"not checked: no {entity[:-1]} id to look up")
    path = ENTITY_PATH.format(entity=entity, id=quote(doc_id, safe=""))
    answer = probe.ask("GET", path)
    if not answer.ok:
        return Finding(check, Status.INFO if answer.skipped else Status.WARN,
                       f"GET {path} of an id the search returned: {answer.reason()} (the sync "
                       "does not use this endpoint)")
    return get_by_id_finding(entity, path, answer.document)


def get_by_id_finding(entity: Entity, path: str, document: Any) -> Finding:
    """The shape of one entity by id: wrapped in ``_source`` or flat (inferred either way)."""
    check = f"moesif.get_by_id.{entity}"
    if isinstance(document, dict) and isinstance(document.get("_source"), dict):
        shape = "wrapped"
        text = "wrapped in _source"
    elif isinstance(document, dict) and ID_FIELDS[entity] in document:
        shape = "flat"
        text = f"flat (the fields at the top, {ID_FIELDS[entity]} among them)"
    else:
        return Finding(check, Status.WARN, f"GET {path} answered neither a _source wrapper "
                       f"nor a flat {entity[:-1]}", data={"shape": "unknown"})
    return Finding(check, Status.OK, f"GET {path} answers {text}", data={"shape": shape})


@dataclass(frozen=True)
class PageSizes:
    """What the page-size search learnt: the largest size accepted, the smallest refused.

    ``accepted`` is None when not even the configured size could be tried.
    """

    configured: int
    accepted: int | None = None
    refused: int | None = None

    @property
    def exact(self) -> bool:
        return self.accepted is not None and (
            self.refused is None or self.refused == self.accepted + 1)


def largest_page_size(accepts: Callable[[int], bool | None], configured: int) -> PageSizes:
    """Binary search for the largest page size Moesif accepts, up to ``configured``.

    ``accepts(size)`` is True for a 200, False for a 400, None when it could
    not tell (budget used up, another error): the search stops there with
    the bounds it has. Size 1 is known good: the one-record search worked.
    """
    verdict = accepts(configured)
    if verdict is None:
        return PageSizes(configured)
    if verdict:
        return PageSizes(configured, accepted=configured)
    low, high = 1, configured
    while high - low > 1:
        middle = (low + high) // 2
        verdict = accepts(middle)
        if verdict is None:
            break
        low, high = (middle, high) if verdict else (low, middle)
    return PageSizes(configured, low, high)


def _page_size_check(probe: MoesifProbe, entity: Entity, configured: int) -> Finding:
    refusals: list[str] = []
    stopped: list[str] = []

    def accepts(size: int) -> bool | None:
        answer = probe.search(entity, size)
        if answer.ok:
            return True
        if answer.status == 400:
            refusals.append(f"400: {getattr(answer.error, 'moesif_message', '')}")
            return False
        stopped.append(answer.reason())
        return None

    return page_size_finding(largest_page_size(accepts, configured), entity,
                             refusal=refusals[0] if refusals else "",
                             stopped=stopped[0] if stopped else "")


def page_size_finding(sizes: PageSizes, entity: Entity, *, refusal: str = "",
                      stopped: str = "") -> Finding:
    """OK when the configured size is accepted; else the largest size found, as the fix.

    ``refusal`` is Moesif's answer to the configured size; ``stopped`` why the
    search ended before it converged.
    """
    check = "moesif.page_size"
    data = {"configured": sizes.configured, "largest_accepted": sizes.accepted,
            "smallest_refused": sizes.refused, "exact": sizes.exact}
    if sizes.accepted is None:
        return Finding(check, Status.INFO, f"page size not measured: {stopped}",
                       "raise MOESIF_SEGMENT_DOCTOR_BUDGET, or run again later", data=data)
    if sizes.refused is None:
        return Finding(check, Status.OK, f"Moesif accepts the configured page size "
                       f"{sizes.configured} (MOESIF_SEGMENT_PAGE_SIZE) on {entity}", data=data)
    refused = f"Moesif refuses a page of {sizes.configured} {entity} ({refusal})"
    if sizes.exact:
        return Finding(check, Status.FAIL,
                       f"{refused}; the largest page it accepts is {sizes.accepted}",
                       f"set MOESIF_SEGMENT_PAGE_SIZE={sizes.accepted}", data=data)
    return Finding(check, Status.FAIL,
                   f"{refused}; it accepts {sizes.accepted} and refuses {sizes.refused}, and "
                   f"the search stopped there: {stopped}",
                   f"set MOESIF_SEGMENT_PAGE_SIZE={sizes.accepted}, or raise "
                   "MOESIF_SEGMENT_DOCTOR_BUDGET to measure the exact limit", data=data)


# ---------------------------------------------------------------- Segment

SEND_TEST_PROVES = (
    "a 200 proves the host is reachable and speaks Segment's batch API; it does not prove "
    "the write key is right, nor that it belongs to this region: Segment answers 200 to "
    "almost anything, a wrong key included")


def check_segment(endpoint: Endpoint, settings: SyncSettings, *,
                  send_test: bool) -> list[Finding]:
    """The host's region, and (only when asked) one empty batch that changes nothing."""
    findings = [segment_host_finding(endpoint.url)]
    if not send_test:
        findings.append(Finding("segment.send_test", Status.INFO,
                                "nothing sent to Segment",
                                "add --send-test to POST one empty batch (it changes nothing "
                                "in Segment)"))
    else:
        findings.append(send_test_finding(endpoint, settings))
    return findings


def segment_host_finding(url: str) -> Finding:
    """The region is configuration: a key sent to the other region's host is rejected.

    A write key does not say its region, so the doctor can only check that
    the host is one of the two documented ones and say which region it
    serves; the workspace's region is in Segment's settings.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    regions = f"US workspaces use {SEGMENT_URLS['US']}, EU workspaces {SEGMENT_URLS['EU']}"
    region = SEGMENT_HOSTS.get(host)
    data = {"region": region}
    if region is None:
        return Finding("segment.host", Status.WARN,
                       f"{url} is neither of Segment's documented hosts (fine for a local "
                       "stand-in or a proxy)",
                       f"set the host of segment_default to your workspace's region: {regions}",
                       data=data)
    if parts.scheme != "https" or parts.path.strip("/"):
        return Finding("segment.host", Status.WARN,
                       f"{url} is the {region} host but not as https with no path (the sender "
                       "appends /v1/batch)",
                       f"set the host of segment_default to {SEGMENT_URLS[region]}", data=data)
    other = "EU" if region == "US" else "US"
    return Finding("segment.host", Status.OK,
                   f"{url} is the {region} host: right only if the source's workspace is in "
                   f"the {region} region; since April 2025 a write key of an {other} workspace "
                   "is rejected here",
                   f"if the workspace is in the {other} region, set the host to "
                   f"{SEGMENT_URLS[other]}", data=data)


def send_test_finding(endpoint: Endpoint, settings: SyncSettings) -> Finding:
    """POST ``{"batch": [], "sentAt": ...}`` through the sync's own sender.

    An empty batch rather than an identify with ``context.active=false``:
    any identify creates or changes a profile, an empty batch touches none.
    """
    check = "segment.send_test"
    sender = SegmentSender(endpoint.url, endpoint.secret, _probe_settings(settings))
    try:
        sender.send(Batch(0, [], ENVELOPE_BYTES))
    except SegmentError as exc:
        hint = {401: "set segment_default's password to the source's write key",
                403: "set segment_default's password to the source's write key",
                404: "check the host: Segment's batch API is at {host}/v1/batch"}
        return Finding(check, Status.FAIL, f"Segment answered {exc.status} to an empty batch: "
                       f"{exc.segment_message or '(no message)'}",
                       hint.get(exc.status, "").format(host=endpoint.url),
                       data={"status": exc.status})
    except TransientHTTPError as exc:
        return Finding(check, Status.WARN, f"{exc}: not tested",
                       "run the doctor again later", data={"status": exc.status})
    except requests.RequestException as exc:
        return Finding(check, Status.FAIL,
                       f"no answer from {sender.url} ({type(exc).__name__})",
                       "check the host of segment_default and the network")
    finally:
        sender.close()
    return Finding(check, Status.OK, f"POST {sender.url} with an empty batch answered 200: "
                   f"{SEND_TEST_PROVES}; after the first real run, the source's Debugger in "
                   "Segment shows whether the identifies arrived", data={"status": 200})


# ---------------------------------------------------------------- rendering

def _redacted(value: Any, secrets: tuple[str, ...]) -> Any:
    """Every string in ``value`` with the secrets replaced, before any serialization."""
    if isinstance(value, str):
        return redact(value, *secrets)
    if isinstance(value, dict):
        return {key: _redacted(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item, secrets) for item in value]
    return value


def _rows(report: Report) -> list[dict[str, Any]]:
    return [_redacted(asdict(finding), report.secrets) for finding in report.findings]


def render_text(report: Report) -> str:
    """One line per check: status, check, reason, and the fix when there is one."""
    lines = []
    for row in _rows(report):
        line = f"{row['status']:<5} {row['check']}: {row['message']}"
        if row["fix"]:
            label = "Fix" if row["status"] in (Status.WARN, Status.FAIL) else "Note"
            line += f"  {label}: {row['fix']}"
        lines.append(line)
    counts = report.counts()
    lines.append(", ".join(f"{counts[status]} {status}" for status in counts)
                 + (": FAILED" if report.failed else ": no failures"))
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    document = {"ok": not report.failed, "counts": report.counts(), "findings": _rows(report)}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
