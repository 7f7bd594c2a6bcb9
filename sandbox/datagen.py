"""Deterministic synthetic Moesif users and companies, for the demo, the tests and the benchmarks.

The same arguments always give the same records (one seeded ``random.Random``,
one per part of a large account; no clock, no global state). Records follow
the user and company documents of moesif-api.md, with the variety the
transform must cope with: names and emails at the top level or only in
``metadata``, all four timestamp forms, companies that do not exist,
``ttfhw`` values that are not usable numbers, and, with ``bad=True``, about
1% of users the transform must reject (no usable ``user_id``, or a message
over 32 KB). ``Dataset`` says which ones and why, so a test can check each
reject by its reason. ``generate_account`` writes a large account, made in
parts on every core, into a stand-in store on disk.

Run ``python -m sandbox.datagen --help`` to write JSON Lines files (or, with
``--account``, such a store).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any

import orjson

from ._json import gc_paused, read_jsonl, write_jsonl
from .moesif import parse_timestamp_ms
from .moesif_store import Run, merge_runs, write_run

__all__ = ["Dataset", "generate", "read_jsonl", "write_jsonl"]

# What the transform must do with a bad user, by kind (keys of Dataset.expected_rejects).
REJECT_REASONS = {
    "oversize": "message over 32 KB",
    "blank": "blank user_id",
    "missing": "missing user_id",
    "numeric": "user_id is not a string",
}
# Bad users are given kinds in this order, so that the first four bad users
# cover every kind and oversize ones (40 KB each) stay a small share.
_BAD_CYCLE = ("oversize", "blank", "missing", "numeric", "blank", "missing", "numeric",
              "blank", "missing", "numeric")
_MIN_USERS_FOR_BAD = 50
UNPARSEABLE_TIMESTAMP = "yesterday at noon"

_FIRST = ("Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances",
          "Guido", "Radia", "Edsger", "Hedy", "Donald", "Katherine", "Tim", "Anita", "Bjarne",
          "Sophie", "Yukihiro", "Mary", "John", "Joan", "Niklaus", "Adele", "Brian", "Carla",
          "Dmitri", "Elena", "Farid", "Zoë", "José")
_LAST = ("Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov",
         "Thompson", "Allen", "van Rossum", "Perlman", "Dijkstra", "Lamarr", "Knuth", "Johnson",
         "Berners-Lee", "Borg", "Stroustrup", "Wilson", "Matsumoto", "Keller", "McCarthy",
         "Clarke", "Wirth", "Goldberg", "Kernighan", "Núñez", "O'Brien")
_EMAIL_DOMAINS = ("example.com", "example.org", "mail.example.net", "corp.example.io")
_PLANS = ("free", "starter", "growth", "enterprise")
_INDUSTRIES = ("fintech", "healthcare", "retail", "logistics", "media", "developer tools")
_SOURCES = ("google", "newsletter", "twitter", "partner", "producthunt", "bing")
_MEDIUMS = ("cpc", "email", "social", "referral", "organic")
_CAMPAIGNS = ("spring_launch", "api_week", "black_friday", "webinar_q3", "docs_refresh")
_TITLES = ("Engineer", "Staff Engineer", "CTO", "Product Manager", "Data Analyst", "Founder")
_ROUTES = ("/v1/orders", "/v1/users/{id}", "/v2/payments", "/v1/search", "/health")
_THEMES = ("dark", "light", "system")
_TAGS = ("beta", "vip", "churn-risk", "trial", "sso", "gdpr")
_TTFHW_TEXT = ("n/a", "unknown", "12s", "")
# (city, region, region code, postal code, country, code2, code3, continent, lat, lon, tz, dma)
_PLACES = (
    ("San Francisco", "California", "CA", "94107", "United States", "US", "USA", "NA",
     37.7697, -122.3933, "America/Los_Angeles", 807),
    ("New York", "New York", "NY", "10001", "United States", "US", "USA", "NA",
     40.7506, -73.9972, "America/New_York", 501),
    ("Austin", "Texas", "TX", "78701", "United States", "US", "USA", "NA",
     30.2713, -97.7426, "America/Chicago", 635),
    ("Toronto", "Ontario", "ON", "M5V", "Canada", "CA", "CAN", "NA",
     43.6426, -79.3871, "America/Toronto", None),
    ("London", "England", "ENG", "EC1A", "United Kingdom", "GB", "GBR", "EU",
     51.5164, -0.0930, "Europe/London", None),
    ("Berlin", "Land Berlin", "BE", "10115", "Germany", "DE", "DEU", "EU",
     52.5323, 13.3846, "Europe/Berlin", None),
    ("São Paulo", "São Paulo", "SP", "01310", "Brazil", "BR", "BRA", "SA",
     -23.5614, -46.6559, "America/Sao_Paulo", None),
    ("Bengaluru", "Karnataka", "KA", "560001", "India", "IN", "IND", "AS",
     12.9716, 77.5946, "Asia/Kolkata", None),
    ("Tokyo", "Tokyo", "13", "100-0001", "Japan", "JP", "JPN", "AS",
     35.6895, 139.6917, "Asia/Tokyo", None),
    ("Sydney", "New South Wales", "NSW", "2000", "Australia", "AU", "AUS", "OC",
     -33.8688, 151.2093, "Australia/Sydney", None),
    ("Lagos", "Lagos", "LA", "100001", "Nigeria", "NG", "NGA", "AF",
     6.4541, 3.3947, "Africa/Lagos", None),
)
# (user agent string, name, major, minor, os, os_name, os_major, os_minor, device)
_AGENTS = (
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36", "Chrome", "120", "0", "Mac OS X 10.15.7", "Mac OS X",
     "10", "15", "Mac"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
     "Firefox", "121", "0", "Windows 10", "Windows", "10", None, "Other"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/17.1 Mobile/15E148 Safari/604.1", "Mobile Safari", "17", "1", "iOS 17.1",
     "iOS", "17", "1", "iPhone"),
    ("python-requests/2.31.0", "Python Requests", "2", "31", "Other", "Other", None, None,
     "Other"),
    ("curl/8.4.0", "curl", "8", "4", "Other", "Other", None, None, "Other"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/119.0.6045.163 Mobile Safari/537.36", "Chrome Mobile", "119", "0", "Android 14",
     "Android", "14", None, "Pixel 8"),
)
_ROUTE_PAIRS = tuple((a, b) for a in _ROUTES for b in _ROUTES if a != b)
_OFFSETS_MINUTES = (120, -300, 330, 60, -480, 540)
_LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
          "incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis nostrud "
          "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat ") * 120
_NAIVE_EPOCH = datetime(1970, 1, 1)


@dataclass
class Dataset:
    """Generated records, and what the transform is expected to make of the bad ones.

    Keys of the ``expected_*`` maps are positions in ``users`` (or
    ``companies``): a bad user may have no id to name it by.
    """

    users: list[dict[str, Any]]
    companies: list[dict[str, Any]]
    expected_rejects: dict[int, str] = field(default_factory=dict)
    expected_warnings: dict[int, str] = field(default_factory=dict)
    company_warnings: dict[int, str] = field(default_factory=dict)

    def selected(self, start: datetime, end: datetime) -> list[int]:
        """Positions of the users a run over ``[start, end)`` considers: changed or seen in
        it, or members of a company that was (trait-mapping.md, "Which users a run
        identifies")."""
        low, high = (int(moment.timestamp() * 1000) for moment in (start, end))

        def in_window(record: Any) -> bool:
            return isinstance(record, dict) and any(
                low <= (parse_timestamp_ms(record.get(name)) or -1) < high
                for name in ("modified_time", "last_seen_time"))

        changed = {c["company_id"] for c in self.companies if in_window(c)}
        return [index for index, user in enumerate(self.users)
                if in_window(user) or (isinstance(user, dict)
                                       and user.get("company_id") in changed)]

    def expected_user_ids(self, start: datetime, end: datetime) -> set[str]:
        """The user ids such a run sends: the selected users but the deliberately bad ones."""
        return {self.users[index]["user_id"] for index in self.selected(start, end)
                if index not in self.expected_rejects}

    def expected(self) -> dict[str, Any]:
        """The expectations as JSON-ready data (what the CLI writes to expected.json)."""
        return {"users": len(self.users), "companies": len(self.companies),
                "expected_rejects": self.expected_rejects,
                "expected_warnings": self.expected_warnings,
                "company_warnings": self.company_warnings}


class _Generator:
    """One dataset's worth of random choices; every draw goes through ``self.rng`` in order."""

    def __init__(self, seed: int, start: datetime, end: datetime, part: str = "") -> None:
        if end <= start:
            raise ValueError(f"end ({end}) must be after start ({start})")
        # A large account draws each part from its own Random, so that workers can make them.
        self.rng = random.Random(f"{seed}/{part}" if part else seed)
        self.start_ms = _epoch_ms(start)
        self.span_ms = _epoch_ms(end) - self.start_ms
        self.app_id = f"app_{seed:04d}"
        self.org_id = f"org_{seed:04d}"

    # ------------------------------------------------------------ values

    # random.choice and randrange are several times slower than one random()
    # call, and a million users draw tens of millions of values.
    def pick(self, options: Sequence[Any]) -> Any:
        return options[int(self.rng.random() * len(options))]

    def below(self, n: int) -> int:
        return int(self.rng.random() * n)

    def between(self, low: int, high: int) -> int:
        """An integer in [low, high)."""
        return low + int(self.rng.random() * (high - low))

    def moment(self, low_ms: int | None = None, high_ms: int | None = None) -> int:
        """Epoch ms drawn uniformly from [low, high), by default the whole [start, end)."""
        low = self.start_ms if low_ms is None else low_ms
        high = self.start_ms + self.span_ms if high_ms is None else high_ms
        return low + int(self.rng.random() * max(high - low, 1))

    def timestamp(self, ms: int) -> str | int:
        """``ms`` in one of Moesif's four forms, mostly the 7-digit ``Z`` one."""
        roll = self.rng.random()
        if roll >= 0.95:
            return ms
        moment = _NAIVE_EPOCH + timedelta(milliseconds=ms)
        if roll < 0.85:
            # Digits below the millisecond exist in real data and must be truncated.
            ticks = self.below(10_000)
            return f"{moment.isoformat(timespec='milliseconds')}{ticks:04d}Z"
        if roll < 0.90:
            return moment.isoformat(timespec="milliseconds")
        minutes = self.pick(_OFFSETS_MINUTES)
        local = moment + timedelta(minutes=minutes)
        sign = "+" if minutes >= 0 else "-"
        hours, rest = divmod(abs(minutes), 60)
        return f"{local.isoformat(timespec='milliseconds')}{sign}{hours:02d}:{rest:02d}"

    def times(self, span: tuple[int, int] | None = None) -> dict[str, str | int]:
        """created <= first_seen <= last_seen, modified >= created, all in ``span`` (epoch ms
        [low, high), by default the window [start, end))."""
        low, high = span or (self.start_ms, self.start_ms + self.span_ms)
        modified, last_seen = self.moment(low, high), self.moment(low, high)
        created = self.moment(low, min(modified, last_seen) + 1)
        first_seen = self.moment(created, last_seen + 1)
        return {"created": self.timestamp(created), "first_seen_time": self.timestamp(first_seen),
                "last_seen_time": self.timestamp(last_seen),
                "modified_time": self.timestamp(modified)}

    def ip(self) -> str:
        bits = self.rng.getrandbits(32)
        return f"{(bits >> 24) % 223 + 1}.{(bits >> 16) & 255}.{(bits >> 8) & 255}.{bits & 255}"

    def tokens(self) -> list[str]:
        return [f"tok_{self.rng.getrandbits(64):016x}" for _ in range(self.between(1, 4))]

    def text(self, length: int) -> str:
        at = self.below(len(_LOREM) - length)
        return _LOREM[at:at + length]

    def campaign(self) -> dict[str, Any]:
        rng = self.rng
        source = self.pick(_SOURCES)
        campaign: dict[str, Any] = {"utm_source": source, "utm_medium": self.pick(_MEDIUMS),
                                    "utm_campaign": self.pick(_CAMPAIGNS),
                                    "referrer": f"https://www.{source}.com/",
                                    "referring_domain": f"www.{source}.com"}
        if rng.random() < 0.3:
            campaign["utm_term"] = self.pick(("api analytics", "usage billing", "api logs"))
        if rng.random() < 0.3:
            campaign["utm_content"] = self.pick(("banner", "cta_top", "footer"))
        if rng.random() < 0.1:
            campaign["gclid"] = f"Cj0KCQ{rng.getrandbits(64):016x}"
        return campaign

    def geo(self, ip: str) -> dict[str, Any]:
        (city, region, region_code, postal, country, code2, code3, continent, lat, lon, tz,
         dma) = self.pick(_PLACES)
        return {"ip": ip, "city_name": city, "region_name": region, "region_code": region_code,
                "postal_code": postal, "country_name": country, "country_code2": code2,
                "country_code3": code3, "continent_code": continent, "latitude": lat,
                "longitude": lon, "location": {"lat": lat, "lon": lon}, "timezone": tz,
                "dma_code": dma}

    # ------------------------------------------------------------ companies

    def company(self, index: int, span: tuple[int, int] | None = None
                ) -> tuple[dict[str, Any], str | None]:
        """One company (its times in ``span``), and the warning its ttfhw should raise."""
        rng = self.rng
        noun = self.pick(_LAST).replace(" ", "").replace("'", "").lower()
        domain = f"{noun}{index}.example.com"
        metadata: dict[str, Any] = {"plan": self.pick(_PLANS),
                                    "industry": self.pick(_INDUSTRIES),
                                    "employee_count": self.pick((5, 20, 80, 250, 1200, 9000)),
                                    "billing": {"currency": "USD",
                                                "mrr": round(rng.random() * 5000, 2)}}
        if rng.random() < 0.95:
            metadata["name"] = f"{noun.capitalize()} {self.pick(('Labs', 'Inc', 'GmbH', 'Ltd'))}"
        company: dict[str, Any] = {"company_id": f"cmp_{index:05d}"}
        company["company_domain" if rng.random() < 0.7 else "domain_name"] = domain
        company["metadata"] = metadata
        company["ip_address"] = self.ip()
        company.update(self.times(span))
        roll, warning = rng.random(), None
        if roll < 0.80:
            company["ttfhw"] = self.between(30, 86_400)
        elif roll < 0.92:
            company["ttfhw"] = round(rng.random() * 86_400, 3)
        elif roll < 0.96:
            company["ttfhw"] = -self.between(1, 3_600)
            warning = "negative ttfhw"
        else:
            company["ttfhw"] = self.pick(_TTFHW_TEXT)
            warning = "non-numeric ttfhw"
        if rng.random() < 0.5:
            company["campaign"] = self.campaign()
        company["session_token"] = self.tokens()
        if rng.random() < 0.6:
            period_start = self.moment()
            company["subscriptions"] = [{
                "subscription_id": f"sub_{rng.getrandbits(48):012x}", "status": "active",
                "plan_id": metadata["plan"], "current_period_start": self.timestamp(period_start),
                "current_period_end": self.timestamp(period_start + 30 * 86_400_000)}]
        company["app_id"] = self.app_id
        company["org_id"] = self.org_id
        return company, warning

    # ------------------------------------------------------------ users

    def user(self, index: int, n_companies: int, span: tuple[int, int] | None = None
             ) -> tuple[dict[str, Any], str | None]:
        """One well-formed user (its times in ``span``), and the warning it should raise (a
        missing company)."""
        rng = self.rng
        user_id = f"usr_{index:06d}"
        first, last = self.pick(_FIRST), self.pick(_LAST)
        handle = f"{first.lower()}.{last.lower().replace(' ', '')}{index}"
        email = f"{handle}@{self.pick(_EMAIL_DOMAINS)}"
        user: dict[str, Any] = {"user_id": user_id}
        if rng.random() < 0.95:
            user["identified_user_id"] = user_id
        roll, warning = rng.random(), None
        if roll < 0.85 and n_companies:
            user["company_id"] = f"cmp_{self.below(n_companies):05d}"
        elif roll > 0.995:
            user["company_id"] = f"cmp_missing_{index:06d}"
            warning = "company_id not among the companies"

        metadata: dict[str, Any] = {
            "plan": self.pick(_PLANS), "signup_source": self.pick(_SOURCES),
            "preferences": {"newsletter": rng.random() < 0.5, "theme": self.pick(_THEMES)},
            "tags": [self.pick(_TAGS) for _ in range(self.below(3))]}
        self._identity(user, metadata, first, last, email)
        if rng.random() < 0.3:
            user["user_name"] = f"{first.lower()}{index}"
        elif rng.random() < 0.1:
            metadata["username"] = f"{first.lower()}_{index}"
        if rng.random() < 0.2:
            metadata["phone"] = f"+1-555-{self.below(10_000):04d}"
        if rng.random() < 0.01:
            metadata["notes"] = self.text(self.between(2_000, 8_000))
        user["metadata"] = metadata
        if rng.random() < 0.6:
            user["campaign"] = self.campaign()
        user["session_token"] = self.tokens()
        ip = self.ip()
        user["ip_address"] = ip
        user["geo_ip"] = self.geo(ip)
        agent, name, major, minor, os, os_name, os_major, os_minor, device = self.pick(_AGENTS)
        user["user_agent"] = {"name": name, "major": major, "minor": minor, "os": os,
                              "os_name": os_name, "os_major": os_major, "os_minor": os_minor,
                              "device": device}
        user["user_agent_string"] = agent
        user.update(self.times(span))
        if rng.random() < 0.2:
            user["clearbit"] = {
                "person": {"name": {"fullName": f"{first} {last}", "givenName": first,
                                    "familyName": last},
                           "employment": {"title": self.pick(_TITLES), "domain": None}},
                "company": {"name": f"{last} Labs", "category": {
                    "industry": self.pick(_INDUSTRIES)}}}
        if rng.random() < 0.3:
            events = self.between(1, 50_000)
            user["last_24h_agg_results"] = {
                "event_count": events, "error_count": self.between(0, events // 10 + 1),
                "avg_latency_ms": round(rng.random() * 800, 1),
                "top_routes": list(self.pick(_ROUTE_PAIRS))}
        user["app_id"] = self.app_id
        user["org_id"] = self.org_id
        return user, warning

    def _identity(self, user: dict[str, Any], metadata: dict[str, Any], first: str, last: str,
                  email: str) -> None:
        """Put name and email where real accounts put them: top level, metadata, or nowhere."""
        roll = self.rng.random()
        if roll < 0.50:
            user.update(email=email, name=f"{first} {last}")
        elif roll < 0.65:
            user.update(email=email, first_name=first, last_name=last)
        elif roll < 0.75:
            metadata.update(email=email, name=f"{first} {last}")
        elif roll < 0.83:
            metadata.update(email=email, first_name=first, last_name=last)
        elif roll < 0.88:
            user.update(email="  ", name=f" {first} {last} ")  # blank falls back; name is trimmed
            metadata["email"] = email
        elif roll < 0.90:
            user.update(email=email, name=None, first_name=first)
        # else: an account that never told Moesif who it is

    def spoil(self, user: dict[str, Any], kind: str, index: int) -> None:
        """Turn a good user into a bad one of ``kind`` (see REJECT_REASONS)."""
        if kind == "oversize":
            user["metadata"]["attachments"] = {f"blob_{n:02d}": self.text(1_024) for n in range(40)}
        elif kind == "blank":
            user["user_id"] = "  "
            user.pop("identified_user_id", None)
        elif kind == "missing":
            del user["user_id"]
        else:
            user["user_id"] = index


def generate(n_users: int, n_companies: int | None = None, *, seed: int = 0,
             start: datetime, end: datetime, bad: bool = True) -> Dataset:
    """``n_users`` users and ``n_companies`` (default ``max(1, n_users // 20)``) companies.

    Every ``modified_time`` and ``last_seen_time`` falls in ``[start, end)``.
    With ``bad`` and at least 50 users, ``max(4, n_users // 100)`` users are
    deliberately bad and one good user has an unparseable ``modified_time``.
    """
    if n_companies is None:
        n_companies = max(1, n_users // 20)
    with gc_paused():
        return _generate(_Generator(seed, _utc(start), _utc(end)), n_users, n_companies, bad)


def _generate(gen: _Generator, n_users: int, n_companies: int, bad: bool) -> Dataset:
    dataset = Dataset([], [])
    for index in range(n_companies):
        company, warning = gen.company(index)
        dataset.companies.append(company)
        if warning:
            dataset.company_warnings[index] = warning
    for index in range(n_users):
        user, warning = gen.user(index, n_companies)
        dataset.users.append(user)
        if warning:
            dataset.expected_warnings[index] = warning
    if bad and n_users >= _MIN_USERS_FOR_BAD:
        n_bad = max(len(REJECT_REASONS), n_users // 100)
        *spoiled, unparseable = gen.rng.sample(range(n_users), n_bad + 1)
        for position, index in enumerate(spoiled):
            kind = _BAD_CYCLE[position % len(_BAD_CYCLE)]
            gen.spoil(dataset.users[index], kind, index)
            dataset.expected_rejects[index] = REJECT_REASONS[kind]
            dataset.expected_warnings.pop(index, None)
        dataset.users[unparseable]["modified_time"] = UNPARSEABLE_TIMESTAMP
        dataset.expected_warnings[unparseable] = "unparseable modified_time"
        dataset.expected_rejects = dict(sorted(dataset.expected_rejects.items()))
        dataset.expected_warnings = dict(sorted(dataset.expected_warnings.items()))
    return dataset


# ---------------------------------------------------------------- a large account, on disk

# Users (or companies) drawn from one Random and sorted into one run by a worker process.
ACCOUNT_PART = 50_000


def generate_account(store: str | Path, n_users: int, *, seed: int = 0, start: datetime,
                     end: datetime, changed_share: float = 0.01,
                     company_share: float = 0.0012, days_before: int = 30,
                     workers: int | None = None) -> dict[str, Any]:
    """An account of ``n_users`` written into a new stand-in store (``sandbox.moesif_store``),
    never all in memory: the hourly run of a large account.

    Users are generated as by ``generate`` (N/20 companies), but only ``changed_share`` of
    them are changed or seen in ``[start, end)``; the others' four timestamps fall in the
    ``days_before`` days before it. ``company_share`` of the companies changed in the window,
    which brings their users in too (about 0.1% of users with the default). 1% of users are
    bad, in the cycle of kinds ``generate`` uses, from the start of each part.

    The documents are made in parts of ``ACCOUNT_PART``, each from its own Random (seeded
    with ``seed`` and the part) by one of ``workers`` processes (default: one per core),
    which sorts it into a run file beside the store; the runs are then merged into the
    store (``moesif_store.merge_runs``). The account is the same whatever the number of
    workers. Returns the counts a run over the window should see (also written beside the
    store as ``expected.json`` by the CLI).
    """
    store = Path(store)
    if store.exists():
        raise FileExistsError(f"{store} exists: a store is written once, anew")
    runs = store.with_name(store.name + ".runs")
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir()
    account = _Account(seed, _utc(start), _utc(end), n_users, changed_share, company_share,
                       days_before, runs)
    try:
        # spawn, not fork: a caller (a test, the benchmark) may hold threads.
        with ProcessPoolExecutor(workers or os.cpu_count(),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            companies = list(pool.map(_companies_part, repeat(account),
                                      *_parts(account.n_companies)))
            changed = frozenset().union(*(part.changed for part in companies))
            users = list(pool.map(_users_part, repeat(account), *_parts(n_users),
                                  repeat(changed)))
        merge_runs(store, {"companies": [part.run for part in companies],
                           "users": [part.run for part in users]})
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    counts = {"users": n_users, "companies": account.n_companies, "in_window": 0,
              "via_company": 0, "bad": 0, "companies_in_window": len(changed)}
    for part in users:
        for name, count in part.counts.items():
            counts[name] += count
    return counts


def _parts(count: int) -> tuple[range, list[int]]:
    """The first and the last (excluded) positions of each part of ``count`` documents."""
    firsts = range(0, count, ACCOUNT_PART)
    return firsts, [min(first + ACCOUNT_PART, count) for first in firsts]


@dataclass(frozen=True)
class _Account:
    """What a large account's documents are a function of, and where its runs go."""

    seed: int
    start: datetime
    end: datetime
    n_users: int
    changed_share: float
    company_share: float
    days_before: int
    runs: Path

    @property
    def n_companies(self) -> int:
        return max(1, self.n_users // 20)

    @property
    def past(self) -> tuple[int, int]:
        """The span (epoch ms) of the times of the documents outside the window."""
        start_ms = _epoch_ms(self.start)
        return start_ms - self.days_before * 86_400_000, start_ms

    def generator(self, part: str) -> _Generator:
        return _Generator(self.seed, self.start, self.end, part)


@dataclass(frozen=True)
class _Part:
    """A part of an account, written: its run, what it counted, the companies changed."""

    run: Run
    counts: dict[str, int] = field(default_factory=dict)
    changed: frozenset[str] = frozenset()


def _companies_part(account: _Account, first: int, last: int) -> _Part:
    """Companies ``first`` to ``last`` (excluded) into a run."""
    gen, past = account.generator(f"companies/{first}"), account.past
    changed: set[str] = set()

    def companies() -> Iterator[tuple[int, dict[str, Any]]]:
        for index in range(first, last):
            in_window = gen.rng.random() < account.company_share
            company, _ = gen.company(index, None if in_window else past)
            if in_window:
                changed.add(company["company_id"])
            yield index, company

    run = _write_run(account.runs / f"companies-{first:09d}", "companies", companies())
    return _Part(run, changed=frozenset(changed))


def _users_part(account: _Account, first: int, last: int, changed: frozenset[str]) -> _Part:
    """Users ``first`` to ``last`` (excluded) into a run, and their counts (users in the
    window, members of a ``changed`` company outside it, bad users)."""
    gen, past = account.generator(f"users/{first}"), account.past
    counts = {"in_window": 0, "via_company": 0, "bad": 0}

    def users() -> Iterator[tuple[int, dict[str, Any]]]:
        for index in range(first, last):
            in_window = gen.rng.random() < account.changed_share
            user, _ = gen.user(index, account.n_companies, None if in_window else past)
            if gen.rng.random() < 0.01:
                gen.spoil(user, _BAD_CYCLE[counts["bad"] % len(_BAD_CYCLE)], index)
                counts["bad"] += 1
            if in_window:
                counts["in_window"] += 1
            elif user.get("company_id") in changed:
                counts["via_company"] += 1
            yield index, user

    run = _write_run(account.runs / f"users-{first:09d}", "users", users())
    return _Part(run, counts)


def _write_run(path: Path, collection: str, documents: Iterator[tuple[int, Any]]) -> Run:
    with gc_paused():
        # Generated documents hold no NaN, which dumps_exact would look for in each.
        return write_run(path, collection, documents, dumps=orjson.dumps)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _epoch_ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# ---------------------------------------------------------------- JSON Lines

def _parse_moment(text: str) -> datetime:
    return _utc(datetime.fromisoformat(text))


def main(argv: list[str] | None = None) -> None:
    """``python -m sandbox.datagen``: write users.jsonl, companies.jsonl and expected.json."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.datagen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--companies", type=int, default=None,
                        help="default: users // 20, at least 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=_parse_moment, required=True,
                        help="ISO-8601; no zone means UTC")
    parser.add_argument("--end", type=_parse_moment, required=True,
                        help="ISO-8601, exclusive")
    parser.add_argument("--out", type=Path, required=True, help="folder to write to")
    parser.add_argument("--no-bad", dest="bad", action="store_false",
                        help="leave out the deliberately bad users")
    parser.add_argument("--account", action="store_true",
                        help="a large account streamed into a stand-in store (--out/store.sqlite, "
                             "served by sandbox.moesif --store), only --changed-share of its "
                             "users in the window (generate_account)")
    parser.add_argument("--changed-share", type=float, default=0.01)
    parser.add_argument("--company-share", type=float, default=0.0012)
    args = parser.parse_args(argv)
    if args.account:
        args.out.mkdir(parents=True, exist_ok=True)
        counts = generate_account(args.out / "store.sqlite", args.users, seed=args.seed,
                                  start=args.start, end=args.end,
                                  changed_share=args.changed_share,
                                  company_share=args.company_share)
        (args.out / "expected.json").write_bytes(orjson.dumps(counts, option=orjson.OPT_INDENT_2))
        print(f"wrote an account of {counts['users']} users to {args.out}: {counts}",
              file=sys.stderr)
        return
    dataset = generate(args.users, args.companies, seed=args.seed, start=args.start,
                       end=args.end, bad=args.bad)
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(dataset.users, args.out / "users.jsonl")
    write_jsonl(dataset.companies, args.out / "companies.jsonl")
    (args.out / "expected.json").write_bytes(
        orjson.dumps(dataset.expected(), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    print(f"wrote {len(dataset.users)} users, {len(dataset.companies)} companies and "
          f"{len(dataset.expected_rejects)} expected rejects to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
