"""A run's report as the one-screen summary the audit task logs."""

from __future__ import annotations


def summary_table(report: dict) -> str:
    """The one-screen summary the audit task logs."""
    rows = [
        ("run", report["run_id"]),
        ("mode", report["mode"]),
        ("window", f"[{report['window_start']}, {report['window_end']}) "
                   f"({report['window_source']})"),
        ("considered", report["considered"]),
        ("would send" if report["dry_run"] else "sent",
         report["would_send"] if report["dry_run"] else report["sent"]),
        ("unchanged", report["unchanged"]),
        ("rejected", report["rejected"]),
        ("batches", report["batches"]),
        ("warnings", ", ".join(f"{k} {v}" for k, v in report["counts"]["warnings"].items())
         or "none"),
        ("rejected by kind", ", ".join(f"{k} {v}" for k, v in
                                       report["counts"]["rejected_by_kind"].items()) or "none"),
        *_optional(report["counts"], dry_run=report["dry_run"]),
        ("status", report["status"]),
        ("staged files", report["staging"]),
        ("audit store", report["audit_store"]),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _optional(counts: dict, *, dry_run: bool) -> list[tuple[str, str]]:
    """Rows of what only some runs have: group calls, removed traits, a diff preview."""
    rows = []
    if counts.get("groups"):
        rows.append(("group calls", ", ".join(f"{k.replace('_', ' ')} {v}"
                                              for k, v in counts["groups"].items())))
    if counts.get("traits_nulled"):
        rows.append(("removed traits", f"{counts['traits_nulled']} user(s), "
                                       f"{'would be ' if dry_run else ''}sent as null"))
    if counts.get("diff"):
        users = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts["diff"]["users"].items())
        top = ", ".join(f"{k} {v}" for k, v in list(counts["diff"]["traits"].items())[:5])
        rows.append(("diff", users + (f"; {top}" if top else "")))
    return rows
