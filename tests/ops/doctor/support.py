"""Records and a runner for the doctor's tests: small literal users and companies with
every field the mapping reads, and the CLI run in process."""

from __future__ import annotations

import io
import json

from moesif_segment_sync.ops.cli import main
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn

MOESIF_KEY = "mk-doctor-5e1f0a9c7b42"
WRITE_KEY = "wk-doctor-8d2c4b6a1e93"


def user(number: int, **changes: object) -> dict:
    """A user with every field the mapping reads (and two it ignores); ``None`` drops one."""
    record = {
        "user_id": f"usr_{number}", "identified_user_id": f"usr_{number}",
        "company_id": "cmp_1", "email": f"u{number}@example.com", "name": "Ada Lovelace",
        "first_name": "Ada", "last_name": "Lovelace", "user_name": f"ada{number}",
        "metadata": {"plan": "growth"}, "campaign": {"utm_source": "newsletter"},
        "ip_address": "192.0.2.10", "geo_ip": {"city_name": "London"},
        "user_agent": {"name": "curl"}, "user_agent_string": "curl/8.5.0",
        "created": "2026-01-02T03:04:05.000Z", "first_seen_time": "2026-01-02T03:04:05.000Z",
        "last_seen_time": "2026-11-25T00:30:00.000Z", "modified_time": "2026-11-25T00:10:00Z",
        "clearbit": {"company": {"name": "Analytical Engines"}},
        "last_24h_agg_results": {"event_count": 12}, "session_token": ["tok"],
    }
    record.update(changes)
    return {key: value for key, value in record.items() if value is not None}


def company(number: int, **changes: object) -> dict:
    record = {
        "company_id": f"cmp_{number}", "company_domain": "engines.example",
        "metadata": {"name": "Analytical Engines"}, "ip_address": "192.0.2.20",
        "created": "2025-06-01T00:00:00Z", "modified_time": "2026-11-25T00:20:00Z",
        "first_seen_time": "2025-06-01T00:00:00Z", "last_seen_time": "2026-11-25T00:40:00Z",
        "ttfhw": 420, "subscriptions": [],
    }
    record.update(changes)
    return {key: value for key, value in record.items() if value is not None}


USERS = [user(n) for n in range(1, 6)]
COMPANIES = [company(1), company(2)]


class Doctor:
    """Runs ``python -m moesif_segment_sync doctor`` in process against the stand-ins."""

    def __init__(self, moesif: MoesifStandIn, segment: SegmentStandIn) -> None:
        self.moesif = moesif
        self.segment = segment
        self.code: int | None = None

    def text(self, *args: str) -> str:
        out = io.StringIO()
        self.code = main(["doctor", *args], out=out)
        return out.getvalue()

    def findings(self, *args: str) -> dict[str, dict]:
        """The JSON report's findings by check name."""
        report = json.loads(self.text("--format", "json", *args))
        return {finding["check"]: finding for finding in report["findings"]}


