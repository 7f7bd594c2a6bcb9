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
        ("status", report["status"]),
        ("staged files", report["staging"]),
        ("audit store", report["audit_store"]),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
