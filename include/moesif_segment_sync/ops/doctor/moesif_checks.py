"""Moesif: the host, the key and its scopes, search, and the order the checks run in."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from ...moesif import Entity, FieldNames, MoesifClient
from ...settings import Endpoint, SyncSettings
from .field_checks import _field_checks, field_names_finding
from .findings import Finding, Status
from .page_checks import _get_by_id_check, _page_size_check
from .probe import ENTITIES, SCOPES, Answer, MoesifProbe, probe_settings, search_hits

MOESIF_HOST = "https://api.moesif.com"


def check_moesif(endpoint: Endpoint, settings: SyncSettings, names: FieldNames,
                 budget: int) -> list[Finding]:
    """Key and scopes, search, fields, GET by id and page size, in at most ``budget`` requests.

    The essential questions come first (two searches, two mappings, two
    lookups); the page-size search gets what is left of the budget.
    """
    findings = [moesif_host_finding(endpoint.url)]
    with MoesifClient(endpoint.url, endpoint.secret, probe_settings(settings)) as client:
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
    hits = search_hits(document)
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


def sample(document: Any) -> dict | None:
    """The first hit of a search answer, when it is an object."""
    hits = search_hits(document) or [None]
    return hits[0] if isinstance(hits[0], dict) else None
