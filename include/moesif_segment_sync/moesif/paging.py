"""Paging through a search: ``size`` + ``sort`` + ``search_after``, and the page it yields.

Paging is its own small object: it knows the sort and how to ask for the next page, and
nothing about HTTP or about what is done with the records.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SearchAfterPaginator:
    """``size`` + ``sort`` + ``search_after`` paging, never offsets.

    The sort ends in the unique ``_id`` so that ties on ``modified_time`` at a
    page boundary neither repeat nor lose records.
    """

    size: int
    sort_field: str = "modified_time"
    search_after: list | None = field(default=None, init=False)
    done: bool = field(default=False, init=False)

    def body(self, query: dict) -> dict:
        body = {
            "size": self.size,
            "query": query,
            "sort": [{self.sort_field: {"order": "asc"}}, {"_id": {"order": "asc"}}],
        }
        if self.search_after is not None:
            body["search_after"] = self.search_after
        return body

    def advance(self, hits: list) -> None:
        if len(hits) < self.size or not isinstance(hits[-1], dict) or "sort" not in hits[-1]:
            self.done = True
        else:
            self.search_after = hits[-1]["sort"]


@dataclass(frozen=True)
class Page:
    hits: list
    total: int | None
    # True when only the standard library could parse the page (NaN, huge
    # integers): its records must be written back the same way to stay lossless.
    lenient_json: bool
