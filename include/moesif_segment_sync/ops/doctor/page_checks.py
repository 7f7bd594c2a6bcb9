"""A GET by id, and the largest page size Moesif accepts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ...moesif import Entity
from .findings import Finding, Status
from .probe import ENTITY_PATH, ID_FIELDS, MoesifProbe, first_hit


def _get_by_id_check(probe: MoesifProbe, entity: Entity, search: Any) -> Finding:
    check = f"moesif.get_by_id.{entity}"
    sample = first_hit(search)
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
