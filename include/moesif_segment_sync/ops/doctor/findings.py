"""What a check finds: a status, why, and what to change."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


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
