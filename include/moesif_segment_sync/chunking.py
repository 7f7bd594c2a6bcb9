"""Items in fixed-size lists: staged lines, Moesif id lookups, the audit store's IN lists."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Items in lists of at most ``size``: staged lines for the transform and the load, ids
    for Moesif ``terms`` lookups and the audit store's ``IN`` lists (``itertools.batched``
    once the project is on Python 3.12)."""
    remaining = iter(items)
    while chunk := list(islice(remaining, size)):
        yield chunk
