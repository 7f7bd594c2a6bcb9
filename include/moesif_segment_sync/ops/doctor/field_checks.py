"""The fields the account has, against the fields the mapping reads."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

from ...moesif import INFERRED, Entity, FieldNames
from ...pipeline import MoesifCompany, MoesifUser
from .findings import Finding, Status
from .probe import ID_FIELDS, MAPPING_PATH, MoesifProbe, first_hit

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
    sample = first_hit(search)
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
