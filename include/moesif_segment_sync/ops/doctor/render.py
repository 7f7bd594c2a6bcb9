"""The report as text or JSON, with every key redacted on the way out."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from ...errors import redact
from .findings import Report, Status


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
